"""Campaign throughput: candidates per minute through the full pipeline, 1 worker vs a 2-worker LocalCluster,
store write throughput, and resume after kill -9 (lost / duplicated rows, overhead).

    python benchmarks/campaign.py [--n 60]
"""

from __future__ import annotations

import argparse
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import _results  # noqa: E402
from workbench.jobs import JobConfig, ResultStore, run  # noqa: E402
from workbench.jobs.executors import DaskExecutor  # noqa: E402

JOB = """
version: 1
name: bench
seed: 0
spec: {{require: ["C(=O)N"], properties: {{mw: [200, 450], qed: [0.5, 1.0]}}}}
proposers: [{{type: library, source: moses-test, n: {n}}}]
embed: {{enabled: true, n_conformers: 3}}
score: {{weights: {{qed: 1.0, sa: -0.1}}}}
"""


def _rows(store: str) -> list[tuple]:
    with ResultStore(store, readonly=True) as db:
        job = db.job("bench")
        return [(r["idx"], r["canonical"], r["status"], r["score"]) for r in db.rows(job["job_id"])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=60)
    args = parser.parse_args()
    tmp = tempfile.mkdtemp()
    job = JobConfig.from_text(JOB.format(n=args.n))
    job_file = os.path.join(tmp, "job.yaml")
    with open(job_file, "w") as fh:
        fh.write(JOB.format(n=args.n))

    t0 = time.perf_counter()
    run(job, os.path.join(tmp, "one.db"), progress=False)
    t_one = time.perf_counter() - t0
    t0 = time.perf_counter()
    cluster = DaskExecutor(workers=2)
    t_cluster = time.perf_counter() - t0
    # warm both workers (imports, corpus, FilterCatalogs) so the figure is steady-state throughput
    run(
        JobConfig.from_text(JOB.format(n=4).replace("name: bench", "name: warm")),
        os.path.join(tmp, "warm.db"),
        executor=cluster,
        progress=False,
    )
    t0 = time.perf_counter()
    run(job, os.path.join(tmp, "two.db"), executor=cluster, progress=False)
    t_two = time.perf_counter() - t0
    cluster.close()
    same = _rows(os.path.join(tmp, "one.db")) == _rows(os.path.join(tmp, "two.db"))

    # store write throughput: finished rows committed one transaction each
    store = ResultStore(os.path.join(tmp, "writes.db"))
    job_id = store.create_job("w", {})
    n_writes = 2000
    store.add_proposals(job_id, [("CCO", "bench", {})] * n_writes)
    result = {
        "status": "done",
        "canonical": "CCO",
        "valid": True,
        "spec_ok": False,
        "score": 1.0,
        "properties": {"mw": 46.07},
    }
    t0 = time.perf_counter()
    for i in range(n_writes):
        store.finish(job_id, i, {**result, "idx": i})
    t_writes = time.perf_counter() - t0
    store.close()

    # kill -9 mid-run, then resume; compare with the uninterrupted run
    killed = os.path.join(tmp, "killed.db")
    proc = subprocess.Popen(
        [sys.executable, "-m", "workbench.cli", "run", job_file, "--store", killed],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    finished_at_kill = 0
    while proc.poll() is None:
        time.sleep(0.2)
        try:
            conn = sqlite3.connect(f"file:{killed}?mode=ro", uri=True, timeout=1)
            finished_at_kill = conn.execute("SELECT COUNT(*) FROM candidates WHERE status!='proposed'").fetchone()[0]
            conn.close()
        except sqlite3.Error:
            continue
        if finished_at_kill >= args.n // 3:
            os.kill(proc.pid, signal.SIGKILL)
            break
    proc.wait()
    t0 = time.perf_counter()
    run(job_file, killed, resume=True, progress=False)
    t_resume = time.perf_counter() - t0
    reference = _rows(os.path.join(tmp, "one.db"))
    resumed = _rows(killed)
    ref_idx = [r[0] for r in reference]
    res_idx = [r[0] for r in resumed]
    lost = len(set(ref_idx) - set(res_idx)) + sum(1 for r in resumed if r[2] == "proposed")
    duplicated = len(res_idx) - len(set(res_idx))
    expected_resume = t_one * (args.n - finished_at_kill) / args.n

    figures = {
        "n_candidates": args.n,
        "pipeline": "validate -> spec -> properties -> ETKDGv3+MMFF embed (3 conformers) -> score",
        "candidates_per_min_1_worker": round(60 * args.n / t_one, 1),
        "candidates_per_min_2_workers": round(60 * args.n / t_two, 1),
        "scaling_ratio_2_vs_1": round(t_one / t_two, 2),
        "local_cluster_start_seconds": round(t_cluster, 2),
        "two_worker_rows_equal_local": same,
        "store_writes_per_s": round(n_writes / t_writes, 1),
        "killed_after_rows": finished_at_kill,
        "resume_lost_rows": lost,
        "resume_duplicated_rows": duplicated,
        "resume_rows_equal_uninterrupted": resumed == reference,
        "resume_seconds": round(t_resume, 2),
        "resume_overhead_ratio": round(t_resume / expected_resume, 2) if expected_resume else None,
    }
    path = _results.write("campaign", figures)
    for k, v in figures.items():
        print(f"{k:36s} {v}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
