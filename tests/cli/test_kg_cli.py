import json

from tests.helpers.cli import fail, run
from tests.kg.conftest import kg_world  # noqa: F401  (the knowledge-graph fixture)
from tests.kg.kb import QUESTIONS, TRIPLES, write_kb, write_questions

PQ_LINES = [
    "what is the nationality of aldo_brenn 's spouse ?\tveltria(veltria/)\taldo_brenn#spouse#mira_kessel#nationality#veltria#<end>#veltria",
    "what is the capital of the nationality of aldo_brenn 's spouse ?\tport_sabine(port_sabine/)\t"
    "aldo_brenn#spouse#mira_kessel#nationality#veltria#capital#port_sabine#<end>#port_sabine",
]


def test_index_triples_reports_malformed_lines(tmp_path, capsys, kg_world):
    good = write_kb(tmp_path / "kb.tsv", TRIPLES)
    bad = tmp_path / "bad.tsv"
    bad.write_text("a\tr\tb\nbroken\n", encoding="utf-8")
    out = run(capsys, "index", "--triples", good, "--triples", bad, "--index", tmp_path / "idx", "--encoder", kg_world["enc"])
    assert "28 in all" in out and "1 malformed line(s) skipped" in out
    # the malformed line went to stderr with its file and line number (run() returned stdout only)
    piped = tmp_path / "kb.txt"
    piped.write_text("x|r|y\n", encoding="utf-8")
    out = run(capsys, "index", "--triples", piped, "--triples-sep", "|", "--index", tmp_path / "idx")
    assert "+1 / -0 triples, 29 in all" in out
    err = fail(capsys, "index", "--triples", tmp_path / "nope.tsv", "--index", tmp_path / "idx")
    assert "does not exist" in err


def test_ask_answers_with_the_entity_and_cites_the_path(kg_world, capsys):
    out = json.loads(run(capsys, "ask", "what is the nationality of aldo_brenn 's spouse ?", "--index", kg_world["index"],
                         "--mode", "path", "--json"))
    assert out["answer"] == "veltria" and out["mode"] == "path"
    top = out["citations"][0]
    assert set(top) >= {"id", "title", "text", "prior", "posterior"}
    assert top["text"] == "[nationality of spouse] aldo_brenn → spouse → mira_kessel → nationality → veltria"
    assert top["title"] == "aldo_brenn" and top["posterior"] == 1.0
    priors = [c["prior"] for c in out["citations"]]
    assert sum(priors) == __import__("pytest").approx(1.0, abs=1e-4) and priors == sorted(priors, reverse=True)


def test_eval_kgqa_json_on_rows_and_on_pathquestion(kg_world, capsys, tmp_path):
    rows = write_questions(tmp_path / "q.jsonl")
    got = json.loads(run(capsys, "eval", "kgqa", "--dataset", rows, "--index", kg_world["index"], "--json"))
    assert {"hits@1", "em", "f1", "path_recall@5", "n"} <= set(got)
    assert (got["hits@1"], got["path_recall@5"], got["n"]) == (1.0, 1.0, len(QUESTIONS))
    pq = tmp_path / "pq.txt"
    pq.write_text("\n".join(PQ_LINES) + "\n", encoding="utf-8")
    got = json.loads(run(capsys, "eval", "kgqa", "--dataset", pq, "--index", kg_world["index"], "--limit", "1", "--json", "-k", "1"))
    assert (got["hits@1"], got["path_recall@1"], got["n"]) == (1.0, 1.0, 1)


def test_convert_pathquestion_with_a_seeded_split(tmp_path, capsys):
    pq = tmp_path / "pq.txt"
    pq.write_text("\n".join(PQ_LINES * 10) + "\n", encoding="utf-8")
    out = run(capsys, "convert", "pathquestion", pq, "--out", tmp_path / "rows.jsonl", "--split", "8:1:1", "--seed", "0")
    assert "16 train rows" in out and "2 test rows" in out
    rows = [json.loads(l) for l in (tmp_path / "rows.train.jsonl").read_text().splitlines()]
    assert len(rows) == 16 and rows[0]["positive_texts"][0] in ("[nationality of spouse]", "[capital of nationality of spouse]")
    run(capsys, "convert", "pathquestion", pq, "--out", tmp_path / "all.jsonl")
    assert len((tmp_path / "all.jsonl").read_text().splitlines()) == 20
    assert "TRAIN:DEV:TEST" in fail(capsys, "convert", "pathquestion", pq, "--out", tmp_path / "x.jsonl", "--split", "8:2")


def test_path_search_settings_are_kept_with_the_graph(tmp_path, capsys):
    from ragtune.retrieval.index import Index

    kb = write_kb(tmp_path / "kb.tsv", TRIPLES)
    run(capsys, "index", "--triples", kb, "--index", tmp_path / "idx", "--path-search", "max_hops=2", "--path-search", "w_sparse=0.5")
    with Index.open(tmp_path / "idx") as idx:
        assert idx.manifest["graph"]["search"] == {"max_hops": 2, "w_sparse": 0.5}
        assert idx.retriever("paths").settings.max_hops == 2
    # again, the file unchanged: one setting changed, the other kept
    run(capsys, "index", "--triples", kb, "--index", tmp_path / "idx", "--path-search", "beam=8")
    with Index.open(tmp_path / "idx") as idx:
        assert idx.manifest["graph"]["search"] == {"max_hops": 2, "w_sparse": 0.5, "beam": 8}
    assert "max_hops, beam" in fail(capsys, "index", "--triples", kb, "--index", tmp_path / "idx", "--path-search", "hops=2")
    assert "beam takes an integer" in fail(capsys, "index", "--triples", kb, "--index", tmp_path / "idx", "--path-search", "beam=wide")
    assert "--triples" in fail(capsys, "index", tmp_path, "--index", tmp_path / "idx2", "--path-search", "beam=8")
