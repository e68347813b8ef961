import json

from ragtune.kg.readers import read_triples


def test_tsv_with_malformed_lines_counts_them_with_line_numbers(tmp_path):
    f = tmp_path / "kb.tsv"
    f.write_text("a\tr\tb\n# comment\n\nonly\ttwo\nc\tr\td\te\nx\ty\tz\n", encoding="utf-8")
    got = read_triples(f)
    assert got.triples == [("a", "r", "b"), ("x", "y", "z")]
    assert [(p.line, p.path) for p in got.problems] == [(4, str(f)), (5, str(f))]
    assert "got 2 field(s)" in got.problems[0].reason


def test_pipe_separated(tmp_path):
    f = tmp_path / "kb.txt"
    f.write_text("a|r|b\nbad line\n北京|首都of|中国\n", encoding="utf-8")
    got = read_triples(f, sep="|")
    assert got.triples == [("a", "r", "b"), ("北京", "首都of", "中国")]
    assert [p.line for p in got.problems] == [2]


def test_jsonl(tmp_path):
    f = tmp_path / "kb.jsonl"
    rows = [{"subject": "a", "relation": "r", "object": "b"}, {"subject": "a"}, "not an object", {"subject": "c", "relation": "r", "object": ""}]
    f.write_text("\n".join(json.dumps(r) for r in rows) + "\n{broken\n", encoding="utf-8")
    got = read_triples(f)
    assert got.triples == [("a", "r", "b")]
    assert [p.line for p in got.problems] == [2, 3, 4, 5]


def test_ntriples_with_labels_and_a_bad_line(tmp_path):
    f = tmp_path / "kb.nt"
    f.write_text(
        '<http://ex.org/alice> <http://ex.org/rel#spouse> <http://ex.org/bob> .\n'
        '<http://ex.org/alice> <http://www.w3.org/2000/01/rdf-schema#label> "Alice Smith" .\n'
        'this is not a triple\n', encoding="utf-8")
    got = read_triples(f)
    assert got.triples == [("http://ex.org/alice", "spouse", "http://ex.org/bob")]
    assert got.labels == {"http://ex.org/alice": ["Alice Smith"]}
    assert [p.line for p in got.problems] == [3]


def test_turtle(tmp_path):
    f = tmp_path / "kb.ttl"
    f.write_text('@prefix ex: <http://ex.org/> .\n@prefix rdfs: <http://www.w3.org/2000/01/rdf-schema#> .\n'
                 'ex:li_bai ex:friend ex:du_fu ; rdfs:label "李白" .\n', encoding="utf-8")
    got = read_triples(f)
    assert got.triples == [("http://ex.org/li_bai", "friend", "http://ex.org/du_fu")]
    assert got.labels["http://ex.org/li_bai"] == ["李白"]


def test_json_knowledge_base_of_entity_lists_as_kdconv_writes_it(tmp_path):
    f = tmp_path / "kb.json"
    kb = {"故宫": [["故宫", "地址", "北京市东城区"], ["故宫", "门票", "60元"], ["故宫", "地址", "北京市东城区"], ["only", "two"]],
          "天坛": [{"subject": "天坛", "relation": "地址", "object": "北京市东城区"}], "bad": "not a list"}
    f.write_text(json.dumps(kb, ensure_ascii=False), encoding="utf-8")
    got = read_triples(f)
    # duplicates stay here; the graph keeps one edge per distinct triple
    assert got.triples == [("故宫", "地址", "北京市东城区"), ("故宫", "门票", "60元"), ("故宫", "地址", "北京市东城区"),
                           ("天坛", "地址", "北京市东城区")]
    assert [p.reason for p in got.problems] == ["'故宫' item 4: expected {\"subject\", \"relation\", \"object\"} or [subject, relation, object]",
                                                "'bad' is not a list of triples"]


def test_json_list_of_triples_and_a_broken_file(tmp_path):
    f = tmp_path / "kb.json"
    f.write_text('[["a", "r", "b"], ["c", "r", ""]]', encoding="utf-8")
    got = read_triples(f)
    assert got.triples == [("a", "r", "b")] and "item 2" in got.problems[0].reason
    f.write_text('[["a", "r", "b"', encoding="utf-8")
    got = read_triples(f)
    assert got.triples == [] and "not JSON" in got.problems[0].reason and "file skipped" in got.problems[0].reason


def test_real_kdconv_travel_kb_indexes_its_distinct_triples(tmp_path):
    import pytest

    from tests.helpers.datasets import DATASETS

    path = DATASETS / "kdconv_travel" / "kb_travel.json"
    if not path.is_file():
        pytest.skip("shared KdConv travel not available")
    from ragtune.kg.ingest import update_triples

    report = update_triples(tmp_path / "idx", [path])
    # the README: 12,509 triples listed, 10,968 distinct, 7 relations
    assert (report.triples_total, report.relations, len(report.problems)) == (10968, 7, 0)
