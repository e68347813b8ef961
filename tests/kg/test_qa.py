import pytest

from ragtune.errors import RagtuneError
from ragtune.kg.qa import (answer_f1, hard_split, hits_at_1, load_kgqa, parse_pathquestion, parse_ratios, path_recall,
                           random_split)

PQ = ("what is the nation of frederica_of_mecklenburg-strelitz 's couple ?\tunited_kingdom(united_kingdom/)\t"
      "frederica_of_mecklenburg-strelitz#spouse#ernest_augustus_i_of_hanover#nationality#united_kingdom#<end>#united_kingdom")
PQL = " what is the notable_types of Kenneth_Peach 's film ?\tAdaptation(Adaptation/Film/)\tKenneth_Peach#__film__cinematographer__film#Dirty_Work#__common__topic__notable_types#Adaptation"


def test_parse_pathquestion_lines():
    q = parse_pathquestion(PQ)
    assert q.record.answers == ["united_kingdom"]
    assert q.record.positive_texts == ["[nationality of spouse]"]
    assert q.group == ("frederica_of_mecklenburg-strelitz", ("spouse", "nationality"))
    q = parse_pathquestion(PQL)
    assert q.record.question == "what is the notable_types of Kenneth_Peach 's film ?"
    assert q.record.answers == ["Adaptation", "Film"]
    assert q.record.positive_texts == ["[common topic notable types of film cinematographer film]"]
    with pytest.raises(ValueError, match="3 tab-separated"):
        parse_pathquestion("no tabs here")


def test_load_reports_bad_lines(tmp_path):
    f = tmp_path / "pq.txt"
    f.write_text(PQ + "\nbroken line\n" + PQL + "\n", encoding="utf-8")
    problems: list[str] = []
    rows = load_kgqa(f, problems)
    assert len(rows) == 2 and problems and problems[0].startswith("line 2:")
    with pytest.raises(RagtuneError, match="line 2"):
        load_kgqa(f)


def test_hits_at_1_normalises_case_underscores_punctuation_and_cjk():
    assert hits_at_1("United Kingdom", ["united_kingdom"]) == 1.0
    assert hits_at_1("the united-kingdom.", ["united_kingdom"]) == 0.0  # a hyphen is punctuation: "unitedkingdom"
    assert hits_at_1("巩 县", ["巩县"]) == 1.0
    assert hits_at_1("", ["x"]) == 0.0
    assert answer_f1("united kingdom of great britain", ["united_kingdom"]) == pytest.approx(2 * (2 / 5) * 1 / (2 / 5 + 1))
    assert path_recall([["a"], ["b", "United_Kingdom"]], ["united kingdom"]) == 1.0
    assert path_recall([["a"]], ["b"]) == 0.0


def _rows(n_groups=10, per=5):
    from ragtune.corpus.squad import QARecord
    from ragtune.kg.qa import KGQuestion

    return [KGQuestion(QARecord(f"q{g}-{i}", ["a"]), f"t{g % 4}", (f"r{g}",)) for g in range(n_groups) for i in range(per)]


def test_splits_are_seeded_and_the_hard_one_keeps_groups_apart():
    rows = _rows()
    a = random_split(rows, (8, 1, 1), seed=0)
    assert [len(p) for p in a] == [40, 5, 5]
    assert a == random_split(rows, (8, 1, 1), seed=0) and a != random_split(rows, (8, 1, 1), seed=1)
    tr, dev, te = hard_split(rows, (8, 1, 1), seed=0)
    assert len(tr) + len(dev) + len(te) == 50 and te
    assert not {r.group for r in tr} & {r.group for r in te}
    assert not {r.group for r in dev} & {r.group for r in te}
    assert parse_ratios("8:1:1") == (8.0, 1.0, 1.0)
    with pytest.raises(RagtuneError):
        parse_ratios("8:2")
