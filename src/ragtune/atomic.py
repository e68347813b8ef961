"""The one way ragtune writes anything a crash must not leave half-written: files and whole directories.

Every writer (index manifests, vectors, checkpoints, trained models, converted models, training rows) goes
through these, so a reader sees either the old content or the new, never a torn one.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Callable, Iterator


@contextmanager
def atomic_file(path: str | Path, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """``with atomic_file(p) as f: f.write(...)``: written to a temporary sibling, fsynced, then renamed over ``p``.
    On an exception the temporary file is removed and ``p`` is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else encoding) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: str | Path, data: Any, indent: int | None = 2) -> None:
    with atomic_file(path) as f:
        json.dump(data, f, indent=indent, ensure_ascii=False)


def write_with(path: str | Path, write: Callable[[str], None]) -> None:
    """For libraries that only write to a file name (``faiss.write_index``, ``np.save``): ``write(tmp_name)``
    then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class atomic_dir:
    """``with atomic_dir(path) as tmp:`` write a whole directory into ``tmp``; on success it replaces ``path``
    (the old one is moved aside first, so a crash between the two renames leaves ``.NAME.old`` to recover from)."""

    def __init__(self, target: str | Path) -> None:
        self.target = Path(target)

    def __enter__(self) -> Path:
        self.target.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.target.name}.tmp-", dir=self.target.parent))
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return
        replace_dir(self.tmp, self.target)


def old_name(target: Path) -> Path:
    """Where ``replace_dir`` parks the previous directory between its two renames."""
    return target.with_name(f".{target.name}.old")


def replace_dir(src: Path, target: Path) -> None:
    """Put directory ``src`` in place of ``target`` by two renames (a directory cannot be renamed over another).
    A crash between them leaves ``.NAME.old`` and no ``NAME``: ``recover_dir`` puts the old one back."""
    old = old_name(target)
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        os.replace(target, old)
    os.replace(src, target)
    shutil.rmtree(old, ignore_errors=True)


def recover_dir(target: Path) -> None:
    """Finish a ``replace_dir`` a crash interrupted: the old directory is back if the new one never arrived."""
    old = old_name(target)
    if old.exists():
        if target.exists():
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(old, target)
