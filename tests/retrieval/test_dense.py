import numpy as np
import pytest
import torch

from ragtune.config import DenseConfig
from ragtune.corpus.types import Passage
from ragtune.retrieval.base import EMPTY_ID, IndexedRetriever
from ragtune.retrieval.dense import DenseRetriever, Encoder
from tests.helpers.tiny_encoder import DEFAULT_TEXTS, tiny_encoder_dir


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return tiny_encoder_dir(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture
def passages():
    return [Passage(id=10 + i, doc_id=f"d{i}", text=t, title=f"T{i}" if i % 2 else "") for i, t in enumerate(DEFAULT_TEXTS)]


def test_encoder_unit_vectors_and_batching_does_not_change_them(model_dir):
    enc = Encoder(str(model_dir), batch_size=2)
    v = enc.encode_passages(DEFAULT_TEXTS)
    assert v.shape == (len(DEFAULT_TEXTS), enc.dim) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, rtol=1e-5)
    one_by_one = np.concatenate([enc.encode_passages([t]) for t in DEFAULT_TEXTS])
    np.testing.assert_allclose(v, one_by_one, atol=1e-5)  # padding is masked, order is restored
    assert enc.encode_queries([]).shape == (0, enc.dim)


def test_prefixes_pooling_and_normalize_options(model_dir):
    plain = Encoder(str(model_dir))
    e5 = Encoder(str(model_dir), query_prefix="query: ", passage_prefix="passage: ")
    t = DEFAULT_TEXTS[:2]
    np.testing.assert_allclose(e5.encode_queries(t), plain.encode_queries(["query: " + x for x in t]), atol=1e-6)
    assert not np.allclose(e5.encode_queries(t), e5.encode_passages(t))
    assert plain.pooling == "mean"  # no 1_Pooling config in the dir
    raw = Encoder(str(model_dir), pooling="cls", normalize=False).encode_queries(t)
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1.0)


def test_embed_matches_encode_and_has_gradients(model_dir):
    enc = Encoder(str(model_dir))
    emb = enc.embed(DEFAULT_TEXTS[:3], kind="query")
    assert emb.requires_grad
    np.testing.assert_allclose(emb.detach().numpy(), enc.encode_queries(DEFAULT_TEXTS[:3]), atol=1e-5)
    docs = torch.from_numpy(enc.encode_passages(DEFAULT_TEXTS[3:9]).reshape(3, 2, -1))
    torch.einsum("bd,bkd->bk", emb, docs).logsumexp(-1).sum().backward()
    grads = [p.grad for p in enc.model.parameters() if p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)
    # short and long rows run in separate length groups; the rows come back in input order
    mixed = [DEFAULT_TEXTS[0], " ".join(DEFAULT_TEXTS[:8]), DEFAULT_TEXTS[1], " ".join(DEFAULT_TEXTS[2:5])]
    with torch.no_grad():
        np.testing.assert_allclose(enc.embed(mixed, kind="passage").numpy(), enc.encode_passages(mixed), atol=1e-5)


def test_encoder_save_load_round_trip(model_dir, tmp_path):
    enc = Encoder(str(model_dir), pooling="cls", query_prefix="q: ", max_length=32)
    enc.save(tmp_path / "enc")
    again = Encoder.load(tmp_path / "enc")
    assert again.settings() == enc.settings()
    np.testing.assert_allclose(again.encode_queries(DEFAULT_TEXTS[:3]), enc.encode_queries(DEFAULT_TEXTS[:3]), atol=1e-6)


def test_encoder_is_lazy():
    enc = Encoder("definitely/not-a-model")  # no loading, no error until used
    assert enc._model is None


def test_dense_retriever_search_add_delete_save_load(model_dir, passages, tmp_path):
    r = DenseRetriever(DenseConfig(encoder=str(model_dir)))
    assert isinstance(r, IndexedRetriever) and r.kind == "dense"
    r.add(passages)
    assert len(r) == len(passages)
    # a passage's own text finds it: identical text under the passage prefix ("") gives cosine 1
    hits = r.search([p.indexed_text for p in passages], 3, return_vectors=True)
    assert list(hits.ids[:, 0]) == [p.id for p in passages]
    assert hits.scores.dtype == np.float32 and (np.diff(hits.scores, axis=1) <= 1e-6).all()
    assert hits.vectors.shape == (len(passages), 3, r.encoder.dim)
    np.testing.assert_allclose(np.einsum("nd,nkd->nk", r.encoder.encode_queries([p.indexed_text for p in passages]), hits.vectors), hits.scores, atol=1e-5)

    r.delete([10, 11])
    assert len(r) == len(passages) - 2
    many = r.search(["anything at all"], 20)
    assert not np.isin(many.ids, [10, 11]).any() and (many.ids[0, len(r):] == EMPTY_ID).all()
    assert r.passage_vectors(np.array([[12, EMPTY_ID]])).shape == (1, 2, r.encoder.dim)

    r.save(tmp_path / "dense")
    again = DenseRetriever.load(tmp_path / "dense")
    assert len(again) == len(r)
    q = ["Where is the Eiffel Tower?", "Who wrote Hamlet?"]
    np.testing.assert_array_equal(again.search(q, 5).ids, r.search(q, 5).ids)


def test_saved_encoder_subfolder_wins(model_dir, passages, tmp_path):
    r = DenseRetriever(DenseConfig(encoder=str(model_dir)))
    r.add(passages[:4])
    with torch.no_grad():  # "fine-tune": perturb the weights so vectors differ from the base model
        for p in r.encoder.model.parameters():
            p.add_(0.01)
    r.reencode(passages[:4])
    r.save(tmp_path / "dense", save_encoder=True)
    again = DenseRetriever.load(tmp_path / "dense")
    assert (tmp_path / "dense" / "encoder" / "encoder.json").exists()
    np.testing.assert_allclose(again.encoder.encode_queries(["x y"]), r.encoder.encode_queries(["x y"]), atol=1e-6)
    np.testing.assert_array_equal(again.search(["Paris tower"], 4).ids, r.search(["Paris tower"], 4).ids)


def test_search_vectors_and_empty_index(model_dir):
    r = DenseRetriever(DenseConfig(encoder=str(model_dir)))
    empty = r.search(["a", "b"], 3, return_vectors=True)
    # k is capped at the passages there are (at least one slot), so an empty index answers one empty column
    assert (empty.ids == EMPTY_ID).all() and empty.vectors.shape == (2, 1, r.encoder.dim)
    r.add([Passage(id=1, doc_id="a", text="alpha"), Passage(id=2, doc_id="b", text="beta")])
    q = r.encoder.encode_passages(["beta"])
    assert r.search_vectors(q, 1).ids[0, 0] == 2


@pytest.mark.slow
def test_minilm_retrieves_paraphrase():
    passages = [
        Passage(id=i, doc_id=str(i), text=t)
        for i, t in enumerate([
            "The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris.",
            "Photosynthesis is the process by which green plants turn sunlight into chemical energy.",
            "Mount Everest, on the border of Nepal and China, is Earth's highest mountain above sea level.",
            "William Shakespeare wrote the tragedy Hamlet around 1600.",
            "The mitochondrion generates most of the cell's supply of ATP.",
            "Python is a high-level programming language created by Guido van Rossum.",
        ])
    ]
    r = DenseRetriever()  # default: the packaged MiniLM
    r.add(passages)
    assert r.encoder.pooling == "mean" and r.encoder.dim == 384
    questions = [
        "In which city can you find the famous iron tower?",
        "How do plants make food from light?",
        "What is the tallest peak in the world?",
        "Who is the author of Hamlet?",
        "Which organelle produces energy for cells?",
        "Who invented the Python language?",
    ]
    assert list(r.search(questions, 1).ids[:, 0]) == [p.id for p in passages]
