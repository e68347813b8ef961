"""Triple readers: TSV / ``.txt`` (``subject<TAB>relation<TAB>object``, or any ``sep``), N-Triples and Turtle
(rdflib; ``rdfs:label`` gives display names), JSONL ``{"subject", "relation", "object"}``, and a JSON file holding
a list of triples (``[s, r, o]`` or objects as in JSONL) or an object of such lists (KdConv's knowledge base:
``{entity: [[s, r, o], ...]}``).

A malformed line never stops a read: it is recorded as a ``Problem`` (file, line, reason) and skipped.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ragtune.errors import RagtuneError

RDF_SUFFIXES = {".nt": "nt", ".ttl": "turtle", ".n3": "n3"}
RDFS_LABEL = "http://www.w3.org/2000/01/rdf-schema#label"


@dataclass(frozen=True)
class Problem:
    path: str
    line: int  # 1-based; 0 when the whole file is at fault
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.reason}" if self.line else f"{self.path}: {self.reason}"


@dataclass
class TripleFile:
    """What one file holds: triples as written, display labels (RDF ``rdfs:label``) and the bad lines."""

    triples: list[tuple[str, str, str]] = field(default_factory=list)
    labels: dict[str, list[str]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)


def read_triples(path: str | Path, sep: str | None = None) -> TripleFile:
    """The triples of one file, by suffix: ``.nt``/``.ttl``/``.n3`` (rdflib), ``.jsonl``, else delimited lines
    (``sep``, default a tab)."""
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        if suffix in RDF_SUFFIXES:
            return _read_rdf(path, RDF_SUFFIXES[suffix])
        if suffix == ".jsonl":
            return _read_jsonl(path)
        if suffix == ".json":
            return _read_json(path)
        return _read_delimited(path, sep or "\t")
    except UnicodeDecodeError as e:
        raise RagtuneError(f"{path} is not UTF-8 text ({e.reason} at byte {e.start}); give a UTF-8 triples file") from None
    except OSError as e:
        raise RagtuneError(f"cannot read triples file {path}: {e.strerror or e}") from None


def _lines(path: Path):
    with open(path, encoding="utf-8-sig") as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip("\r\n")
            if line.strip() and not line.lstrip().startswith("#"):
                yield n, line


def _read_delimited(path: Path, sep: str) -> TripleFile:
    out = TripleFile()
    for n, line in _lines(path):
        parts = [p.strip() for p in line.split(sep)]
        # PathQuestion's KB files sometimes hold the tab twice ("s<TAB><TAB>r<TAB>o" in its readme)
        parts = [p for p in parts if p] if sep == "\t" else parts
        if len(parts) != 3 or not all(parts):
            out.problems.append(Problem(str(path), n, f"expected subject{_show(sep)}relation{_show(sep)}object, got {len(parts)} field(s)"))
            continue
        out.triples.append((parts[0], parts[1], parts[2]))
    return out


def _show(sep: str) -> str:
    return "<TAB>" if sep == "\t" else sep


def _read_jsonl(path: Path) -> TripleFile:
    out = TripleFile()
    for n, line in _lines(path):
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            out.problems.append(Problem(str(path), n, f"not JSON ({e.msg})"))
            continue
        _add_item(row, out, str(path), n, "")
    return out


def _read_json(path: Path) -> TripleFile:
    """A whole-file JSON: a list of items, or an object whose values are lists of items. A bad item is reported by
    its position (``line`` 0, the position in the reason), since a JSON document need not have one item a line."""
    out = TripleFile()
    try:
        with open(path, encoding="utf-8-sig") as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        out.problems.append(Problem(str(path), 0, f"not JSON ({e.msg} at line {e.lineno}); file skipped"))
        return out
    groups = data.items() if isinstance(data, dict) else [("", data)]
    for key, items in groups:
        where = f"{key!r} " if key else ""
        if not isinstance(items, list):
            out.problems.append(Problem(str(path), 0, f"{where}is not a list of triples"))
            continue
        for i, item in enumerate(items, 1):
            _add_item(item, out, str(path), 0, f"{where}item {i}: ")
    return out


def _add_item(item, out: TripleFile, path: str, line: int, where: str) -> None:
    """One triple: ``{"subject", "relation", "object"[, "subject_aliases"]}`` or ``[s, r, o]``."""
    if isinstance(item, dict):
        try:
            s, r, o = (item[key] for key in ("subject", "relation", "object"))
        except KeyError:
            out.problems.append(Problem(path, line, f'{where}needs "subject", "relation" and "object"'))
            return
    elif isinstance(item, list) and len(item) == 3:
        s, r, o = item
    else:
        out.problems.append(Problem(path, line, f'{where}expected {{"subject", "relation", "object"}} or [subject, relation, object]'))
        return
    if not all(isinstance(x, (str, int, float)) and not isinstance(x, bool) and str(x).strip() for x in (s, r, o)):
        out.problems.append(Problem(path, line, f"{where}subject, relation and object must be non-empty strings"))
        return
    out.triples.append((str(s).strip(), str(r).strip(), str(o).strip()))
    for alias in item.get("subject_aliases", []) if isinstance(item, dict) else []:
        out.labels.setdefault(str(s).strip(), []).append(str(alias))


def _read_rdf(path: Path, fmt: str) -> TripleFile:
    try:
        import rdflib
    except ImportError:  # pragma: no cover - a dependency of ragtune
        raise RagtuneError("reading N-Triples/Turtle needs rdflib: pip install rdflib") from None
    out = TripleFile()
    if fmt == "nt":
        # line by line, so one bad line is reported with its number and the rest still load
        for n, line in _lines(path):
            g = rdflib.Graph()
            try:
                g.parse(data=line, format="nt")
            except Exception as e:  # rdflib raises its own parser errors
                out.problems.append(Problem(str(path), n, f"not an N-Triples statement ({str(e).splitlines()[0][:80]})"))
                continue
            _add_rdf(g, out)
        return out
    g = rdflib.Graph()
    try:
        g.parse(str(path), format=fmt)
    except Exception as e:
        out.problems.append(Problem(str(path), 0, f"not valid {fmt} ({str(e).splitlines()[0][:120]}); file skipped"))
        return out
    _add_rdf(g, out)
    return out


def _add_rdf(g, out: TripleFile) -> None:
    for s, p, o in g:
        if str(p) == RDFS_LABEL:
            out.labels.setdefault(str(s), []).append(str(o))
        else:
            out.triples.append((str(s), rdf_local_name(str(p)), str(o)))


def rdf_local_name(uri: str) -> str:
    """The readable tail of a URI: after the last ``#`` or ``/``."""
    for ch in ("#", "/"):
        if ch in uri.rstrip(ch):
            tail = uri.rstrip(ch).rsplit(ch, 1)[1]
            if tail:
                return tail
    return uri
