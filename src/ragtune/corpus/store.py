"""The on-disk passage store: SQLite, one row per passage, ids stable and never reused.

Retrievers and ``Hits`` speak the integer ids assigned here (``AUTOINCREMENT`` guarantees a deleted id is never
handed out again, which plain ``INTEGER PRIMARY KEY`` does not). The store also remembers, per source file, a
fingerprint, so the index layer can tell which files are new, changed or gone. Deciding *what* to update is
the index layer's job; this module only provides the primitives.
"""
from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from ragtune.corpus.types import EMPTY_ID, Passage
from ragtune.errors import RagtuneError

STORE_FORMAT = 1
# SQLite builds before 3.32 allow only 999 bound parameters; staying below keeps one code path everywhere.
_MAX_PARAMS = 900

_SCHEMA = """
CREATE TABLE IF NOT EXISTS passages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    doc_id TEXT NOT NULL,
    title TEXT NOT NULL DEFAULT '',
    text TEXT NOT NULL,
    source TEXT NOT NULL DEFAULT '',
    start_char INTEGER NOT NULL DEFAULT 0,
    end_char INTEGER NOT NULL DEFAULT 0,
    origin TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS passages_origin ON passages(origin, doc_id);
CREATE TABLE IF NOT EXISTS sources (
    source TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL DEFAULT '',
    doc_count INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""
_COLUMNS = "id, doc_id, text, title, source, start_char, end_char"


def _row_to_passage(row: tuple) -> Passage:
    return Passage(id=row[0], doc_id=row[1], text=row[2], title=row[3], source=row[4], start=row[5], end=row[6])


def _chunks(seq: Sequence[int], size: int = _MAX_PARAMS) -> Iterator[Sequence[int]]:
    for i in range(0, len(seq), size):
        yield seq[i : i + size]


def file_fingerprint(path: str | Path, previous: str | None = None) -> str:
    """``"<size>:<mtime_ns>:<sha1>"`` of a file.

    Only the content hash decides whether a file changed (see ``same_content``); size and mtime are kept so
    that, given the ``previous`` fingerprint, an untouched file (same size and mtime) is not read again.
    """
    st = Path(path).stat()
    head = f"{st.st_size}:{st.st_mtime_ns}"
    if previous is not None and previous.rsplit(":", 1)[0] == head:
        return previous
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return f"{head}:{h.hexdigest()}"


def content_hash(fingerprint: str) -> str:
    """The sha1 part of a ``file_fingerprint``."""
    return fingerprint.rsplit(":", 1)[-1]


def same_content(a: str | None, b: str | None) -> bool:
    """True when two fingerprints describe the same bytes (a touched but unchanged file is not "changed")."""
    return a is not None and b is not None and content_hash(a) == content_hash(b)


class PassageStore:
    """Passages in a SQLite file (WAL), with per-source fingerprints and a small key/value meta table.

    Every public write runs in a transaction; wrap several in ``transaction()`` to make them one atomic change.
    The connection is shared across threads under a lock, so a server may read from worker threads.
    After ``checkpoint()`` or ``close()`` the ``.sqlite`` file alone is a complete snapshot that can be copied.
    """

    def __init__(self, path: str | Path, *, readonly: bool = False) -> None:
        self.path = Path(path)
        self.readonly = readonly
        if readonly and not self.path.exists():
            raise RagtuneError(f"passage store {self.path} does not exist; build the index first")
        if not readonly:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._depth = 0
        self._conn = self._connect()
        try:
            if not readonly:
                self._init_schema()
            self._check_format()
        except BaseException:
            self._conn.close()  # do not leak the handle (and its file lock) of a store we refuse
            raise

    # -- connection ------------------------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        try:
            if self.readonly:
                uri = f"{self.path.resolve().as_uri()}?mode=ro"
                conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
            else:
                # isolation_level=None: we issue BEGIN/COMMIT ourselves so batches and nesting are explicit.
                conn = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.DatabaseError as e:
            raise RagtuneError(f"cannot open passage store {self.path}: {e}") from e
        return conn

    def _init_schema(self) -> None:
        try:
            with self.transaction():
                # executescript would COMMIT first, breaking the transaction; run the statements one by one.
                for statement in _statements():
                    self._conn.execute(statement)
                self._conn.execute(
                    "INSERT OR IGNORE INTO meta(key, value) VALUES ('store_format', ?)", (json.dumps(STORE_FORMAT),)
                )
        except sqlite3.DatabaseError as e:
            raise RagtuneError(f"{self.path} is not a ragtune passage store: {e}") from e

    def _check_format(self) -> None:
        try:
            fmt = self.get_meta("store_format")
        except sqlite3.DatabaseError as e:
            raise RagtuneError(f"{self.path} is not a ragtune passage store: {e}") from e
        if fmt != STORE_FORMAT:
            raise RagtuneError(
                f"passage store {self.path} has format {fmt!r}, this ragtune reads {STORE_FORMAT}; rebuild the index"
            )

    @contextmanager
    def transaction(self) -> Iterator["PassageStore"]:
        """Group changes into one atomic commit; nests (only the outermost level commits or rolls back)."""
        with self._lock:
            outer = self._depth == 0
            if outer:
                # IMMEDIATE takes the write lock now, so a concurrent writer fails fast instead of mid-batch.
                self._conn.execute("BEGIN IMMEDIATE")
            self._depth += 1
            try:
                yield self
            except BaseException:
                self._depth -= 1
                if outer:
                    self._conn.execute("ROLLBACK")
                raise
            self._depth -= 1
            if outer:
                self._conn.execute("COMMIT")

    def checkpoint(self) -> None:
        """Fold the WAL into the main file, so copying ``path`` alone gives a complete snapshot."""
        with self._lock:
            if self._depth:
                raise RagtuneError("cannot checkpoint the passage store inside an open transaction")
            if not self.readonly:
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def backup(self, dest: str | Path) -> None:
        """Write a consistent copy of the store to ``dest`` (SQLite's online backup; safe while open)."""
        with self._lock:
            target = sqlite3.connect(str(dest))
            try:
                self._conn.backup(target)
            finally:
                target.close()

    def close(self) -> None:
        with self._lock:
            if self._conn is None:
                return
            if self._depth:
                raise RagtuneError("cannot close the passage store inside an open transaction")
            self.checkpoint()
            self._conn.close()
            self._conn = None  # type: ignore[assignment]

    def __enter__(self) -> "PassageStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _query(self, sql: str, params: Iterable[Any] = ()) -> list[tuple]:
        with self._lock:
            return self._conn.execute(sql, tuple(params)).fetchall()

    # -- writes ----------------------------------------------------------------------------------------------

    def add(
        self, passages: Sequence[Passage], source: str | None = None, fingerprint: str | None = None
    ) -> list[Passage]:
        """Store passages and return copies carrying their new ids (incoming ids are ignored).

        ``source`` names the file the passages came from (default: each passage's own ``source``); it is the
        key for ``delete_source`` and ``fingerprint``. Passing it also records ``fingerprint`` for that source.
        """
        out: list[Passage] = []
        with self.transaction():
            cur = self._conn.cursor()
            # executemany cannot return rowids; AUTOINCREMENT ids are consecutive inside one write
            # transaction, so we read the id sequence before and after instead.
            first = self._next_id()
            origin_docs = self._new_doc_counts(passages, source)
            rows = [
                (p.doc_id, p.title, p.text, p.source, p.start, p.end, source if source is not None else p.source)
                for p in passages
            ]
            cur.executemany(
                "INSERT INTO passages(doc_id, title, text, source, start_char, end_char, origin) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            for i, p in enumerate(passages):
                out.append(Passage(first + i, p.doc_id, p.text, p.title, p.source, p.start, p.end))
            if out and self._next_id() != first + len(out):  # pragma: no cover - a broken invariant, not input
                raise RuntimeError("passage ids were not assigned consecutively")
            if source is not None:
                self._record_source(source, fingerprint, origin_docs.get(source, 0))
        return out

    def _new_doc_counts(self, passages: Sequence[Passage], source: str | None) -> dict[str, int]:
        """Per origin, how many of the batch's documents the store does not hold yet.

        Counting incrementally keeps ``add`` O(batch); recounting a source would make adding a large corpus
        in batches quadratic.
        """
        by_origin: dict[str, set[str]] = {}
        for p in passages:
            by_origin.setdefault(source if source is not None else p.source, set()).add(p.doc_id)
        counts: dict[str, int] = {}
        for origin, docs in by_origin.items():
            doc_list = sorted(docs)
            known = 0
            for i in range(0, len(doc_list), _MAX_PARAMS - 1):
                part = doc_list[i : i + _MAX_PARAMS - 1]
                marks = ",".join("?" * len(part))
                known += self._conn.execute(
                    f"SELECT COUNT(DISTINCT doc_id) FROM passages WHERE origin = ? AND doc_id IN ({marks})",
                    (origin, *part),
                ).fetchone()[0]
            counts[origin] = len(docs) - known
        return counts

    def _next_id(self) -> int:
        row = self._conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'passages'").fetchone()
        return (row[0] if row else 0) + 1

    def _record_source(self, source: str, fingerprint: str | None, new_docs: int = 0) -> None:
        self._conn.execute(
            "INSERT INTO sources(source, fingerprint, doc_count) VALUES (?, COALESCE(?, ''), ?) "
            "ON CONFLICT(source) DO UPDATE SET fingerprint = COALESCE(?, fingerprint), doc_count = doc_count + ?",
            (source, fingerprint, new_docs, fingerprint, new_docs),
        )

    def _recount(self, origins: Iterable[str]) -> None:
        for origin in origins:
            self._conn.execute(
                "UPDATE sources SET doc_count = "
                "(SELECT COUNT(DISTINCT doc_id) FROM passages WHERE origin = ?) WHERE source = ?",
                (origin, origin),
            )

    def set_fingerprint(self, source: str, fingerprint: str) -> None:
        """Record a source without passages (e.g. an empty file), so it is not re-read every update."""
        with self.transaction():
            self._record_source(source, fingerprint)

    def delete_source(self, source: str) -> list[int]:
        """Remove a source's passages and its fingerprint; returns the removed passage ids."""
        with self.transaction():
            ids = [r[0] for r in self._conn.execute("SELECT id FROM passages WHERE origin = ? ORDER BY id", (source,))]
            self._conn.execute("DELETE FROM passages WHERE origin = ?", (source,))
            self._conn.execute("DELETE FROM sources WHERE source = ?", (source,))
        return ids

    def delete(self, ids: Sequence[int]) -> None:
        """Remove passages by id; unknown ids are ignored. Their ids are never reused."""
        ids = [int(i) for i in ids]
        with self.transaction():
            origins: set[str] = set()
            for part in _chunks(ids):
                marks = ",".join("?" * len(part))
                origins.update(
                    r[0] for r in self._conn.execute(f"SELECT DISTINCT origin FROM passages WHERE id IN ({marks})", part)
                )
                self._conn.execute(f"DELETE FROM passages WHERE id IN ({marks})", part)
            self._recount(origins)  # deleting single passages is rare; an exact recount is affordable here

    # -- sources ---------------------------------------------------------------------------------------------

    def sources(self) -> dict[str, str]:
        """Every recorded source and its fingerprint."""
        return dict(self._query("SELECT source, fingerprint FROM sources ORDER BY source"))

    def fingerprint(self, source: str) -> str | None:
        rows = self._query("SELECT fingerprint FROM sources WHERE source = ?", (source,))
        return rows[0][0] if rows else None

    def doc_count(self, source: str) -> int:
        rows = self._query("SELECT doc_count FROM sources WHERE source = ?", (source,))
        return rows[0][0] if rows else 0

    def source_ids(self, source: str) -> list[int]:
        """The passage ids of a source, ascending."""
        return [r[0] for r in self._query("SELECT id FROM passages WHERE origin = ? ORDER BY id", (source,))]

    # -- reads -----------------------------------------------------------------------------------------------

    def _by_id(self, columns: str, ids: Sequence[int] | np.ndarray) -> tuple[list[int], dict[int, tuple]]:
        """The ids asked for (flattened, in order) and the rows of those that exist, keyed by id; ``columns``
        must start with ``id``. One query per chunk of unique ids, however often an id repeats."""
        wanted = [int(i) for i in np.asarray(ids, dtype=np.int64).ravel()]
        unique = sorted({i for i in wanted if i != EMPTY_ID})
        found: dict[int, tuple] = {}
        for part in _chunks(unique):
            marks = ",".join("?" * len(part))
            for row in self._query(f"SELECT {columns} FROM passages WHERE id IN ({marks})", part):
                found[row[0]] = row
        return wanted, found

    def get(self, ids: Sequence[int] | np.ndarray) -> list[Passage | None]:
        """Passages in the order asked for; None for unknown ids and ``EMPTY_ID``."""
        wanted, found = self._by_id(_COLUMNS, ids)
        return [_row_to_passage(found[i]) if i in found else None for i in wanted]

    def n_documents(self) -> int:
        """How many distinct documents the passages come from."""
        return int(self._query("SELECT COUNT(DISTINCT doc_id) FROM passages")[0][0])

    def doc_ids(self, ids: Sequence[int] | np.ndarray) -> list[str | None]:
        """The document id of each passage id, in order; None for unknown ids and ``EMPTY_ID``."""
        wanted, found = self._by_id("id, doc_id", ids)
        return [found[i][1] if i in found else None for i in wanted]

    def __getitem__(self, id: int) -> Passage:
        p = self.get([id])[0]
        if p is None:
            raise KeyError(id)
        return p

    def __contains__(self, id: object) -> bool:
        if not isinstance(id, (int, np.integer)):
            return False
        return bool(self._query("SELECT 1 FROM passages WHERE id = ?", (int(id),)))

    def __len__(self) -> int:
        return self._query("SELECT COUNT(*) FROM passages")[0][0]

    def ids(self) -> np.ndarray:
        """All live passage ids, ascending, int64."""
        return np.fromiter((r[0] for r in self._query("SELECT id FROM passages ORDER BY id")), dtype=np.int64)

    def iter_passages(self, batch_size: int = 1000) -> Iterator[list[Passage]]:
        """All passages in id order, in batches (keyset paging: safe to interleave with other reads)."""
        last = 0
        while True:
            rows = self._query(
                f"SELECT {_COLUMNS} FROM passages WHERE id > ? ORDER BY id LIMIT ?", (last, batch_size)
            )
            if not rows:
                return
            yield [_row_to_passage(r) for r in rows]
            last = rows[-1][0]

    # -- meta ------------------------------------------------------------------------------------------------

    def get_meta(self, key: str, default: Any = None) -> Any:
        """A JSON value stored with ``set_meta``, or ``default``."""
        rows = self._query("SELECT value FROM meta WHERE key = ?", (key,))
        return json.loads(rows[0][0]) if rows else default

    def set_meta(self, key: str, value: Any) -> None:
        with self.transaction():
            self._conn.execute(
                "INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, json.dumps(value)),
            )


def _statements() -> list[str]:
    return [s.strip() for s in _SCHEMA.split(";") if s.strip()]
