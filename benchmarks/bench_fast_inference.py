"""The fast inference backend against torch on bench_qa's SQuAD open-book questions (same sample, prompts, greedy).

For each RAG mode at k = 3 (BM25): seconds per question, generated tokens/s and EM/F1 with torch float32 and
CTranslate2 int8 (``--compute-type``) on the same questions, the settings taking turns batch by batch; for
rag-sequence also the
torch backend with the previous thorough decoder (every hypothesis re-scored under every passage, the reference
in tests/helpers/reference.py), for the speed-up of reusing generation scores and sharing prompt prefills.
Then generate-only tokens/s on fixed gold-passage prompts, both backends interleaved prompt by prompt.

    .venv/bin/python benchmarks/bench_fast_inference.py [--n 200] [--modes concat,rag-sequence,rag-token]

Writes benchmarks/results/fast_inference.json (speedup_* = torch seconds / ctranslate2 seconds per question;
f1_delta_* = ctranslate2 F1 minus torch F1, in points; rag_sequence_torch_speedup = previous / new decoder).
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.helpers.reference: the previous decoder

from bench_qa import GoldRetriever, sample_questions  # noqa: E402
from shared_data import MemoryStore, squad_open_book, update_results  # noqa: E402

from ragtune.evaluation.qa import evaluate_qa  # noqa: E402
from ragtune.generation import Generator  # noqa: E402
from ragtune.generation.ct2 import CT2Generator  # noqa: E402
from ragtune.rag import decoding  # noqa: E402
from ragtune.rag.model import RAG  # noqa: E402
from ragtune.retrieval.sparse import BM25Retriever  # noqa: E402

OUT = Path(__file__).parent / "results" / "fast_inference.json"


def previous_rag_sequence_decoder():
    """``rag_sequence_decode`` as it was before generation scores were reused (thorough, every pair scored)."""
    from tests.helpers.reference import reference_decode

    def decode(generator, prompts, doc_logp, *, thorough=True, num_candidates=1, **overrides):
        rows = reference_decode(generator, prompts, doc_logp.detach().float().cpu(), num_candidates, **overrides)
        return [decoding.SequenceChoice(text, marg, seq.float()) for text, marg, seq in rows]

    return decode


class Setting:
    """One (mode, backend) run accumulated over question batches, so settings can take turns batch by batch:
    on a shared machine, load then hits every setting alike and the ratios stay meaningful."""

    def __init__(self, rag: RAG, mode: str, k: int, decoder=None):
        self.rag, self.mode, self.k, self.decoder = rag, mode, k, decoder
        self.n = self.em = self.f1 = self.seconds = self.generation_seconds = self.tokens = 0.0
        self.predictions: list = []

    def run(self, batch) -> None:
        current = decoding.rag_sequence_decode
        if self.decoder is not None:
            decoding.rag_sequence_decode = self.decoder
        try:
            t = time.perf_counter()
            rep = evaluate_qa(self.rag, batch, mode=self.mode, k=self.k, batch_size=len(batch))
            self.seconds += time.perf_counter() - t
        finally:
            decoding.rag_sequence_decode = current
        tok = self.rag.generator.tokenizer
        self.tokens += sum(len(tok(p["answer"], add_special_tokens=False)["input_ids"]) + 1 for p in rep.predictions)
        self.n += rep.n
        self.em += rep.em * rep.n
        self.f1 += rep.f1 * rep.n
        self.generation_seconds += rep.generation_seconds_per_question * rep.n
        self.predictions += rep.predictions

    def to_dict(self) -> dict:
        return {"n": int(self.n), "em": self.em / self.n, "f1": self.f1 / self.n, "seconds_per_question": self.seconds / self.n,
                "generation_seconds_per_question": self.generation_seconds / self.n,
                "tokens_per_s": self.tokens / max(self.generation_seconds, 1e-9), "examples": self.predictions[:3]}


def generate_only(gens: dict, prompts: list[str], max_new_tokens: int, reps: int) -> dict:
    """tokens/s of each generator on the same prompts, interleaved prompt by prompt so load hits all alike."""
    for g in gens.values():
        g.generate(prompts[:1], max_new_tokens=max_new_tokens)  # warm-up (loads, converts)
    secs = {name: [] for name in gens}
    toks = {name: 0 for name in gens}
    for _ in range(reps):
        for p in prompts:
            for name, g in gens.items():
                s = time.perf_counter()
                toks[name] += len(g.generate([p], max_new_tokens=max_new_tokens)[0].token_ids)
                secs[name].append(time.perf_counter() - s)
    out = {name: {"tokens": toks[name], "seconds": sum(secs[name]), "tokens_per_s": toks[name] / sum(secs[name]),
                  "median_seconds_per_prompt": statistics.median(secs[name])} for name in gens}
    names = list(gens)
    out["ratio"] = out[names[1]]["tokens_per_s"] / out[names[0]]["tokens_per_s"]
    return out


def profile(gens: dict, rag: RAG, questions: list[str], k: int, max_new_tokens: int) -> dict:
    """Where a concat answer's time goes, per backend, one question at a time (medians): the prompt's prefill
    (generation of one token), the whole generation, and the posterior's scoring of the answer under each of
    the k single-passage prompts; the backends take turns question by question."""
    hits = rag.retrieve(questions, k)
    rows = hits.passages(rag.store)
    concat = [rag._concat_prompt(q, r) for q, r in zip(questions, rows)]
    single = [rag._single_prompts(q, r) for q, r in zip(questions, rows)]
    tok = next(iter(gens.values()))
    part: dict = {n: {"prefill": [], "generate": [], "posterior": [], "new_tokens": []} for n in gens}
    for i in range(len(questions)):
        for name, g in gens.items():
            t = time.perf_counter()
            g.generate([concat[i]], max_new_tokens=1)
            part[name]["prefill"].append(time.perf_counter() - t)
            t = time.perf_counter()
            out = g.generate([concat[i]], max_new_tokens=max_new_tokens)[0]
            part[name]["generate"].append(time.perf_counter() - t)
            part[name]["new_tokens"].append(len(out.token_ids))
            t = time.perf_counter()
            with torch.inference_mode():
                g.token_logprobs(single[i], [out.text] * len(single[i]))
            part[name]["posterior"].append(time.perf_counter() - t)
    for d in part.values():  # decoding's cost per token, question by question
        d["seconds_per_new_token_after_prefill"] = [(g - p) / max(t - 1, 1) for g, p, t in
                                                    zip(d["generate"], d["prefill"], d["new_tokens"])]
    med = {n: {key: statistics.median(v) for key, v in d.items()} for n, d in part.items()}
    a, b = list(gens)
    return {"questions": len(questions), "concat_prompt_tokens_median": statistics.median(len(x) for x in tok.encode_prompts(concat)),
            "single_prompt_tokens_median": statistics.median(len(x) for s in single for x in tok.encode_prompts(s)),
            "medians_seconds": med,
            f"ratios_{a}_over_{b}": {key: med[a][key] / med[b][key] for key in ("prefill", "generate", "posterior",
                                                                   "seconds_per_new_token_after_prefill")}}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--modes", default="concat,rag-sequence,rag-token")
    ap.add_argument("--max-new-tokens", type=int, default=24)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--compute-type", default="int8")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--previous-decoder", action="store_true", help="also time rag-sequence with the previous decoder")
    ap.add_argument("--generate-prompts", type=int, default=10)
    ap.add_argument("--profile", type=int, default=0, help="only the time split of N concat answers, into --out's 'profile'")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)  # both backends: CT2Generator uses torch's thread count

    split, passages, pid_of = squad_open_book()
    examples = sample_questions(split.test, 200)[: args.n]
    bm25 = BM25Retriever()
    bm25.add(passages)
    store = MemoryStore(passages)
    gens = {"torch": Generator("smollm2-135m-instruct", max_new_tokens=args.max_new_tokens, decoding="greedy"),
            "ctranslate2": CT2Generator("smollm2-135m-instruct", max_new_tokens=args.max_new_tokens, decoding="greedy",
                                        compute_type=args.compute_type)}
    results: dict = {"command": "python benchmarks/bench_fast_inference.py " + " ".join(sys.argv[1:]), "n": len(examples),
                     "sample": "bench_qa's sample (seed 0) of SQuAD v1.1 dev articles 36-47, first n", "k": args.k,
                     "retriever": "bm25", "decoding": "greedy", "max_new_tokens": args.max_new_tokens,
                     "compute_type": args.compute_type, "machine": f"{platform.machine()}, {args.threads} thread(s), shared",
                     "settings": {}}

    def save() -> None:  # a --profile run's section and the earlier run's summary stay
        old = json.loads(args.out.read_text()) if args.out.exists() else {}
        kept = {k: old[k] for k in ("profile", "n20_summary") if k in old}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(kept | results, indent=1))

    for gen in gens.values():  # load (and convert, once) before anything is timed
        gen.generate(["Hello"], max_new_tokens=2)
    if args.profile:
        split_time = profile(gens, RAG(bm25, gens["torch"], store, k=args.k), [e.question for e in examples[: args.profile]],
                             args.k, args.max_new_tokens)
        update_results(args.out, {"profile": {"command": results["command"], "threads": args.threads,
                                              "compute_type": args.compute_type, **split_time}})
        print(json.dumps(split_time["ratios_torch_over_ctranslate2"]))
        return
    settings: dict[str, Setting] = {}
    for mode in args.modes.split(","):
        for name, gen in gens.items():
            settings[f"{mode}/{name}"] = Setting(RAG(bm25, gen, store, k=args.k), mode, args.k)
        if mode == "rag-sequence" and args.previous_decoder:
            settings["rag-sequence/torch-previous-decoder"] = Setting(RAG(bm25, gens["torch"], store, k=args.k), mode, args.k,
                                                                      decoder=previous_rag_sequence_decoder())
    for start in range(0, len(examples), args.batch_size):
        batch = examples[start: start + args.batch_size]
        for name, setting in settings.items():  # every setting answers this batch before the next batch
            setting.run(batch)
        results["settings"] = {name: st.to_dict() for name, st in settings.items()}
        save()
        print(f"{start + len(batch)}/{len(examples)} " + " ".join(f"{name}: f1={d['f1']:.3f} s/q={d['seconds_per_question']:.2f}"
                                                                  for name, d in results["settings"].items()), file=sys.stderr, flush=True)

    s = results["settings"]
    for mode in args.modes.split(","):
        key = mode.replace("-", "_")
        t, f = s[f"{mode}/torch"], s[f"{mode}/ctranslate2"]
        results[f"speedup_{key}"] = t["seconds_per_question"] / f["seconds_per_question"]
        results[f"f1_delta_{key}"] = 100 * (f["f1"] - t["f1"])
        results[f"em_delta_{key}"] = 100 * (f["em"] - t["em"])
    if "rag-sequence/torch-previous-decoder" in s:
        results["rag_sequence_torch_speedup"] = (s["rag-sequence/torch-previous-decoder"]["seconds_per_question"]
                                                 / s["rag-sequence/torch"]["seconds_per_question"])
    gold = GoldRetriever({q.question: pid_of[q.positive_doc_ids[0]] for q in examples})
    prompts = [gens["torch"].build_prompt(e.question, store.get([gold.gold[e.question]])) for e in examples[: args.generate_prompts]]
    results["generate_only"] = generate_only(gens, prompts, args.max_new_tokens, reps=2)
    results["generate_only_ratio"] = results["generate_only"]["ratio"]
    save()
    print(json.dumps({k: v for k, v in results.items() if k.startswith(("speedup", "f1_delta", "rag_sequence", "generate_only_ratio"))}),
          flush=True)


if __name__ == "__main__":
    main()
