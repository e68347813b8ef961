"""Finding the files to read: which suffixes a reader handles, walking folders (hidden ones skipped), and naming
what cannot be listed or resolved instead of failing on it."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterable, Iterator

from ragtune.errors import RagtuneError

TEXT_SUFFIXES = {".txt", ".text", ".rst"}
MARKDOWN_SUFFIXES = {".md", ".markdown"}
HTML_SUFFIXES = {".html", ".htm"}
ROW_SUFFIXES = {".jsonl", ".csv", ".tsv"}
PDF_SUFFIXES = {".pdf"}
JSON_SUFFIXES = {".json"}  # SQuAD-style {"data": [{title, paragraphs: [{context}]}]}: one document per paragraph
SUPPORTED_SUFFIXES = TEXT_SUFFIXES | MARKDOWN_SUFFIXES | HTML_SUFFIXES | ROW_SUFFIXES | PDF_SUFFIXES | JSON_SUFFIXES


def _is_hidden(rel: Path) -> bool:
    return any(part.startswith(".") for part in rel.parts)


SkipFn = Callable[[Path, str], None]  # (path, reason): a file or folder that was passed over


def resolved(path: Path) -> Path:
    """``path.resolve()``, or the absolute path when it cannot be resolved (a symlink loop): such a file is still
    yielded, so that reading it fails, is counted and is skipped like any unreadable file."""
    try:
        return path.resolve()
    except (OSError, RuntimeError):
        return path.absolute()


def iter_files_with_roots(paths: Iterable[str | Path], *, all_files: bool = False,
                          on_skip: SkipFn | None = None) -> Iterator[tuple[Path, Path]]:
    """``(file, root)`` pairs: explicit files as given (root = their folder), folders walked recursively.

    Inside folders, hidden files and folders are skipped and, unless ``all_files``, so are files whose suffix
    no reader handles (images, archives...), so pointing at a project folder does not report each as unreadable.
    Folders that cannot be listed go to ``on_skip``. Files come sorted by relative path within each argument;
    a file reached twice is yielded once.
    """
    seen: set[Path] = set()
    for raw in paths:
        p = Path(raw).expanduser()
        if p.is_file():
            found: list[tuple[Path, Path]] = [(p, p.parent)]
        elif p.is_dir():
            found = [(f, p) for f in _walk(p, all_files, on_skip)]
        elif p.is_symlink():  # dangling, or a loop: named and skipped where it is read
            found = [(p, p.parent)]
        else:
            raise RagtuneError(f"{p} does not exist (expected a file or a folder of documents)")
        for f, root in found:
            key = resolved(f)
            if key not in seen:
                seen.add(key)
                yield f, root


def _walk(root: Path, all_files: bool, on_skip: SkipFn | None = None) -> list[Path]:
    def unlistable(e: OSError) -> None:
        if on_skip is not None:
            on_skip(Path(e.filename or root), f"unreadable folder: {e.strerror or e}")

    out: list[Path] = []
    for folder, dirs, files in os.walk(root, onerror=unlistable):
        dirs[:] = [d for d in dirs if not d.startswith(".")]  # prune hidden folders in place
        for name in files:
            f = Path(folder) / name
            if name.startswith(".") or _is_hidden(f.relative_to(root)):
                continue
            if all_files or f.suffix.lower() in SUPPORTED_SUFFIXES:
                out.append(f)
    return sorted(out, key=lambda f: f.relative_to(root).as_posix())


def iter_files(paths: Iterable[str | Path], *, all_files: bool = False, on_skip: SkipFn | None = None) -> Iterator[Path]:
    """Files to read from files and folders (see ``iter_files_with_roots``)."""
    for f, _ in iter_files_with_roots(paths, all_files=all_files, on_skip=on_skip):
        yield f
