import pytest

from ragtune.kg.graph import Graph, norm_name
from ragtune.kg.linking import FUZZY_WEIGHT, EntityLinker, exact_score
from tests.kg.kb import TRIPLES


@pytest.fixture(scope="module")
def linker():
    g = Graph()
    g.replace_source("kb", "fp", TRIPLES)
    return EntityLinker(g)


def names(linker, links):
    return [linker.graph.names[l.entity] for l in links]


def test_norm_name_reads_underscores_as_spaces():
    assert norm_name("Ernest_Augustus_I_of_Hanover") == "ernest augustus i of hanover"
    assert norm_name("杜甫草堂") == "杜 甫 草 堂"


def test_exact_score_by_hand():
    assert exact_score(8) == pytest.approx(1 - 0.5 / 2.718281828, abs=1e-6)


def test_exact_longest_match_first(linker):
    # "harlow city" is one mention: the entity harlow_city, not harlow
    assert names(linker, linker.exact("who was born in harlow city ?")) == ["harlow_city"]
    assert "harlow" in names(linker, linker.exact("who lives in harlow ?"))


def test_ambiguous_name_returns_every_entity_and_prefers_the_verbatim_one(linker):
    got = linker.exact("what is the nationality of mira_kessel 's spouse ?")
    assert names(linker, got) == ["mira_kessel", "Mira_Kessel"]
    assert got[0].score == pytest.approx(got[1].score + 0.05)  # written exactly as the KB writes it
    plain = linker.exact("what is the nationality of mira kessel 's spouse ?")
    assert plain[0].score == plain[1].score  # neither verbatim: equally likely


def test_fuzzy_finds_a_misspelt_mention(linker):
    assert linker.exact("what is the nationality of aldo bren ?") == []
    top = linker.link("what is the nationality of aldo bren ?")[0]
    assert linker.graph.names[top.entity] == "aldo_brenn" and not top.exact
    assert 0.5 * FUZZY_WEIGHT <= top.score < FUZZY_WEIGHT


def test_chinese_exact_and_fuzzy(linker):
    got = linker.link("李白的朋友的出生地是哪里？")
    assert names(linker, got)[0] == "李白" and got[0].exact
    fuzzy = linker.link("杜甫的草堂在哪里")
    found = {linker.graph.names[l.entity]: l for l in fuzzy}
    assert found["杜甫"].exact and not found["杜甫草堂"].exact and found["杜甫草堂"].score > 0
