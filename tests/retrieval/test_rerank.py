import numpy as np
import pytest
import torch

from ragtune.corpus.types import Passage
from ragtune.retrieval.base import EMPTY_ID, Hits, Retriever
from ragtune.retrieval.rerank import Reranker, RerankedRetriever, lookup_texts
from tests.helpers.tiny_encoder import tiny_cross_encoder_dir

PASSAGES = {
    1: "The Eiffel Tower is a wrought-iron lattice tower in Paris, France.",
    2: "Photosynthesis converts light energy into chemical energy in plants.",
    3: "Shakespeare wrote Hamlet, Macbeth and many sonnets.",
    4: "Mount Everest is the highest mountain above sea level.",
}
QUERIES = {"Where is the Eiffel Tower?": 1, "What do plants do with light?": 2, "Who wrote Hamlet?": 3, "How high is Everest?": 4}


@pytest.fixture(scope="module")
def trained_reranker(tmp_path_factory):
    """A tiny cross-encoder trained for a few seconds to score each query's own passage above the others."""
    path = tiny_cross_encoder_dir(tmp_path_factory.mktemp("tiny-ce"))
    rr = Reranker(str(path), top_n=3, batch_size=8)
    model, tok = rr.model, rr.tokenizer
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    qs = [q for q in QUERIES for _ in PASSAGES]
    ps = [PASSAGES[p] for _ in QUERIES for p in PASSAGES]
    labels = torch.tensor([float(QUERIES[q] == p) for q in QUERIES for p in PASSAGES])
    batch = tok(qs, ps, padding=True, return_tensors="pt")
    torch.manual_seed(0)
    for _ in range(60):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(**batch).logits[:, 0], labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    return rr


def test_reranker_prefers_relevant_passages(trained_reranker):
    queries = list(QUERIES)
    # first stage put the relevant passage last (or beyond top_n for the last query)
    first = Hits(
        np.array([[4, 3, 1, 2], [1, 3, 2, 4], [4, 1, 3, EMPTY_ID], [1, 2, 3, 4]]),
        np.array([[4, 3, 2, 1]] * 3 + [[4, 3, 2, 1]], dtype=np.float32),
    )
    first.scores[2, 3] = -np.inf
    out = trained_reranker.rerank(queries, first, PASSAGES)
    assert list(out.ids[:3, 0]) == [1, 2, 3]
    assert (np.diff(out.scores, axis=1)[np.isfinite(np.diff(out.scores, axis=1))] <= 0).all()
    assert out.ids[2, 3] == EMPTY_ID
    # the relevant passage 4 sat at rank 4 > top_n=3, so it stays where the first stage put it
    assert out.ids[3, 3] == 4 and set(out.ids[3, :3]) == {1, 2, 3}


def test_reranked_retriever_satisfies_retriever(trained_reranker):
    class Base:
        def search(self, queries, k):
            return Hits(np.tile(np.array([4, 3, 2, 1])[:k], (len(queries), 1)), np.tile(np.arange(k, 0, -1, dtype=np.float32), (len(queries), 1)))

    store = {i: Passage(id=i, doc_id=str(i), text=t) for i, t in PASSAGES.items()}
    r = RerankedRetriever(Base(), trained_reranker, store)
    assert isinstance(r, Retriever)
    hits = r.search(["Who wrote Hamlet?", "How high is Everest?"], 2)
    # the base is asked for top_n=3 candidates (4, 3, 2); the reranker lifts each query's own passage to the top
    assert hits.ids.shape == (2, 2) and list(hits.ids[:, 0]) == [3, 4]


def test_lookup_texts_accepts_mapping_callable_and_store():
    p = Passage(id=1, doc_id="a", text="body", title="Title")

    class Store:
        def get(self, ids):
            return [p if i == 1 else None for i in ids]

    assert lookup_texts({1: "x"}, [1]) == ["x"]
    assert lookup_texts(lambda ids: ["y" for _ in ids], [1, 2]) == ["y", "y"]
    assert lookup_texts(Store(), [1, 9]) == ["Title\nbody", ""]


def test_search_cli_and_rag_use_a_configured_cross_encoder(tmp_path, capsys):
    """`search --rerank` and `[rerank] model` in the config both put the cross-encoder behind the retriever."""
    import json

    from ragtune.cli import main
    from ragtune.config import Config
    from ragtune.rag.model import RAG
    from ragtune.retrieval.update import update

    kb = tmp_path / "kb"
    kb.mkdir()
    for i, text in PASSAGES.items():
        (kb / f"{i}.txt").write_text(text, encoding="utf-8")
    update(tmp_path / "idx", [kb])
    ce = tiny_cross_encoder_dir(tmp_path / "ce")
    main(["search", "tower Paris plants light", "--index", str(tmp_path / "idx"), "--rerank", str(ce), "--json", "-k", "2"])
    hits = json.loads(capsys.readouterr().out)["hits"]
    ce_scores = Reranker(str(ce)).score(["tower Paris plants light"] * 2, [f"\n{h['text']}" for h in hits])
    assert len(hits) == 2 and [h["score"] for h in hits] == pytest.approx(sorted(ce_scores, reverse=True), abs=1e-4)

    cfg = Config().updated(rerank={"model": str(ce), "top_n": 4})
    rag = RAG.from_index(tmp_path / "idx", config=cfg, generator=object(), k=2)
    assert isinstance(rag.retriever, RerankedRetriever) and rag.retrieve(["Eiffel Tower Paris"]).ids.shape == (1, 2)
