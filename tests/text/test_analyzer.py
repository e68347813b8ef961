from ragtune.config import AnalyzerConfig
from ragtune.text import Analyzer, cjk_ngrams


def test_nfkc_and_lowercase():
    a = Analyzer(AnalyzerConfig(stopwords=None, stemmer=None))
    assert a("ＡＢＣ ﬁne Ｒｕｎ") == ["abc", "fine", "run"]  # full-width and ligature forms fold to plain ASCII
    raw = Analyzer(AnalyzerConfig(normalize="none", lowercase=False, stopwords=None, stemmer=None))
    assert raw("ＡＢＣ Run") == ["ＡＢＣ", "Run"]


def test_stopwords_bundled_explicit_and_off():
    assert Analyzer(AnalyzerConfig(stemmer=None))("the cat is on a mat") == ["cat", "mat"]
    assert Analyzer(AnalyzerConfig(stemmer=None, stopwords=["cat"]))("the cat is on a mat") == ["the", "is", "on", "mat"]
    assert Analyzer(AnalyzerConfig(stemmer=None, stopwords=None))("the cat") == ["the", "cat"]


def test_stemming_and_single_characters():
    a = Analyzer()
    assert a("Running runners ran quickly") == ["run", "runner", "ran", "quick"]
    assert Analyzer(AnalyzerConfig(stemmer=None))("running") == ["running"]
    assert a("x 5 a_b e2e") == ["a_b", "e2e"]  # single letters/digits carry no topic (bm25s' \w\w+)
    assert a("café naïve") == ["café", "naïv"]  # non-ASCII path agrees with the ASCII one


def test_cjk_bigrams():
    a = Analyzer()
    assert a("信息检索") == ["信息", "息检", "检索"]
    assert a("中") == ["中"]  # a lone CJK character stays a unigram
    assert a("BM25与信息检索 系统") == ["bm25", "与信", "信息", "息检", "检索", "系统"]
    assert a("東京タワー") == ["東京", "京タ", "タワ", "ワー"]
    assert Analyzer(AnalyzerConfig(cjk_bigrams=False))("信息检索") == ["信", "息", "检", "索"]
    assert cjk_ngrams("ab") == ["ab"]


def test_batch_equals_single_and_dict_round_trip():
    a = Analyzer()
    texts = ["The quick brown foxes", "信息检索 Retrieval", "", "ＡＢＣ stopped"]
    assert a.batch(texts) == [a(t) for t in texts]
    b = Analyzer.from_dict(a.to_dict())
    assert b == a and b.batch(texts) == a.batch(texts)
    assert Analyzer.from_dict(Analyzer(AnalyzerConfig(stemmer=None)).to_dict()) != a
