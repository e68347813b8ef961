"""RSS between training steps, and each step's own peak, over the first N batches of the 60-minute SQuAD run
(``Trainer.step_examples`` of its configuration: seed 0, batch 4, k 2, LoRA, bf16 + checkpointing), under whatever
allocator and oneDNN environment the process is started with (without one, the kernel cache bound that importing
``ragtune.training`` sets). Says whether a long run's memory grows between
steps (a cache, the allocator) or within them (a batch's activations).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/probe_step_memory.py default --steps 12
    ONEDNN_PRIMITIVE_CACHE_CAPACITY=16 OMP_NUM_THREADS=1 .venv/bin/python benchmarks/probe_step_memory.py cache16
    MALLOC_MMAP_THRESHOLD_=131072 OMP_NUM_THREADS=1 .venv/bin/python benchmarks/probe_step_memory.py mmap128k

Each label's steps go to ``step_memory_probe`` in ``results/train_lean.json``. Seconds depend on what else runs:
compare labels that ran side by side only.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_train_lean as lean  # noqa: E402
from shared_data import reset_peak, rss_mb, update_results  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("label")
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--out", type=Path, default=lean.OUT)
    args = ap.parse_args()
    tr, _, opt = lean.load("bf16+ckpt", argparse.Namespace(threads=1, k=2, batch_size=4, generator_dtype="float32"))
    # the 60-minute run's schedule, so step_examples gives its batches
    tr.cfg = tr.cfg.model_copy(update={"max_steps": 164, "lr": 1e-3, "epochs": 1.0, "warmup_ratio": 0.05})
    steps = []
    for s in range(args.steps):
        batch = tr.step_examples(s)[0]
        reset_peak()
        seconds, _ = lean.step(tr, batch, opt, 0, len(batch))
        steps.append({"step": s, "rss_after": round(rss_mb("VmRSS")), "peak": round(rss_mb("VmHWM")), "seconds": round(seconds, 1)})
        print(args.label, steps[-1], flush=True)
    env = {k: v for k, v in os.environ.items() if "MALLOC" in k or "ONEDNN" in k or "DNNL" in k}
    old = json.loads(args.out.read_text()).get("step_memory_probe", {}) if args.out.exists() else {}
    update_results(args.out, {"step_memory_probe": old | {args.label: {
        "command": "python benchmarks/probe_step_memory.py " + " ".join(sys.argv[1:]), "env": env, "steps": steps}}})


if __name__ == "__main__":
    main()
