"""The result store: one SQLite file (WAL) per campaign collection, one transaction per finished item.

A process killed at any moment (even ``kill -9``) leaves every committed row intact; resuming redoes only
the items that were in flight. Only the process that owns the store writes to it (Dask workers compute,
the client writes).

>>> import tempfile, os
>>> store = ResultStore(os.path.join(tempfile.mkdtemp(), "runs.db"))
>>> job_id = store.create_job("demo", {"seed": 0}, git_commit="abc")
>>> store.add_proposals(job_id, [("CCO", "library", {})])
1
>>> [row["smiles"] for row in store.pending(job_id)]
['CCO']
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from workbench.errors import StoreError

__all__ = ["ResultStore", "SCHEMA_VERSION"]

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    job_id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    config TEXT NOT NULL,
    git_commit TEXT,
    seed INTEGER,
    workbench_version TEXT,
    status TEXT NOT NULL DEFAULT 'created',
    message TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS candidates (
    job_id INTEGER NOT NULL REFERENCES jobs(job_id),
    idx INTEGER NOT NULL,
    smiles TEXT NOT NULL,
    source TEXT NOT NULL,
    proposal TEXT NOT NULL DEFAULT '{}',
    status TEXT NOT NULL DEFAULT 'proposed',
    canonical TEXT,
    valid INTEGER,
    spec_ok INTEGER,
    score REAL,
    result TEXT,
    error TEXT,
    finished_at TEXT,
    PRIMARY KEY (job_id, idx)
);
CREATE INDEX IF NOT EXISTS candidates_status ON candidates(job_id, status);
"""


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


class ResultStore:
    """A campaign result store in one SQLite file."""

    def __init__(self, path: str | os.PathLike, *, readonly: bool = False):
        self.path = str(path)
        self.readonly = readonly
        if readonly and not os.path.exists(self.path):
            raise StoreError(self.path, "no such store file")
        folder = os.path.dirname(os.path.abspath(self.path))
        if not readonly and not os.path.isdir(folder):
            raise StoreError(self.path, f"folder {folder} does not exist; create it or choose another --store path")
        try:
            uri = f"file:{os.path.abspath(self.path)}" + ("?mode=ro" if readonly else "")
            self._conn = sqlite3.connect(uri, uri=True, timeout=30, isolation_level=None, check_same_thread=False)
            self._conn.row_factory = sqlite3.Row
            if not readonly:
                self._conn.execute("PRAGMA journal_mode=WAL")
                self._conn.execute("PRAGMA synchronous=NORMAL")
                self._conn.executescript(_SCHEMA)
                self._conn.execute(
                    "INSERT OR IGNORE INTO meta(key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
                )
            version = self._schema_version()
        except sqlite3.DatabaseError as exc:
            raise StoreError(self.path, _explain(exc)) from None
        if version > SCHEMA_VERSION:
            raise StoreError(
                self.path,
                f"written by a newer workbench (store schema {version}, this version reads up to "
                f"{SCHEMA_VERSION}); upgrade the workbench to open it",
            )

    def _schema_version(self) -> int:
        row = self._conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        return int(row["value"]) if row else SCHEMA_VERSION

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        if self.readonly:
            raise StoreError(self.path, "opened read-only")
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            raise StoreError(self.path, _explain(exc)) from None

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ jobs
    def create_job(
        self, name: str, config: dict[str, Any], *, git_commit: str = "", seed: int = 0, version: str = ""
    ) -> int:
        now = _now()
        with self._transaction() as conn:
            cur = conn.execute(
                "INSERT INTO jobs(name, config, git_commit, seed, workbench_version, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (name, json.dumps(config, sort_keys=True), git_commit, seed, version, now, now),
            )
            return int(cur.lastrowid)

    def job(self, name: str) -> dict[str, Any] | None:
        row = self._conn.execute("SELECT * FROM jobs WHERE name=?", (name,)).fetchone()
        if row is None:
            return None
        out = dict(row)
        out["config"] = json.loads(out["config"])
        return out

    def jobs(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self._conn.execute("SELECT job_id, name, status, created_at FROM jobs")]

    def set_job_status(self, job_id: int, status: str, message: str = "") -> None:
        with self._transaction() as conn:
            conn.execute(
                "UPDATE jobs SET status=?, message=?, updated_at=? WHERE job_id=?", (status, message, _now(), job_id)
            )

    # ------------------------------------------------------------------ candidates
    def add_proposals(self, job_id: int, proposals: Iterable[tuple[str, str, dict[str, Any]]]) -> int:
        """Record all proposals of a job in one transaction (indices 0..n-1); returns how many."""
        rows = [(job_id, i, smi, src, json.dumps(meta, default=str)) for i, (smi, src, meta) in enumerate(proposals)]
        with self._transaction() as conn:
            conn.executemany(
                "INSERT OR IGNORE INTO candidates(job_id, idx, smiles, source, proposal) VALUES (?, ?, ?, ?, ?)", rows
            )
        return len(rows)

    def n_proposals(self, job_id: int) -> int:
        return self._conn.execute("SELECT COUNT(*) FROM candidates WHERE job_id=?", (job_id,)).fetchone()[0]

    def pending(self, job_id: int) -> list[dict[str, Any]]:
        rows = self._conn.execute(
            "SELECT idx, smiles, source, proposal FROM candidates WHERE job_id=? AND status='proposed' ORDER BY idx",
            (job_id,),
        )
        return [{**dict(r), "proposal": json.loads(r["proposal"])} for r in rows]

    def finish(self, job_id: int, idx: int, result: dict[str, Any]) -> None:
        """Record one finished candidate (one transaction). A row is finished at most once."""
        with self._transaction() as conn:
            cur = conn.execute(
                "UPDATE candidates SET status=?, canonical=?, valid=?, spec_ok=?, score=?, result=?, error=?, "
                "finished_at=? WHERE job_id=? AND idx=? AND status='proposed'",
                (
                    result.get("status", "done"),
                    result.get("canonical"),
                    _int(result.get("valid")),
                    _int(result.get("spec_ok")),
                    result.get("score"),
                    json.dumps(result, default=str),
                    result.get("error"),
                    _now(),
                    job_id,
                    idx,
                ),
            )
            if cur.rowcount != 1:
                raise StoreError(self.path, f"candidate {idx} of job {job_id} is not pending (already finished?)")

    def rows(self, job_id: int, *, ranked: bool = False) -> list[dict[str, Any]]:
        order = "score IS NULL, score DESC, idx" if ranked else "idx"
        cur = self._conn.execute(f"SELECT * FROM candidates WHERE job_id=? ORDER BY {order}", (job_id,))
        out = []
        for r in cur:
            row = dict(r)
            row["proposal"] = json.loads(row["proposal"])
            row["result"] = json.loads(row["result"]) if row["result"] else {}
            out.append(row)
        return out

    def counts(self, job_id: int) -> dict[str, int]:
        cur = self._conn.execute(
            "SELECT status, COUNT(*) AS n FROM candidates WHERE job_id=? GROUP BY status", (job_id,)
        )
        return {r["status"]: r["n"] for r in cur}


def _int(value: Any) -> int | None:
    return None if value is None else int(bool(value))


def _explain(exc: sqlite3.DatabaseError) -> str:
    text = str(exc)
    if "readonly" in text or "read-only" in text:
        return f"{text}: the file or its folder is read-only; choose a writable --store path"
    if "disk" in text and "full" in text:
        return f"{text}: free disk space, then resume with --resume (finished rows are kept)"
    if "unable to open" in text:
        return f"{text}: check the path exists and is writable"
    if "not a database" in text:
        return f"{text}: this file is not a workbench store"
    return text
