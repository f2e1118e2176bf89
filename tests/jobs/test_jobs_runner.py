from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from workbench.errors import JobFileError, RunHealthError, StoreError
from workbench.jobs import JobConfig, ResultStore, run
from workbench.jobs.store import SCHEMA_VERSION

ROOT = Path(__file__).resolve().parents[2]

JOB = """
version: 1
name: {name}
seed: 3
spec: {{require: ["C(=O)N"], properties: {{mw: [200, 450]}}}}
proposers: [{{type: library, source: moses-test, n: {n}}}]
embed: {{enabled: {embed}, n_conformers: 2}}
score: {{weights: {{qed: 1.0}}, spec_weight: 1.0}}
"""


def _job(name="t", n=12, embed="false") -> JobConfig:
    return JobConfig.from_text(JOB.format(name=name, n=n, embed=embed))


def _summary(store: str, name: str) -> list[tuple]:
    with ResultStore(store, readonly=True) as db:
        job = db.job(name)
        return [(r["idx"], r["canonical"], r["status"], r["score"]) for r in db.rows(job["job_id"])]


def test_run_records_every_candidate_and_ranks(tmp_path):
    store = str(tmp_path / "r.db")
    result = run(_job(n=12), store, progress=False)
    assert result.counts == {"done": 12}
    df = result.to_pandas()
    assert list(df["rank"]) == list(range(1, 13)) and df["score"].is_monotonic_decreasing
    mols = result.molecules()
    assert len(mols) == 12 and mols[0].meta["rank"] == 1
    with ResultStore(store, readonly=True) as db:
        job = db.job("t")
        assert job["git_commit"] and job["seed"] == 3 and job["config"]["name"] == "t"
        assert db._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_same_job_name_needs_resume(tmp_path):
    store = str(tmp_path / "r.db")
    run(_job(n=4), store, progress=False)
    with pytest.raises(JobFileError, match="--resume"):
        run(_job(n=4), store, progress=False)
    again = run(_job(n=4), store, resume=True, progress=False)  # nothing left to do, nothing duplicated
    assert again.counts == {"done": 4}
    with pytest.raises(JobFileError, match="different settings"):
        run(_job(n=5), store, resume=True, progress=False)


def test_duplicates_and_invalid_candidates_are_recorded(tmp_path):
    smi = tmp_path / "lib.smi"
    smi.write_text("CCO\nOCC\nC1CC\nC(C)(C)(C)(C)C\nc1ccccc1C(=O)NC\n")
    job = JobConfig.from_text(
        f"name: d\nproposers: [{{type: library, source: {smi}, n: 10}}]\nembed: {{enabled: false}}\n"
    )
    result = run(job, str(tmp_path / "r.db"), progress=False)
    # the reader drops the two unreadable lines (C1CC, pentavalent C); OCC repeats CCO
    assert result.counts.get("duplicate") == 1 and result.counts.get("done") == 2


def test_engine_failure_on_one_candidate_is_recorded_and_the_job_goes_on(tmp_path, monkeypatch):
    from workbench.jobs import stages

    real = stages.score

    def flaky(props, fraction, config):
        if props.get("heavy_atoms", 0) % 2:
            raise RuntimeError("engine exploded")
        return real(props, fraction, config)

    monkeypatch.setattr(stages, "score", flaky)
    result = run(_job(n=10), str(tmp_path / "r.db"), progress=False)
    assert result.counts.get("failed", 0) >= 1 and sum(result.counts.values()) == 10
    failed = [r for r in result.rows() if r["status"] == "failed"]
    assert "engine exploded" in failed[0]["error"]


def test_health_check_stops_a_collapsing_run_and_keeps_rows(tmp_path):
    smi = tmp_path / "dups.smi"
    smi.write_text("\n".join(["CCO", "OCC", "C(O)C"] * 10) + "\n")
    job = JobConfig.from_text(
        f"name: h\nproposers: [{{type: library, source: {smi}, n: 30}}]\nembed: {{enabled: false}}\n"
        "health: {min_uniqueness: 0.5, min_items: 10, action: stop}\n"
    )
    with pytest.raises(RunHealthError, match="uniqueness"):
        run(job, str(tmp_path / "r.db"), progress=False)
    with ResultStore(str(tmp_path / "r.db"), readonly=True) as db:
        assert db.job("h")["status"] == "stopped"
        assert sum(db.counts(db.job("h")["job_id"]).values()) == 30


def test_health_check_warns(tmp_path):
    smi = tmp_path / "dups.smi"
    smi.write_text("\n".join(["CCO"] * 30) + "\n")
    job = JobConfig.from_text(
        f"name: w\nproposers: [{{type: library, source: {smi}, n: 30}}]\nembed: {{enabled: false}}\n"
        "health: {min_items: 10, action: warn}\n"
    )
    with pytest.warns(UserWarning, match="uniqueness"):
        run(job, str(tmp_path / "r.db"), progress=False)


def test_resume_after_kill_9_loses_and_duplicates_nothing(tmp_path):
    job_file = tmp_path / "job.yaml"
    job_file.write_text(JOB.format(name="k", n=30, embed="true"))
    killed = str(tmp_path / "killed.db")
    proc = subprocess.Popen(
        [sys.executable, "-m", "workbench.cli", "run", str(job_file), "--store", killed],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 240
    finished = 0
    while time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
        try:
            conn = sqlite3.connect(f"file:{killed}?mode=ro", uri=True, timeout=1)
            finished = conn.execute("SELECT COUNT(*) FROM candidates WHERE status != 'proposed'").fetchone()[0]
            conn.close()
        except sqlite3.Error:
            continue
        if finished >= 5:
            break
    assert proc.poll() is None, "the runner finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 5 <= finished < 30
    resumed = run(str(job_file), killed, resume=True, progress=False)
    clean = str(tmp_path / "clean.db")
    run(str(job_file), clean, progress=False)
    assert _summary(killed, "k") == _summary(clean, "k")
    assert sum(resumed.counts.values()) == 30 and resumed.counts == {"done": 30}


def test_dask_local_cluster_gives_the_same_rows(tmp_path):
    local, dask = str(tmp_path / "local.db"), str(tmp_path / "dask.db")
    run(_job(name="x", n=16, embed="true"), local, progress=False)
    result = run(_job(name="x", n=16, embed="true"), dask, workers=2, progress=False)
    assert result.executor == "dask-local[2]"
    assert _summary(local, "x") == _summary(dask, "x")


def test_store_errors(tmp_path):
    with pytest.raises(StoreError, match="does not exist"):
        ResultStore(str(tmp_path / "missing" / "r.db"))
    newer = str(tmp_path / "newer.db")
    ResultStore(newer).close()
    conn = sqlite3.connect(newer)
    conn.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION + 1),))
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="newer workbench"):
        ResultStore(newer)
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="not a"):
        ResultStore(str(junk))


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_read_only_store(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    ResultStore(str(folder / "r.db")).close()
    os.chmod(folder / "r.db", 0o444)
    os.chmod(folder, 0o555)
    try:
        with pytest.raises(StoreError, match="read-only"):
            run(_job(n=2), str(folder / "r.db"), progress=False)
    finally:
        os.chmod(folder, 0o755)


def test_unwritable_store_path_is_a_clear_error(tmp_path):
    # /proc accepts no new files, even for root: the same path a read-only mount takes
    with pytest.raises(StoreError, match="writable"):
        run(_job(n=2), "/proc/workbench-test.db", progress=False)


def test_existing_dask_scheduler_by_address(tmp_path):
    from dask.distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        address = cluster.scheduler_address.replace("tcp://", "")
        result = run(_job(name="addr", n=6), str(tmp_path / "r.db"), executor=f"dask://{address}", progress=False)
    assert result.executor == f"dask://{address}" and result.counts == {"done": 6}
    run(_job(name="addr", n=6), str(tmp_path / "local.db"), progress=False)
    assert _summary(str(tmp_path / "r.db"), "addr") == _summary(str(tmp_path / "local.db"), "addr")


def test_unknown_potential_is_rejected_before_any_work(tmp_path):
    job = JobConfig.from_text("name: p\nsimulate: {enabled: true, potential: no-such-potential}\n")
    with pytest.raises(JobFileError, match="simulate.potential.*no-such-potential"):
        run(job, str(tmp_path / "r.db"), progress=False)
    with ResultStore(str(tmp_path / "r.db"), readonly=True) as db:
        assert db.n_proposals(db.job("p")["job_id"]) == 0


def test_simulation_stage_records_observables(tmp_path):
    smi = tmp_path / "eth.smi"
    smi.write_text("CCO\n")
    job = JobConfig.from_text(
        f"name: md\nproposers: [{{type: library, source: {smi}, n: 1}}]\n"
        "simulate: {enabled: true, potential: ethanol, protocol: nvt, ps: 0.01, timestep_fs: 0.5}\n"
        "score: {weights: {qed: 1.0, sim_rmsd_a: -1.0}}\n"
    )
    result = run(job, str(tmp_path / "r.db"), progress=False)
    row = result.rows()[0]
    sim = row["result"]["simulation"]
    assert row["result"]["stages"]["simulate"] == "ok" and sim["sim_steps"] == 20
    assert sim["sim_rmsd_a"] >= 0 and abs(sim["sim_energy_drift_mev_per_atom_ps"]) < 1e6
    assert result.to_pandas()["sim_rmsd_a"].iloc[0] == sim["sim_rmsd_a"]
