"""Reading files into ``Document``s: plain text, Markdown, HTML, JSONL/CSV rows (BEIR corpora too) and PDF.

A file that cannot be read (binary, not UTF-8, corrupt, a missing optional dependency) raises
``UnreadableFile``; callers count and skip it, so one bad file never stops indexing a folder.
"""
from __future__ import annotations

import csv
import gzip
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from ragtune.config import CorpusConfig
from ragtune.corpus.types import Document
from ragtune.corpus.files import (HTML_SUFFIXES, JSON_SUFFIXES, MARKDOWN_SUFFIXES, PDF_SUFFIXES, SUPPORTED_SUFFIXES,
                                  iter_files_with_roots, resolved)
from ragtune.errors import RagtuneError

_BINARY_SNIFF = 8192


class UnreadableFile(RagtuneError):
    """A file that cannot be turned into documents; the caller skips it and reports ``reason``."""

    def __init__(self, reason: str, path: str | Path | None = None) -> None:
        self.reason = reason
        self.path = Path(path) if path is not None else None
        super().__init__(f"{path}: {reason}" if path is not None else reason)


@dataclass
class ReadStats:
    """What a read skipped, for the one-line summary a face prints."""

    files: int = 0
    documents: int = 0
    skipped_rows: int = 0
    skipped_files: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)


# -- decoding --------------------------------------------------------------------------------------------------


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise UnreadableFile(f"unreadable: {e.strerror or e}", path) from e


def decode_text(data: bytes, path: Path | None = None) -> str:
    """UTF-8 (with or without BOM) or BOM-marked UTF-16; anything else is ``UnreadableFile``."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError as e:
            raise UnreadableFile(f"invalid UTF-16 text ({e.reason} at byte {e.start})", path) from e
    if b"\x00" in data[:_BINARY_SNIFF]:
        raise UnreadableFile("binary file (NUL bytes)", path)
    try:
        return data.decode("utf-8-sig")  # also plain UTF-8; strips a BOM that would otherwise stick to the text
    except UnicodeDecodeError as e:
        raise UnreadableFile(f"not UTF-8 text (invalid byte at offset {e.start}); convert it to UTF-8", path) from e


# -- formats ---------------------------------------------------------------------------------------------------

_FRONT_MATTER = re.compile(r"\A---\s*\n(.*?)\n---\s*\n", re.S)
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$")
_MD_DROP_LINE = re.compile(
    r"^\s*(?:(?:[-*_]\s*){3,}|=+|-+|\|?\s*:?-{3,}:?\s*(?:\|\s*:?-{3,}:?\s*)*\|?|\[[^\]]+\]:\s+\S.*|(?:```|~~~).*)$"
)
_MD_PREFIX = re.compile(r"^(\s*)(?:>\s?)+|^(\s*)(?:[-*+]|\d+[.)])\s+(?:\[[ xX]\]\s+)?")
_MD_INLINE = [
    (re.compile(r"!\[([^\]]*)\]\([^)]*\)"), r"\1"),  # images: keep alt text
    (re.compile(r"\[([^\]]+)\]\([^)]*\)"), r"\1"),  # links: keep link text
    (re.compile(r"\[([^\]]+)\]\[[^\]]*\]"), r"\1"),  # reference links
    (re.compile(r"<!--.*?-->|</?[A-Za-z][^>]*>"), ""),  # inline HTML
    (re.compile(r"`+([^`]+)`+"), r"\1"),
    (re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1"), r"\2"),
    (re.compile(r"(?<![\w*])\*(?=\S)(.+?)(?<=\S)\*(?![\w*])"), r"\1"),
    (re.compile(r"(?<!\w)_(?=\S)(.+?)(?<=\S)_(?!\w)"), r"\1"),  # not inside snake_case words
    (re.compile(r"~~(.+?)~~"), r"\1"),
]


def markdown_to_text(md: str) -> tuple[str, str]:
    """``(title, text)``: Markdown with markup lightly stripped; headings keep their text."""
    title = ""
    fm = _FRONT_MATTER.match(md)
    if fm:
        md = md[fm.end() :]
        m = re.search(r"^title:\s*[\"']?(.*?)[\"']?\s*$", fm.group(1), re.M)
        title = m.group(1) if m else ""
    lines = []
    for line in md.splitlines():
        h = _HEADING.match(line)
        if h:
            line = h.group(1)
            title = title or line
        elif _MD_DROP_LINE.match(line):
            continue
        else:
            line = _MD_PREFIX.sub(lambda m: m.group(1) or m.group(2) or "", line)
        for pattern, repl in _MD_INLINE:
            line = pattern.sub(repl, line)
        lines.append(line.rstrip())
    title = _MD_INLINE[-1][0].sub(r"\1", title)
    return title.strip(), _squeeze_blank_lines("\n".join(lines))


def _squeeze_blank_lines(text: str) -> str:
    return re.sub(r"\n{3,}", "\n\n", text).strip()


_HTML_BLOCKS = (
    "p", "div", "br", "li", "ul", "ol", "dl", "dt", "dd", "tr", "table", "section", "article", "header", "footer",
    "nav", "aside", "main", "pre", "blockquote", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "figure", "figcaption",
)  # fmt: skip


def html_to_text(html: str) -> tuple[str, str]:
    """``(title, text)`` of an HTML page: visible text only, one line per block element."""
    from bs4 import BeautifulSoup  # a core dependency, imported here to keep `import ragtune.corpus` light

    soup = BeautifulSoup(html, "html.parser")
    title = soup.title.get_text(" ", strip=True) if soup.title else ""
    for tag in soup(["script", "style", "noscript", "template", "head", "svg"]):
        tag.decompose()
    for tag in soup.find_all(_HTML_BLOCKS):
        # without a break after block elements their texts would run together ("Intro</p><p>Next" -> "IntroNext")
        tag.insert_after("\n")
    lines = (" ".join(line.split()) for line in soup.get_text().splitlines())
    return title, "\n".join(line for line in lines if line)


def _read_pdf(path: Path) -> tuple[str, str]:
    try:
        from pypdf import PdfReader
        from pypdf.errors import PyPdfError
    except ImportError as e:
        raise UnreadableFile("reading PDF files needs pypdf: pip install 'ragtune[pdf]'", path) from e
    try:
        reader = PdfReader(str(path))
        if reader.is_encrypted:
            raise UnreadableFile("encrypted PDF", path)
        pages = [page.extract_text() or "" for page in reader.pages]
        meta_title = (reader.metadata.title if reader.metadata else None) or ""
    except UnreadableFile:
        raise
    except (PyPdfError, OSError, ValueError, KeyError, TypeError) as e:  # pypdf raises all of these on bad input
        raise UnreadableFile(f"corrupt PDF ({e})", path) from e
    text = "\n\n".join(p.strip() for p in pages if p.strip())
    if not text:
        raise UnreadableFile("PDF has no extractable text (a scan? run OCR first)", path)
    return str(meta_title).strip(), text


# -- rows (JSONL, CSV; BEIR corpora are JSONL rows keyed by "_id") -------------------------------------------


def _row_document(
    row: Any, cfg: CorpusConfig, fallback_id: str, source: str, stats: ReadStats | None
) -> Document | None:
    if not isinstance(row, dict):
        return _skip_row(stats)
    text = row.get(cfg.text_field)
    if text is None or not str(text).strip():
        return _skip_row(stats)
    # BEIR corpora name the id "_id"; accepting it whatever id_field says makes them readable with defaults.
    doc_id = row.get(cfg.id_field)
    if doc_id is None or doc_id == "":
        doc_id = row.get("_id")
    title = row.get(cfg.title_field) or ""
    return Document(
        id=str(doc_id) if doc_id not in (None, "") else fallback_id, text=str(text), title=str(title), source=source
    )


def _skip_row(stats: ReadStats | None) -> None:
    if stats is not None:
        stats.skipped_rows += 1
    return None


def _read_jsonl(text: str, rel: str, source: str, cfg: CorpusConfig, stats: ReadStats | None) -> list[Document]:
    docs = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            _skip_row(stats)
            continue
        doc = _row_document(row, cfg, f"{rel}#{n}", source, stats)
        if doc is not None:
            docs.append(doc)
    return docs


def _read_csv(
    text: str, rel: str, source: str, cfg: CorpusConfig, stats: ReadStats | None, delimiter: str
) -> list[Document]:
    # passages can exceed csv's default 128 KB field limit; the limit is process-wide, so only ever raise it
    csv.field_size_limit(max(csv.field_size_limit(), min(sys.maxsize, 2**31 - 1)))
    reader = csv.DictReader(text.splitlines(keepends=True), delimiter=delimiter)
    if reader.fieldnames is None or cfg.text_field not in reader.fieldnames:
        raise UnreadableFile(f"no {cfg.text_field!r} column (columns: {reader.fieldnames})", source)
    docs = []
    try:
        for row in reader:
            doc = _row_document(row, cfg, f"{rel}#{reader.line_num}", source, stats)
            if doc is not None:
                docs.append(doc)
    except csv.Error as e:
        raise UnreadableFile(f"bad CSV at line {reader.line_num}: {e}", source) from e
    return docs


# -- the entry point -------------------------------------------------------------------------------------------


def _relative_id(path: Path, root: Path | None) -> str:
    if root is None:
        return path.as_posix()  # no root: the path as the caller gave it
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        try:
            return path.resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            return path.name


def read_file(
    path: str | Path, cfg: CorpusConfig | None = None, *, root: str | Path | None = None, stats: ReadStats | None = None
) -> list[Document]:
    """The documents of one file: one for text/Markdown/HTML/PDF, one per row for JSONL/CSV/TSV.

    A file's document id is its path relative to ``root`` in posix form (without ``root``: the path as given;
    pass the folder the file was found under, as ``iter_files_with_roots`` yields it); a row's id is
    its id field (``_id`` for BEIR), else ``<relpath>#<line>``. ``source`` is the resolved absolute path.
    Rows without text are skipped and counted in ``stats``. Raises ``UnreadableFile`` instead of crashing.
    """
    path = Path(path)
    try:
        return _read_file(path, cfg or CorpusConfig(), root, stats)
    except UnreadableFile:
        raise
    except OSError as e:  # vanished, a symlink loop, permissions, an I/O error
        raise UnreadableFile(f"unreadable: {e.strerror or e}", path) from e
    except (ValueError, TypeError, KeyError, AttributeError, IndexError, RecursionError) as e:
        # a reader meeting a shape it does not expect must cost one file, not the run
        raise UnreadableFile(f"unreadable ({type(e).__name__}: {e})", path) from e


def _read_file(path: Path, cfg: CorpusConfig, root: str | Path | None, stats: ReadStats | None) -> list[Document]:
    rel = _relative_id(path, Path(root) if root is not None else None)
    source = str(resolved(path))
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise UnreadableFile(f"unsupported file type {suffix or '(no suffix)'!r}", path)
    if suffix in PDF_SUFFIXES:
        title, text = _read_pdf(path)
        return [Document(rel, text, title=title, source=source)]
    if suffix in JSON_SUFFIXES:
        return _read_squad(path)
    text = decode_text(_read_bytes(path), path)
    if suffix == ".jsonl":
        return _read_jsonl(text, rel, source, cfg, stats)
    if suffix in (".csv", ".tsv"):
        return _read_csv(text, rel, source, cfg, stats, "\t" if suffix == ".tsv" else ",")
    title = ""
    if suffix in MARKDOWN_SUFFIXES:
        title, text = markdown_to_text(text)
    elif suffix in HTML_SUFFIXES:
        title, text = html_to_text(text)
    text = text.strip()
    return [Document(rel, text, title=title, source=source)] if text else []


def _read_squad(path: Path) -> list[Document]:
    """SQuAD-style JSON (SQuAD, CMRC 2018) as a knowledge base: its paragraphs keep the ids ``"<article>-<paragraph>"``
    that ``ragtune eval qa`` names as each question's gold passage."""
    from ragtune.corpus.squad import load_squad

    try:
        return load_squad(path).documents
    except RagtuneError as e:
        raise UnreadableFile(f"not SQuAD-style JSON ({e}); use .jsonl for one document per line", path) from None


def read_paths(
    paths: Iterable[str | Path],
    cfg: CorpusConfig | None = None,
    *,
    stats: ReadStats | None = None,
    on_skip: Callable[[Path, str], None] | None = None,
) -> Iterator[Document]:
    """Documents of every readable file under ``paths``; unreadable files are recorded in ``stats`` and skipped."""
    stats = stats if stats is not None else ReadStats()
    for f, root in iter_files_with_roots(paths):
        stats.files += 1
        try:
            docs = read_file(f, cfg, root=root, stats=stats)
        except UnreadableFile as e:
            stats.skipped_files.append((str(f), e.reason))
            if on_skip is not None:
                on_skip(f, e.reason)
            continue
        stats.documents += len(docs)
        yield from docs


def read_beir_corpus(dir_or_file: str | Path) -> Iterator[Document]:
    """Documents of a BEIR ``corpus.jsonl`` (or ``.jsonl.gz``), given the file or its dataset folder."""
    path = Path(dir_or_file)
    if path.is_dir():
        candidates = [path / "corpus.jsonl", path / "corpus.jsonl.gz"]
        path = next((c for c in candidates if c.is_file()), candidates[0])
    if not path.is_file():
        raise RagtuneError(f"BEIR corpus {path} not found (a BEIR folder holds corpus.jsonl, queries.jsonl, qrels/)")
    source = str(path.resolve())
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                doc_id = row["_id"]
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise RagtuneError(f"{path}:{n}: not a BEIR corpus row with an '_id' ({e})") from e
            yield Document(str(doc_id), str(row.get("text") or ""), title=str(row.get("title") or ""), source=source)
