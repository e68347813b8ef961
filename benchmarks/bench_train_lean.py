"""Step time and peak memory of one LoRA training step under float32 vs bf16 autocast, with and without gradient
checkpointing: SmolLM2-135M (LoRA r 16) + MiniLM query encoder, RAG-Sequence, on the SQuAD open-book split.

Each configuration runs in a process of its own (so its peak RSS is its own: Linux's VmHWM, read around every
step and reset before it, so that each step's and each phase's own peak is reported too), all loaded
at once and stepped in turn: step i of every configuration, then step i+1, ..., so machine load hits them all
alike, on the same batches (training rows 4i..4i+3, seed-0 order as bench_finetune.py). The first step of each
warms up allocators and caches and is not timed. Reported: median seconds per step, examples/s, their ratio to
float32 without checkpointing, peak RSS and the RSS once the models were loaded.

    .venv/bin/python benchmarks/bench_finetune.py --lean-compare --steps 6 --k 2 --batch-size 4
    .venv/bin/python benchmarks/bench_train_lean.py --steps 6 --k 2 --batch-size 4      # the same

Each step ends as the trainer's does, with ``training.memory.release_freed`` (``--no-trim``: without it). A run
without fp32 among ``--configs`` (a memory or thread probe: ``--configs bf16+ckpt --steps 8 --threads 2``), or with
``--generator-dtype bfloat16`` (the frozen weights stored in bf16), is filed under ``runs`` by its command; the
four-way comparison stays. ``--padding N``: the padded share of the first N batches' forward passes (``padding``).
``--profile CONFIG``: where one step's memory goes. Every mode updates ``results/train_lean.json`` (``--out``) in
place: it also holds the CMRC and 60-minute SQuAD results.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from ragtune.training import memory  # light: no torch until a function needs it
from shared_data import reset_peak, rss_mb, update_results

HERE = Path(__file__).parent
OUT = HERE / "results" / "train_lean.json"
# +ckpt: gradient_checkpointing = "auto" (the generator; the query encoder reads short questions and keeps its activations)
CONFIGS = {"fp32": ("fp32", False), "bf16": ("bf16", False), "fp32+ckpt": ("fp32", "auto"), "bf16+ckpt": ("bf16", "auto")}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def row_lengths(tr, batch) -> tuple[list[int], list[int]]:
    """The generator tokens of each of a batch's B x k rows (passage prompt + answer), and of each answer.
    Retrieved as the step retrieves (``Objective._retrieve``: encoder in eval mode, no gradient), so call it
    before the step, whose update would change the query encoder."""
    rag = tr.rag
    _, hit_rows = tr.objective._retrieve(tr.objective.queries(batch))
    prompts = [p for e, row in zip(batch, hit_rows) for p in rag._single_prompts(e.question, row)]
    answers = [e.answers[0] for e in batch for _ in range(len(prompts) // len(batch))]
    p_ids, y_ids = rag.generator.encode_prompts(prompts), rag.generator.encode_targets(answers, prompts)
    return [len(p) + len(y) for p, y in zip(p_ids, y_ids)], [len(y) for y in y_ids]


def batch_tokens(tr, batch) -> dict:
    """One batch's generator tokens: total, longest row, longest answer (``row_lengths``)."""
    rows, answers = row_lengths(tr, batch)
    return {"tokens": sum(rows), "longest_row": max(rows), "longest_answer": max(answers)}


def load(name: str, args):
    """The Trainer of configuration ``name`` over the SQuAD rows, its optimiser and trained parameters."""
    import torch

    from bench_finetune import dense_retriever
    from ragtune.config import TrainingConfig
    from ragtune.corpus.squad import QARecord
    from ragtune.generation import Generator
    from ragtune.rag.model import RAG
    from ragtune.training import schedule
    from ragtune.training.checkpoint import seed_everything
    from ragtune.training.trainer import Trainer
    from shared_data import MemoryStore, squad_open_book

    torch.set_num_threads(args.threads)
    prec, ckpt = CONFIGS[name]
    split, passages, pid_of = squad_open_book()
    rows = [QARecord(q.question, list(dict.fromkeys(q.answers)), [pid_of[q.positive_doc_ids[0]]]) for q in split.train]
    random.Random(0).shuffle(rows)
    gen = Generator("smollm2-135m-instruct", dtype=args.generator_dtype)
    rag = RAG(dense_retriever(passages), gen, MemoryStore(passages), mode="rag-sequence",
              k=args.k, doc_temperature=1.0)
    cfg = TrainingConfig(mode="rag-sequence", lora=True, lora_r=16, lora_alpha=32, lr=3e-4, encoder_lr=1e-5,
                         batch_size=args.batch_size, precision=prec, gradient_checkpointing=ckpt, seed=0)
    seed_everything(0)
    tr = Trainer(rag, rows, None, cfg, HERE / ".work" / f"lean_{name}", progress=False)
    opt, _ = schedule.optimizer(tr.params_gen, tr.params_enc, cfg, 1000)
    return tr, rows, opt


def step(tr, rows, opt, i: int, batch_size: int, saved=None, trim: bool = True,
         phases: dict | None = None) -> tuple[float, float]:
    """Training step on rows batch i: (seconds, mean loss). ``saved``: a saved_tensors_hooks context for the forward;
    ``phases``: filled with each phase's peak RSS in MB (forward, backward, optimizer), read from VmHWM."""
    import contextlib

    import torch

    def mark(name: str | None) -> None:
        if phases is not None:
            if name:
                phases[name] = round(rss_mb("VmHWM"))
            reset_peak()

    params = tr.params_gen + tr.params_enc
    batch = rows[i * batch_size:(i + 1) * batch_size]
    for m in tr.modules.values():
        m.train()
    t = time.perf_counter()
    opt.zero_grad(set_to_none=True)
    mark(None)
    with saved or contextlib.nullcontext():
        loss, n = tr.batch_loss(batch)
    mark("forward")
    (loss / n).backward()
    mark("backward")
    torch.nn.utils.clip_grad_norm_(params, tr.cfg.max_grad_norm)
    opt.step()
    mark("optimizer")
    if trim:  # as Trainer.train does after each step
        memory.release_freed()
    return time.perf_counter() - t, float(loss.detach()) / n


def worker(args) -> None:
    """One configuration: load, say "ready", then run step i for each "step i" line on stdin; "quit" ends."""
    tr, rows, opt = load(args.worker, args)
    print(json.dumps({"ready": True, "rss_loaded_mb": rss_mb(), "precision": tr.precision,
                      "checkpointing": tr.checkpointing,
                      "kernel_cache_env": {k: os.environ[k] for k in memory.KERNEL_CACHE_ENVS if k in os.environ}}), flush=True)
    peak = 0.0  # reset_peak starts VmHWM (and ru_maxrss with it) afresh: what came before each reset is folded in
    for line in sys.stdin:
        cmd = line.split()
        if cmd[0] == "quit":
            break
        i = int(cmd[1])
        tokens = batch_tokens(tr, rows[i * args.batch_size:(i + 1) * args.batch_size])
        peak = max(peak, rss_mb("VmHWM"))
        phases: dict = {}
        sec, loss = step(tr, rows, opt, i, args.batch_size, trim=not args.no_trim, phases=phases)
        step_peak = max(phases.values())
        peak = max(peak, step_peak)
        print(json.dumps({"step": i, "seconds": sec, "loss": loss, "rss_mb": rss_mb(), "step_peak_mb": step_peak,
                          "phase_peaks_mb": phases, **tokens}), flush=True)
    print(json.dumps({"peak_rss_mb": max(peak, memory.peak_rss_mb())}), flush=True)


def profile(args) -> dict:
    """Where one step's memory goes: RSS after loading, after a warm-up step, and the tensors autograd saves for
    backward in the profiled step (the activations), by the size of their last dimension (576: SmolLM2's hidden
    states, 1536: its MLP, 49152: vocabulary logits, 384: MiniLM, ...), next to the optimiser state."""
    import torch

    tr, rows, opt = load(args.profile, args)
    out: dict = {"config": args.profile, "rss_after_load_mb": rss_mb()}
    step(tr, rows, opt, 0, args.batch_size, trim=not args.no_trim)
    out["rss_after_warmup_step_mb"] = rss_mb()
    seen: dict = {}
    params = {p.untyped_storage().data_ptr() for m in (tr.generator.model, tr.encoder.model) for p in m.parameters()}

    def pack(t):  # each storage once; the weights themselves (saved by every linear layer) are not activations
        key = (t.untyped_storage().data_ptr(), t.dtype)
        if key not in seen and key[0] not in params:
            seen[key] = (t.untyped_storage().nbytes(), t.shape[-1] if t.dim() else 0, str(t.dtype))
        return t

    out["seconds"], _ = step(tr, rows, opt, 1, args.batch_size, torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t),
                             trim=not args.no_trim)
    by_dim: dict = {}
    for nbytes, last, dtype in seen.values():
        k = f"last_dim_{last}_{dtype.removeprefix('torch.')}"
        by_dim[k] = by_dim.get(k, 0) + nbytes / 2**20
    out["saved_for_backward_mb"] = sum(by_dim.values())
    out["saved_for_backward_by_last_dim_mb"] = dict(sorted(by_dim.items(), key=lambda kv: -kv[1])[:10])
    state = [t for s in opt.state.values() for t in s.values() if torch.is_tensor(t)]
    out["optimizer_state_mb"] = sum(t.numel() * t.element_size() for t in state) / 2**20
    out["trainable_params_mb"] = sum(p.numel() * p.element_size() for p in tr.params_gen + tr.params_enc) / 2**20
    out["rss_after_profiled_step_mb"] = rss_mb()
    out["peak_rss_mb"] = memory.peak_rss_mb()
    print(json.dumps(out, indent=1), flush=True)
    return out


def padding(args) -> dict:
    """The share of padded token positions in the generator's training forward passes over the first
    ``--padding`` batches: the B x k passage prompts (+ answers) as ``Generator.token_logprobs`` groups them
    (``length_buckets``), against one padded batch per step; no forward pass of the generator is run."""
    from ragtune.models.batching import length_buckets

    tr, rows, _ = load("bf16+ckpt", args)
    real = bucketed = one_batch = passes = unbounded_passes = 0
    for i in range(args.padding):
        lengths, _ = row_lengths(tr, rows[i * args.batch_size:(i + 1) * args.batch_size])
        groups = length_buckets(lengths, len(lengths), max_tokens=tr.cfg.max_pass_tokens)  # as token_logprobs groups them
        unbounded_passes += len(length_buckets(lengths, len(lengths)))
        real += sum(lengths)
        bucketed += sum(len(grp) * max(lengths[j] for j in grp) for grp in groups)
        one_batch += len(lengths) * max(lengths)
        passes += len(groups)
    out = {"batches": args.padding, "rows_per_batch": args.batch_size * args.k, "real_tokens": real,
           "padding_share_bucketed": 1 - real / bucketed, "padding_share_one_batch": 1 - real / one_batch,
           "forward_passes_per_batch": passes / args.padding, "max_pass_tokens": tr.cfg.max_pass_tokens,
           "forward_passes_per_batch_without_max_pass_tokens": unbounded_passes / args.padding}
    print(json.dumps(out, indent=1), flush=True)
    return out


def pass_memory(args) -> dict:
    """A generator forward + backward pass of R rows x 353 tokens (random ids; LoRA, bf16 autocast, checkpointing):
    its peak RSS above the RSS before it, and the memory still live after the forward, for R = 2, 4, 8. The live
    part (the layers' saved inputs) is the same however rows are grouped into passes; the rest is temporary and
    grows with the pass."""
    import torch

    from ragtune.generation import Generator

    torch.set_num_threads(args.threads)
    memory.bound_kernel_cache()
    gen = Generator("smollm2-135m-instruct")
    model = gen.add_lora(r=16, alpha=32, dropout=0.05)
    memory.enable(model, True, required=True)
    model.train()
    out: dict = {}
    for rows in (2, 4, 8):
        ids = torch.randint(100, 40_000, (rows, 353))
        runs = []
        for rep in range(3):  # the first meets new shapes; the later two are what a long run sees
            memory.release_freed()
            base = rss_mb()
            reset_peak()
            t = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = model(input_ids=ids, attention_mask=torch.ones_like(ids), logits_to_keep=13,
                             use_cache=False).logits.float().logsumexp(-1).mean()
            forward_peak = rss_mb("VmHWM") - base
            memory.release_freed()
            live = rss_mb() - base
            reset_peak()
            loss.backward()
            backward_peak = rss_mb("VmHWM") - base
            runs.append({"forward_peak_mb": round(forward_peak), "live_after_forward_mb": round(live),
                         "backward_peak_mb": round(backward_peak), "seconds_per_row": (time.perf_counter() - t) / rows})
            model.zero_grad(set_to_none=True)
            del loss
        out[f"{rows}x353"] = runs[1:]
        log(f"{rows} x 353 tokens: {runs[1:]}")
    return out


def _reply(p: subprocess.Popen) -> dict:
    """The worker's next JSON line (anything a library printed to stdout is skipped)."""
    while True:
        line = p.stdout.readline()
        if not line:
            raise RuntimeError(f"a worker exited (rc {p.wait()}); see its stderr above")
        if line.startswith("{"):
            return json.loads(line)


def compare(names: list[str], steps: int, k: int, batch_size: int, threads: int, out: Path, command: str,
            trim: bool = True, generator_dtype: str = "float32") -> dict:
    # the dense index is built once here (cached in benchmarks/.work), not by every worker at once
    from bench_finetune import dense_retriever
    from shared_data import squad_open_book

    dense_retriever(squad_open_book().passages)
    procs = {}
    for name in names:
        procs[name] = subprocess.Popen(
            [sys.executable, __file__, "--worker", name, "--k", str(k), "--batch-size", str(batch_size),
             "--threads", str(threads), "--generator-dtype", generator_dtype, *([] if trim else ["--no-trim"])],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=HERE)
    info = {n: _reply(p) for n, p in procs.items()}
    log(f"loaded: {info}")
    times: dict[str, list[float]] = {n: [] for n in names}
    losses: dict[str, list[float]] = {n: [] for n in names}
    rss: dict[str, list[float]] = {n: [] for n in names}
    step_peaks: dict[str, list[float]] = {n: [] for n in names}
    phase_peaks: dict[str, list[dict]] = {n: [] for n in names}
    tokens: list[dict] = []
    for i in range(steps):
        for n in names:
            p = procs[n]
            p.stdin.write(f"step {i}\n")
            p.stdin.flush()
            r = _reply(p)
            losses[n].append(r["loss"])
            rss[n].append(round(r["rss_mb"]))
            step_peaks[n].append(round(r["step_peak_mb"]))
            phase_peaks[n].append(r["phase_peaks_mb"])
            if i > 0:
                times[n].append(r["seconds"])
            log(f"step {i} {n:10s} {r['seconds']:.2f}s loss {r['loss']:.3f} rss {r['rss_mb']:.0f} MB, "
                f"step peak {r['step_peak_mb']:.0f} MB {r['phase_peaks_mb']} ({r['tokens']} tokens, longest row {r['longest_row']})")
        tokens.append({key: r[key] for key in ("tokens", "longest_row", "longest_answer")})  # same batch in every config
    for n, p in procs.items():
        p.stdin.write("quit\n")
        p.stdin.flush()
        info[n].update(_reply(p))
        p.wait()
    med = {n: float(np.median(v)) for n, v in times.items()}
    base = med.get("fp32")
    res = {
        "command": command,
        "machine": f"{platform.machine()}, {threads} torch thread(s) per configuration, 2-core CPU shared with other "
                   "benchmarks (load varies)",
        "setup": f"SmolLM2-135M LoRA r16 + MiniLM query encoder, rag-sequence, batch {batch_size}, k {k}, SQuAD "
                 "open-book training rows (seed-0 order); one process per configuration, steps interleaved",
        "timed_steps": steps - 1,
        # the allocator settings the workers inherited, and the kernel cache each worker ran with (the Trainer's own
        # bound unless one of these was set)
        "env": {k: v for k, v in os.environ.items() if k.startswith(("MALLOC_", "ONEDNN_", "DNNL_", "OMP_"))},
        "kernel_cache_env": {n: info[n].get("kernel_cache_env") for n in names},
        "generator_dtype": generator_dtype,
        "configs": {n: {"precision": info[n]["precision"], "checkpointing": info[n]["checkpointing"],
                        "seconds_per_step_median": med[n], "seconds_all": times[n],
                        "examples_per_s": batch_size / med[n],
                        "examples_per_s_ratio": base / med[n] if base else None,
                        "peak_rss_mb": info[n]["peak_rss_mb"], "rss_after_load_mb": info[n]["rss_loaded_mb"],
                        "rss_after_each_step_mb": rss[n], "peak_rss_each_step_mb": step_peaks[n],
                        "peak_rss_each_phase_mb": phase_peaks[n],
                        "losses": losses[n]} for n in names},
        "batch_tokens": tokens,
    }
    peaks = {n: res["configs"][n]["peak_rss_mb"] for n in names}
    if base is None or generator_dtype != "float32":  # a memory, thread or dtype probe: filed under its command
        runs = json.loads(out.read_text()).get("runs", {}) if out.exists() else {}
        update_results(out, {"runs": runs | {command: res}})
    else:
        best = max(names, key=lambda n: res["configs"][n]["examples_per_s_ratio"])
        res |= {"examples_per_s_ratio": res["configs"][best]["examples_per_s_ratio"], "examples_per_s_ratio_config": best,
                "peak_rss_mb_by_config": peaks}
        update_results(out, res)
    log(f"medians {med}; peak RSS {peaks}; wrote {out}")
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker", choices=sorted(CONFIGS), help=argparse.SUPPRESS)
    ap.add_argument("--profile", choices=sorted(CONFIGS), help="where one step of this configuration's memory goes")
    ap.add_argument("--configs", default="fp32,bf16,fp32+ckpt,bf16+ckpt")
    ap.add_argument("--steps", type=int, default=6, help="steps per configuration (the first is not timed)")
    ap.add_argument("--k", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--generator-dtype", default="float32", choices=["float32", "bfloat16"],
                    help="the generator's weights as loaded ([generator] dtype); LoRA adapters stay float32")
    ap.add_argument("--no-trim", action="store_true", help="no malloc_trim after each step (training.memory.release_freed)")
    ap.add_argument("--padding", type=int, default=0, help="the padded share of the first N batches' forward passes")
    ap.add_argument("--pass-memory", action="store_true", help="a forward pass's memory by its size (pass_memory)")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    if args.padding:
        return update_results(args.out, {"padding": padding(args)})
    if args.pass_memory:
        return update_results(args.out, {"pass_memory": {"command": "python benchmarks/bench_train_lean.py --pass-memory",
                                                         **pass_memory(args)}})
    if args.worker:
        return worker(args)
    if args.profile:
        profile(args)
        return
    compare(args.configs.split(","), args.steps, args.k, args.batch_size, args.threads, args.out,
            "python benchmarks/bench_train_lean.py " + " ".join(sys.argv[1:]), trim=not args.no_trim,
            generator_dtype=args.generator_dtype)


if __name__ == "__main__":
    main()
