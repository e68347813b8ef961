from __future__ import annotations

from pathlib import Path

import pytest

from ragtune.config import CorpusConfig
from ragtune.corpus.files import iter_files
from ragtune.corpus.readers import (
    ReadStats,
    UnreadableFile,
    markdown_to_text,
    read_beir_corpus,
    read_file,
    read_paths,
)
from ragtune.errors import RagtuneError

FIXTURES = Path(__file__).parent.parent / "fixtures" / "corpus"


def test_iter_files_sorted_skips_hidden_and_unsupported(tmp_path: Path) -> None:
    names = [p.relative_to(FIXTURES).as_posix() for p in iter_files([FIXTURES])]
    assert names == ["broken.txt", "guide.md", "notes.txt", "page.html", "rows.jsonl", "zh/news.txt"]
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "x.txt").write_text("x")
    (tmp_path / "img.png").write_bytes(b"\x89PNG")
    (tmp_path / "a.txt").write_text("a")
    assert [p.name for p in iter_files([tmp_path])] == ["a.txt"]
    assert [p.name for p in iter_files([tmp_path], all_files=True)] == ["a.txt", "img.png"]
    # an explicit file is yielded once even when also inside a given folder
    assert [p.name for p in iter_files([tmp_path / "a.txt", tmp_path])] == ["a.txt"]
    with pytest.raises(RagtuneError, match="does not exist"):
        list(iter_files([tmp_path / "missing"]))


def test_text_file_ids_are_relative_to_root_and_source_absolute() -> None:
    [doc] = read_file(FIXTURES / "zh" / "news.txt", root=FIXTURES)
    assert doc.id == "zh/news.txt"
    assert Path(doc.source).is_absolute() and doc.source == str((FIXTURES / "zh" / "news.txt").resolve())
    assert doc.text.startswith("长城是中国古代")
    [doc] = read_file(FIXTURES / "notes.txt")  # no root: the path as given
    assert doc.id == (FIXTURES / "notes.txt").as_posix() and doc.title == "" and "Calvin cycle" in doc.text


def test_markdown_keeps_heading_text_and_strips_markup() -> None:
    [doc] = read_file(FIXTURES / "guide.md")
    assert doc.title == "The Eiffel Tower"
    assert "History" in doc.text and "#" not in doc.text
    assert "in Paris, France" in doc.text and "https://" not in doc.text
    assert "**" not in doc.text and "`" not in doc.text and "Built for the 1889" in doc.text
    title, text = markdown_to_text("intro with snake_case_name\n\n```python\nx = 1\n```\n## Next ##\n")
    assert title == "Next" and "snake_case_name" in text and "x = 1" in text and "```" not in text


def test_html_drops_script_and_style_and_takes_title() -> None:
    [doc] = read_file(FIXTURES / "page.html")
    assert doc.title == "Honey Bees"
    assert "single queen." in doc.text and "Worker bees" in doc.text
    assert "secret" not in doc.text and "alert" not in doc.text and "color" not in doc.text
    assert "queen.\nWorker" in doc.text  # block elements do not run together


def test_jsonl_rows_ids_and_skips() -> None:
    stats = ReadStats()
    docs = read_file(FIXTURES / "rows.jsonl", root=FIXTURES, stats=stats)
    assert [d.id for d in docs] == ["volcano", "rows.jsonl#2"]
    assert docs[0].title == "Volcanoes" and stats.skipped_rows == 2


def test_custom_fields_csv_tsv_and_beir_rows(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text('key,head,body\nk1,T1,"first, with comma"\nk2,T2,\n,T3,third\n')
    cfg = CorpusConfig(id_field="key", title_field="head", text_field="body")
    stats = ReadStats()
    docs = read_file(tmp_path / "a.csv", cfg, root=tmp_path, stats=stats)
    assert [(d.id, d.title, d.text) for d in docs] == [("k1", "T1", "first, with comma"), ("a.csv#4", "T3", "third")]
    assert stats.skipped_rows == 1
    (tmp_path / "b.tsv").write_text("id\ttext\nx\thello\n")
    assert read_file(tmp_path / "b.tsv")[0].text == "hello"
    with pytest.raises(UnreadableFile, match="no 'text' column"):
        (tmp_path / "c.csv").write_text("a,b\n1,2\n")
        read_file(tmp_path / "c.csv")
    (tmp_path / "corpus.jsonl").write_text('{"_id": "d1", "title": "T", "text": "beir text"}\n')
    assert read_file(tmp_path / "corpus.jsonl")[0].id == "d1"


def test_broken_and_undecodable_files_raise_unreadable(tmp_path: Path) -> None:
    with pytest.raises(UnreadableFile, match="binary") as e:
        read_file(FIXTURES / "broken.txt")
    assert isinstance(e.value, RagtuneError) and e.value.reason.startswith("binary")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(UnreadableFile, match="not UTF-8"):
        read_file(tmp_path / "latin1.txt")
    (tmp_path / "bom.txt").write_bytes("\ufeffhello".encode("utf-8"))
    assert read_file(tmp_path / "bom.txt")[0].text == "hello"
    (tmp_path / "u16.txt").write_bytes("hi there".encode("utf-16"))
    assert read_file(tmp_path / "u16.txt")[0].text == "hi there"
    (tmp_path / "x.docx").write_bytes(b"PK")
    with pytest.raises(UnreadableFile, match="unsupported"):
        read_file(tmp_path / "x.docx")
    (tmp_path / "bad.pdf").write_bytes(b"%PDF-1.4 garbage")
    with pytest.raises(UnreadableFile):
        read_file(tmp_path / "bad.pdf")
    (tmp_path / "empty.txt").write_text("  \n")
    assert read_file(tmp_path / "empty.txt") == []


def test_pdf_with_text(tmp_path: Path) -> None:
    pypdf = pytest.importorskip("pypdf")
    writer = pypdf.PdfWriter()
    writer.add_blank_page(width=200, height=200)
    writer.add_metadata({"/Title": "Blank"})
    with open(tmp_path / "blank.pdf", "wb") as f:
        writer.write(f)
    with pytest.raises(UnreadableFile, match="no extractable text"):
        read_file(tmp_path / "blank.pdf")


def test_read_paths_counts_skips() -> None:
    stats = ReadStats()
    skipped: list[str] = []
    docs = list(read_paths([FIXTURES], stats=stats, on_skip=lambda p, r: skipped.append(p.name)))
    assert {d.id for d in docs} == {"guide.md", "notes.txt", "page.html", "volcano", "rows.jsonl#2", "zh/news.txt"}
    assert stats.files == 6 and stats.documents == 6 and stats.skipped_rows == 2
    assert skipped == ["broken.txt"] and stats.skipped_files[0][1].startswith("binary")


def test_read_beir_corpus(tmp_path: Path) -> None:
    (tmp_path / "corpus.jsonl").write_text('{"_id": "1", "title": "T", "text": "x"}\n\n{"_id": 2, "text": "y"}\n')
    docs = list(read_beir_corpus(tmp_path))
    assert [(d.id, d.title, d.text) for d in docs] == [("1", "T", "x"), ("2", "", "y")]
    (tmp_path / "corpus.jsonl").write_text('{"title": "no id"}\n')
    with pytest.raises(RagtuneError, match=r"corpus.jsonl:1"):
        list(read_beir_corpus(tmp_path / "corpus.jsonl"))
    with pytest.raises(RagtuneError, match="not found"):
        list(read_beir_corpus(tmp_path / "nope"))


def test_squad_json_is_a_knowledge_base(tmp_path):
    import json

    from ragtune.corpus.readers import UnreadableFile, read_file

    squad = {"data": [{"title": "Tea_Leaves", "paragraphs": [{"context": "Green tea is unoxidised.", "qas": []},
                                                             {"context": "Black tea is oxidised.", "qas": []}]}]}
    (tmp_path / "kb.json").write_text(json.dumps(squad), encoding="utf-8")
    docs = read_file(tmp_path / "kb.json", root=tmp_path)
    assert [(d.id, d.title, d.text) for d in docs] == [("0-0", "Tea Leaves", "Green tea is unoxidised."),
                                                       ("0-1", "Tea Leaves", "Black tea is oxidised.")]
    (tmp_path / "other.json").write_text('{"rows": []}', encoding="utf-8")
    with pytest.raises(UnreadableFile, match="SQuAD"):
        read_file(tmp_path / "other.json")
