import numpy as np
import pytest
import torch

from ragtune.retrieval.index import Index
from tests.kg.kb import QUESTIONS


def test_index_serves_paths_and_answers_every_question(kg_world):
    with Index.open(kg_world["index"]) as idx:
        assert idx.default_kind() == "kg"
        r = idx.retriever("kg")
        assert r is idx.retriever("paths")  # a triples-only index: paths alone
        hits = r.search([q for q, _, _ in QUESTIONS], 5)
        for row, (q, answers, chain) in zip(hits.ids, QUESTIONS):
            best = idx.store.get([int(row[0])])[0]
            assert best.text.startswith(chain + " "), (q, best.text)
            assert idx.store.tails(int(row[0])) == answers


def test_dense_path_score_carries_gradients_to_the_query_encoder(kg_world):
    with Index.open(kg_world["index"]) as idx:
        r = idx.retriever("paths")
        qs = [q for q, _, _ in QUESTIONS[:3]]
        hits = r.search(qs, 4, return_vectors=True)
        assert hits.vectors.shape == (3, 4, r.encoder.dim)
        # the score is dense + w_sparse * sparse + w_link * link; recompute the dense part with autograd
        from ragtune.kg.graph import units
        from ragtune.kg.paths import sparse_overlap

        s = r.settings
        g = r.graph
        rest = np.array([[s.w_sparse * sparse_overlap(set(units(q)), [units(g.step_text(st)) for st in r.table.entry(int(i)).steps])
                          + s.w_link * {l.entity: l.score for l in r.link(q)}[r.table.entry(int(i)).topic] for i in row]
                         for q, row in zip(qs, hits.ids)])
        enc = r.encoder
        q = enc.embed(qs, kind="query")
        f = torch.einsum("bd,bkd->bk", q, torch.from_numpy(hits.vectors))
        assert f.detach().numpy() == pytest.approx(hits.scores - rest, abs=1e-4)
        # the trainer's f(q, z) adds the fixed terms back: hits.offsets are the sparse and link terms
        assert (rest > 0).any() and hits.offsets == pytest.approx(rest, abs=1e-4)
        loss = -torch.log_softmax(f, -1)[:, 0].sum()
        enc.model.zero_grad()
        loss.backward()
        grads = [p.grad for p in enc.model.parameters() if p.grad is not None]
        assert grads and sum(float(g.abs().sum()) for g in grads) > 0


def test_chain_vectors_follow_the_encoder_weights(kg_world):
    with Index.open(kg_world["index"]) as idx:
        r = idx.retriever("paths")
        before = r.chain_vectors(["[nationality of spouse]"]).copy()
        with torch.no_grad():
            p = next(r.encoder.model.parameters())
            p.mul_(torch.rand(p.shape, generator=torch.Generator().manual_seed(0)) + 0.5)  # an optimiser step: in place
        after = r.chain_vectors(["[nationality of spouse]"])
        assert not np.allclose(before, after)


def test_an_index_with_documents_and_triples_retrieves_both(kg_world, tmp_path):
    from ragtune.kg.ingest import update_triples
    from ragtune.kg.store import is_path_id
    from ragtune.retrieval.update import update

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "veltria.txt").write_text("Veltria is a coastal republic whose spouse registry is famous; its nationality law dates from 1820.")
    (docs / "other.txt").write_text("Ostmark is a mountain country known for lund keep castle.")
    index = tmp_path / "idx"
    update(index, [docs], retrievers=["bm25"])
    update_triples(index, [kg_world["kb"]], config=kg_world["cfg"], search={"w_sparse": 5.0})
    update(index, [docs], retrievers=["bm25"])  # a later document update keeps the graph
    with Index.open(index) as idx:
        assert idx.has_graph and idx.kinds == ["bm25"]
        hits = idx.retriever().search(["what is the nationality of aldo_brenn 's spouse ?"], 6)
        ids = [int(i) for i in hits.ids[0] if i >= 0]
        assert any(is_path_id(i) for i in ids) and any(not is_path_id(i) for i in ids)
        texts = [p.text for p in idx.store.get(ids)]
        assert any(t.startswith("[nationality of spouse]") for t in texts) and any("Veltria is" in t for t in texts)
