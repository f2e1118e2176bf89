"""Running a design campaign: propose once, then process every candidate and record it as it finishes.

>>> import tempfile, os
>>> from workbench.jobs import JobConfig, run
>>> job = JobConfig.from_text("name: tiny\\nproposers: [{type: library, source: moses-test, n: 5}]\\n"
...                           "embed: {enabled: false}")
>>> result = run(job, os.path.join(tempfile.mkdtemp(), "runs.db"), progress=False)
>>> result.counts
{'done': 5}
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, field
from typing import Any

from workbench.chem.molecule import Molecule
from workbench.chem.moleculeset import MoleculeSet
from workbench.errors import InvalidMoleculeError, JobFileError, RunHealthError
from workbench.jobs.executors import DaskExecutor, LocalExecutor, make_executor
from workbench.jobs.jobfile import JobConfig, load_job
from workbench.jobs.proposers import propose
from workbench.jobs.stages import process_candidate
from workbench.jobs.store import ResultStore
from workbench.provenance import git_commit

__all__ = ["run", "CampaignResult", "HealthMonitor"]


@dataclass
class HealthMonitor:
    """Tracks validity and uniqueness over finished candidates and judges them against the thresholds."""

    min_validity: float
    min_uniqueness: float
    min_items: int
    finished: int = 0
    valid: int = 0
    duplicates: int = 0
    warned: set[str] = field(default_factory=set)

    def add(self, result: dict[str, Any]) -> None:
        self.finished += 1
        if result.get("status") == "duplicate":
            self.duplicates += 1
        elif result.get("valid"):
            self.valid += 1

    @property
    def validity(self) -> float:
        judged = self.finished - self.duplicates
        return self.valid / judged if judged else 1.0

    @property
    def uniqueness(self) -> float:
        return 1.0 - self.duplicates / self.finished if self.finished else 1.0

    def problems(self) -> list[str]:
        if self.finished < self.min_items:
            return []
        out = []
        if self.validity < self.min_validity:
            out.append(f"validity {self.validity:.0%} fell below {self.min_validity:.0%}")
        if self.uniqueness < self.min_uniqueness:
            out.append(f"uniqueness {self.uniqueness:.0%} fell below {self.min_uniqueness:.0%}")
        return out


@dataclass
class CampaignResult:
    """What a campaign produced: the store rows, ranked, with notebook display and exports."""

    store_path: str
    job_name: str
    job_id: int
    counts: dict[str, int]
    health: dict[str, float]
    executor: str

    def rows(self, ranked: bool = True) -> list[dict[str, Any]]:
        with ResultStore(self.store_path, readonly=True) as store:
            return store.rows(self.job_id, ranked=ranked)

    def molecules(self) -> MoleculeSet:
        """Finished candidates as a ranked MoleculeSet; each carries score, spec and validation results."""
        return rows_to_moleculeset(self.rows(ranked=True))

    def to_pandas(self):
        import pandas as pd

        return pd.DataFrame(rows_to_records(self.rows(ranked=True)))

    def __repr__(self) -> str:
        return f"CampaignResult({self.job_name!r}, {self.counts}, store={self.store_path!r})"

    def _repr_html_(self) -> str:
        from html import escape

        head = (
            f"<div><b>campaign {escape(self.job_name)}</b> — {escape(json.dumps(self.counts))}; validity "
            f"{self.health['validity']:.0%}, uniqueness {self.health['uniqueness']:.0%} "
            f"(store <code>{escape(self.store_path)}</code>)</div>"
        )
        return head + self.molecules()[:24]._repr_html_()


def rows_to_records(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    records = []
    for rank, row in enumerate(rows, 1):
        result = row["result"]
        rec = {
            "rank": rank if row["score"] is not None else None,
            "idx": row["idx"],
            "smiles": row["canonical"] or row["smiles"],
            "source": row["source"],
            "status": row["status"],
            "valid": bool(row["valid"]) if row["valid"] is not None else None,
            "spec_ok": bool(row["spec_ok"]) if row["spec_ok"] is not None else None,
            "score": row["score"],
            "error": row["error"],
        }
        rec.update({k: v for k, v in result.get("properties", {}).items()})
        if "mmff_energy" in result:
            rec["mmff_energy"] = result["mmff_energy"]
        for key, value in (result.get("simulation") or {}).items():
            if isinstance(value, int | float | str | bool):
                rec[key] = value
        records.append(rec)
    return records


def rows_to_moleculeset(rows: list[dict[str, Any]]) -> MoleculeSet:
    out = MoleculeSet()
    for rec, row in zip(rows_to_records(rows), rows, strict=True):
        if rec["status"] not in ("done", "filtered"):
            continue
        try:
            mol = Molecule(rec["smiles"])
        except InvalidMoleculeError:
            continue
        meta = {k: v for k, v in rec.items() if k in ("rank", "score", "spec_ok", "valid", "source", "status")}
        if row["result"].get("spec_failed"):
            meta["spec_failed"] = "; ".join(row["result"]["spec_failed"])
        trace = row["proposal"].get("trace")
        if trace:
            meta["trace"] = trace
        out.add(mol.with_meta(**meta))
    return out


def run(
    job: JobConfig | str | os.PathLike,
    store: str | os.PathLike = "workbench-results.db",
    *,
    resume: bool = False,
    executor: str | LocalExecutor | DaskExecutor = "local",
    workers: int | None = None,
    progress: bool = True,
) -> CampaignResult:
    """Run (or with ``resume=True`` continue) a campaign and record every candidate in the store.

    The proposals are drawn once and recorded; then each candidate is processed and written in its own
    transaction as soon as it finishes. A run killed at any point resumes with no lost and no duplicated
    rows. Raises :class:`RunHealthError` when a health check with ``action: stop`` fails (rows so far kept).
    ``executor`` is ``"local"``, ``"dask://host:port"`` or an executor object you keep open across runs
    (e.g. ``DaskExecutor(workers=4)``); ``workers`` > 1 with ``"local"`` starts a LocalCluster.
    """
    config = job if isinstance(job, JobConfig) else load_job(job)
    settings_json = json.dumps(config.model_dump(mode="json"), sort_keys=True)
    with ResultStore(store) as db:
        existing = db.job(config.name)
        if existing is not None and not resume:
            raise JobFileError(
                f"job {config.name!r} already exists in {db.path}; pass --resume to continue it, or give the job "
                "another name or another store"
            )
        if existing is not None and existing["config"] != json.loads(json.dumps(config.to_dict(), sort_keys=True)):
            raise JobFileError(
                f"job {config.name!r} in {db.path} was started with different settings; resume it with the same job "
                "file, or give the changed job another name"
            )
        job_id = (
            existing["job_id"]
            if existing is not None
            else db.create_job(
                config.name, config.to_dict(), git_commit=git_commit(), seed=config.seed, version=_version()
            )
        )
        if config.simulate.enabled:
            from workbench.jobs.simulate import check_potential

            check_potential(config.simulate.potential)
        if db.n_proposals(job_id) == 0:
            db.set_job_status(job_id, "proposing")
            proposals = []
            for k, proposer in enumerate(config.proposers):
                seed = proposer.seed if proposer.seed is not None else config.seed + k
                proposals += propose(proposer, config.spec, seed)
            db.add_proposals(job_id, proposals)
        monitor = HealthMonitor(config.health.min_validity, config.health.min_uniqueness, config.health.min_items)
        seen: set[str] = set()
        for row in db.rows(job_id):
            if row["status"] != "proposed":
                monitor.add({"status": row["status"], "valid": row["valid"]})
                if row["canonical"]:
                    seen.add(row["canonical"])
        pending = db.pending(job_id)
        db.set_job_status(job_id, "running")
        todo = []
        for item in pending:  # duplicates are decided by proposal order, before any work is dispatched
            key = _canonical(item["smiles"])
            if key is not None and key in seen:
                result = {"idx": item["idx"], "status": "duplicate", "canonical": key, "score": None}
                db.finish(job_id, item["idx"], result)
                monitor.add(result)
            else:
                if key is not None:
                    seen.add(key)
                todo.append(item)
        owned = isinstance(executor, str)
        runner = make_executor(executor, workers) if owned else executor
        bar = _progress(len(todo), config.name, progress)
        try:
            for result in runner.map_unordered(process_candidate, todo, settings_json):
                db.finish(job_id, result["idx"], result)
                monitor.add(result)
                bar.update(1)
                problems = monitor.problems()
                if problems:
                    message = f"campaign {config.name!r}: " + "; ".join(problems)
                    if config.health.action == "stop":
                        db.set_job_status(job_id, "stopped", message)
                        raise RunHealthError(message + " — stopped; finished rows are kept in " + db.path)
                    for p in problems:
                        if p.split()[0] not in monitor.warned:
                            monitor.warned.add(p.split()[0])
                            warnings.warn(message, stacklevel=2)
        finally:
            bar.close()
            if owned:
                runner.close()
        db.set_job_status(job_id, "finished")
        counts = db.counts(job_id)
    return CampaignResult(
        str(store),
        config.name,
        job_id,
        counts,
        {"validity": monitor.validity, "uniqueness": monitor.uniqueness},
        runner.name,
    )


def _canonical(smiles: str) -> str | None:
    from rdkit import Chem

    mol = Chem.MolFromSmiles(smiles) if smiles and smiles.strip() else None
    return Chem.MolToSmiles(mol) if mol is not None else None


def _progress(total: int, name: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(
        total=total, desc=name, unit="mol", disable=None if enabled else True, leave=False
    )  # None: off if not a TTY


def _version() -> str:
    from workbench import __version__

    return __version__
