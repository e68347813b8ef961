"""BM25 and TF-IDF scores against numbers computed here from the formulas, independently of the implementation."""
import math

import numpy as np
import pytest

from ragtune.config import AnalyzerConfig, SparseConfig
from ragtune.corpus.types import Passage
from ragtune.retrieval.sparse import BM25Retriever, TfidfRetriever

PLAIN = AnalyzerConfig(stopwords=None, stemmer=None)  # tokens are exactly the words below
DOCS = {10: "apple banana apple", 11: "banana cherry", 12: "cherry date elder fig"}
QUERY = "apple cherry"
K1, B, DELTA = 1.2, 0.75, 0.5


def hand_bm25(variant: str) -> dict[int, float]:
    """Score of every document that contains a query term with a nonzero idf, straight from the formulas."""
    docs = {i: t.split() for i, t in DOCS.items()}
    n = len(docs)
    avgdl = sum(len(d) for d in docs.values()) / n  # 3.0
    q = QUERY.split()
    out = {}
    for i, d in docs.items():
        score, matched = 0.0, False
        for t in q:
            tf, df, dl = d.count(t), sum(t in x for x in docs.values()), len(d)
            norm = 1 - B + B * dl / avgdl
            if variant == "lucene":
                idf, tfc = math.log(1 + (n - df + 0.5) / (df + 0.5)), tf / (tf + K1 * norm)
            elif variant == "robertson":
                idf, tfc = math.log(max((n - df + 0.5) / (df + 0.5), 1.0)), tf / (tf + K1 * norm)
            elif variant == "atire":
                idf, tfc = math.log(n / df), (K1 + 1) * tf / (tf + K1 * norm)
            elif variant == "bm25l":
                c = tf / norm
                idf, tfc = math.log((n + 1) / (df + 0.5)), (K1 + 1) * (c + DELTA) / (K1 + c + DELTA)
            else:  # bm25+
                idf, tfc = math.log((n + 1) / df), (K1 + 1) * tf / (tf + K1 * norm) + DELTA
            score += idf * tfc
            matched |= tf > 0 and idf > 0
        if matched:
            out[i] = score
    return out


@pytest.mark.parametrize("variant", ["lucene", "robertson", "atire", "bm25l", "bm25+"])
def test_bm25_variants_equal_hand_computed(variant):
    r = BM25Retriever(SparseConfig(variant=variant, k1=K1, b=B, delta=DELTA), PLAIN)
    r.add([Passage(id=i, doc_id=str(i), text=t) for i, t in DOCS.items()])
    hits = r.search([QUERY], k=5)
    got = dict(hits.row(0))
    want = hand_bm25(variant)
    assert set(got) == set(want)
    for i, s in want.items():
        assert got[i] == pytest.approx(s, rel=1e-5)
    assert list(hits.scores[0][: len(got)]) == sorted(hits.scores[0][: len(got)], reverse=True)
    # k = 5 is capped at the len(DOCS) passages there are; slots past the matches are empty
    assert hits.ids.shape == (1, min(5, len(DOCS))) and (hits.ids[0, len(got):] == -1).all() and np.isneginf(hits.scores[0, len(got):]).all()


def test_some_hand_values_spelled_out():
    # lucene, doc 10: idf(apple) = ln(1 + 2.5/1.5); tf=2, dl=3=avgdl so norm=1: tfc = 2/3.2
    r = BM25Retriever(SparseConfig(), PLAIN).fit([Passage(id=i, doc_id=str(i), text=t) for i, t in DOCS.items()])
    assert dict(r.search(["apple"], 3).row(0)) == {10: pytest.approx(math.log(1 + 2.5 / 1.5) * 2 / 3.2, rel=1e-6)}


def test_same_ranking_and_scores_as_rank_bm25():
    from rank_bm25 import BM25Okapi

    corpus = [
        "retrieval augmented generation with dense passage retrieval",
        "sparse retrieval with bm25 remains a strong baseline",
        "dense encoders map questions and passages to vectors",
        "generation models condition on retrieved passages",
        "bm25 scoring saturates term frequency and normalises length",
        "cats sleep on warm keyboards",
        "keyboards and cats and more cats",
        "the weather today is sunny with light wind",
    ]
    queries = ["bm25 sparse baseline", "dense passages", "cats keyboards", "term frequency length", "generation"]
    cfg = AnalyzerConfig()
    r = BM25Retriever(SparseConfig(variant="robertson"), cfg).fit([Passage(id=i, doc_id=str(i), text=t) for i, t in enumerate(corpus)])
    lucene = BM25Retriever(SparseConfig(variant="lucene"), cfg).fit([Passage(id=i, doc_id=str(i), text=t) for i, t in enumerate(corpus)])
    okapi = BM25Okapi(r.analyzer.batch(corpus), k1=1.2, b=0.75)
    for q in queries:
        toks = r.analyzer(q)
        # Every query term is in fewer than half the documents, so Okapi's idf needs no epsilon floor and equals
        # Robertson's; Okapi keeps the (k1 + 1) factor that the Robertson variant drops.
        assert all(sum(t in d for d in r.analyzer.batch(corpus)) < len(corpus) / 2 for t in toks)
        okapi_scores = okapi.get_scores(toks)
        ours = dict(r.search([q], len(corpus)).row(0))
        for i, s in enumerate(okapi_scores):
            assert ours.get(i, 0.0) * (1 + 1.2) == pytest.approx(s, rel=1e-5, abs=1e-6)
        ranked = [i for i in np.argsort(-okapi_scores, kind="stable") if okapi_scores[i] > 0]
        assert [i for i, _ in r.search([q], len(corpus)).row(0)] == ranked
        assert [i for i, _ in lucene.search([q], len(corpus)).row(0)] == ranked  # lucene idf agrees on this fixture


def test_tfidf_cosine_by_hand():
    r = TfidfRetriever(SparseConfig(), PLAIN).fit([Passage(id=0, doc_id="a", text="apple banana"),
                                                   Passage(id=1, doc_id="b", text="apple apple cherry")])
    idf_apple, idf_rare = math.log(3 / 3) + 1, math.log(3 / 2) + 1  # smooth idf: ln((1+N)/(1+df)) + 1
    d0 = math.sqrt(idf_apple**2 + idf_rare**2)  # sublinear tf 1 for both terms
    d1 = math.sqrt(((1 + math.log(2)) * idf_apple) ** 2 + idf_rare**2)
    # the query "apple" is the unit vector on apple, so cosine = the document's normalised apple weight
    got = dict(r.search(["apple"], 2).row(0))
    assert got == {0: pytest.approx(idf_apple / d0, rel=1e-5), 1: pytest.approx((1 + math.log(2)) * idf_apple / d1, rel=1e-5)}
    # "banana cherry": q = (idf_rare, idf_rare)/(sqrt 2 idf_rare); doc 1 shares cherry only
    got = dict(r.search(["banana cherry"], 2).row(0))
    assert got[1] == pytest.approx((1 / math.sqrt(2)) * idf_rare / d1, rel=1e-5)
    assert got[0] == pytest.approx((1 / math.sqrt(2)) * idf_rare / d0, rel=1e-5)
    assert dict(r.search(["apple banana"], 1).row(0))[0] == pytest.approx(1.0, rel=1e-5)  # identical vectors


def test_chinese_question_finds_its_passage():
    passages = ["北京是中国的首都，有很多历史古迹。", "上海是中国最大的城市，也是金融中心。", "熊猫主要生活在四川的山区，以竹子为食。",
                "The capital of France is Paris."]
    r = BM25Retriever().fit([Passage(id=i, doc_id=str(i), text=t) for i, t in enumerate(passages)])
    assert r.search(["中国的首都是哪里？"], 1).ids[0, 0] == 0
    assert r.search(["熊猫吃什么"], 1).ids[0, 0] == 2
    assert r.search(["哪个城市是金融中心"], 1).ids[0, 0] == 1
    assert r.search(["capital of France"], 1).ids[0, 0] == 3
