"""The ``workbench`` command line.

workbench demo                 run the main job on the embedded defaults and print a summary
workbench validate SMILES|FILE  validate molecules and print each report
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import Counter
from typing import Optional

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Molecular design and simulation workbench.")


@app.command()
def demo(
    n: int = typer.Option(2000, help="molecules to sample from each corpus"),
    seed: int = typer.Option(0, help="sampling and embedding seed"),
    embed: int = typer.Option(5, help="molecules to embed in 3D"),
) -> None:
    """Validate, profile and embed a sample of real corpora with the chemistry core."""
    from workbench import chem
    from workbench.data import load_corpus

    typer.echo("workbench demo: the chemistry core on real corpora")
    rows = []
    for corpus in ("moses-test", "chembl-drugs"):
        smiles = load_corpus(corpus, limit=n, seed=seed)
        t0 = time.perf_counter()
        reports = [chem.validate(s) for s in smiles]
        dt = time.perf_counter() - t0
        valid = [r for r in reports if r.ok]
        fired = Counter(f.rule for r in reports for f in r.findings)
        mols = chem.MoleculeSet(r.molecule for r in reports if r.molecule is not None)
        df = mols.to_pandas(("mw", "clogp", "tpsa", "qed", "sa"))
        rows.append(corpus)
        typer.echo(f"\n== {corpus}: {len(smiles)} molecules, validated in {dt:.2f} s ({len(smiles) / dt:,.0f}/s)")
        typer.echo(f"   valid (no errors): {len(valid)} ({len(valid) / max(1, len(smiles)):.1%}); unique: {len(mols)}")
        typer.echo("   findings by rule: " + ", ".join(f"{k}={v}" for k, v in fired.most_common()))
        typer.echo(
            "   property medians: "
            + ", ".join(f"{c}={df[c].median():.2f}" for c in df.columns[1:] if df[c].dtype.kind in "fi")
        )
    sample = load_corpus("chembl-drugs", limit=embed, seed=seed)
    typer.echo(f"\n== 3D embedding (ETKDGv3 + MMFF94), {len(sample)} drugs")
    for s in sample:
        try:
            m3d = chem.conformers.embed(s, seed=seed)
            typer.echo(f"   {m3d.smiles[:60]:60s} {m3d.num_atoms:4d} atoms  E_MMFF={m3d.meta['mmff_energy']:.1f}")
        except Exception as exc:  # report and continue: a demo never stops at one bad molecule
            typer.echo(f"   {s[:60]:60s} failed: {exc}")
    typer.echo("\ndone.")


@app.command()
def validate(
    inputs: list[str] = typer.Argument(..., help="SMILES strings or files (.smi .csv .sdf .xyz .pdb)"),
    rules: Optional[str] = typer.Option(None, help="YAML rule-set file"),
    as_json: bool = typer.Option(False, "--json", help="print JSON lines"),
) -> None:
    """Validate molecules and print a report for each; exit code 1 if any has errors."""
    from workbench import chem

    ruleset = chem.RuleSet.from_yaml(rules) if rules else chem.DEFAULT_RULES
    bad = 0
    for item in inputs:
        if os.path.exists(item):
            result = chem.io.read(item)
            for failure in result.failures:
                bad += 1
                _emit(
                    {"source": f"{item}:{failure.index}", "ok": False, "error": failure.reason},
                    as_json,
                    f"{item} {failure}",
                )
            targets = list(result)
        else:
            targets = [item]
        for target in targets:
            report = chem.validate(target, ruleset)
            bad += not report.ok
            _emit(report.to_dict(), as_json, str(report))
    raise typer.Exit(code=1 if bad else 0)


def _emit(record: dict, as_json: bool, text: str) -> None:
    typer.echo(json.dumps(record) if as_json else text)


@app.command()
def run(
    job: str = typer.Argument(..., help="job file (.yaml or .toml)"),
    store: str = typer.Option("workbench-results.db", help="SQLite result store"),
    resume: bool = typer.Option(False, help="continue a job already in the store"),
    workers: Optional[int] = typer.Option(None, help="run on a local Dask cluster of N workers"),
    executor: str = typer.Option("local", help="'local' or dask://host:port"),
    report: Optional[str] = typer.Option(None, help="also write the HTML report here"),
) -> None:
    """Run a design campaign from a job file and record every candidate in the store."""
    from workbench.errors import WorkbenchError
    from workbench.jobs import run as run_job

    try:
        result = run_job(job, store, resume=resume, executor=executor, workers=workers)
    except WorkbenchError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from None
    typer.echo(
        f"{result.job_name}: {result.counts} (validity {result.health['validity']:.0%}, "
        f"uniqueness {result.health['uniqueness']:.0%}; executor {result.executor}) -> {store}"
    )
    from workbench.jobs.runner import rows_to_records

    for rec in [r for r in rows_to_records(result.rows()) if r["rank"] is not None][:5]:
        typer.echo(f"  #{rec['rank']}  score={rec['score']:.3f}  {rec['smiles']}")
    if report:
        from workbench.jobs.report import write_report

        typer.echo(f"report: {write_report(store, report, result.job_name)}")


@app.command()
def status(store: str = typer.Argument(..., help="SQLite result store")) -> None:
    """Show the jobs in a store and how far each got."""
    from workbench.jobs import ResultStore

    with ResultStore(store, readonly=True) as db:
        for job in db.jobs():
            typer.echo(f"{job['name']}: {job['status']} {db.counts(job['job_id'])} (started {job['created_at']})")


@app.command()
def export(
    store: str = typer.Argument(..., help="SQLite result store"),
    format: str = typer.Option("csv", "--format", help="sdf, csv or parquet"),
    out: Optional[str] = typer.Option(None, help="output file (default: <job>.<format>)"),
    job: Optional[str] = typer.Option(None, help="job name (default: the latest)"),
) -> None:
    """Export a job's ranked candidates."""
    from workbench.jobs import ResultStore
    from workbench.jobs.runner import rows_to_moleculeset, rows_to_records

    with ResultStore(store, readonly=True) as db:
        jobs = db.jobs()
        if not jobs:
            typer.echo("error: the store holds no jobs", err=True)
            raise typer.Exit(code=2)
        record = db.job(job or jobs[-1]["name"])
        if record is None:
            typer.echo(f"error: no job {job!r}; jobs: {', '.join(j['name'] for j in jobs)}", err=True)
            raise typer.Exit(code=2)
        rows = db.rows(record["job_id"], ranked=True)
    path = out or f"{record['name']}.{format}"
    if format == "sdf":
        rows_to_moleculeset(rows).to_sdf(path, properties=())
    elif format in ("csv", "parquet"):
        import pandas as pd

        df = pd.DataFrame(rows_to_records(rows))
        df.to_csv(path, index=False) if format == "csv" else df.to_parquet(path, index=False)
    else:
        typer.echo("error: --format must be sdf, csv or parquet", err=True)
        raise typer.Exit(code=2)
    typer.echo(path)


@app.command()
def report(
    store: str = typer.Argument(..., help="SQLite result store"),
    out: str = typer.Option("report.html", help="HTML file to write"),
    job: Optional[str] = typer.Option(None, help="job name (default: the latest)"),
) -> None:
    """Write a self-contained HTML report (grid, distributions vs targets, provenance)."""
    from workbench.jobs.report import write_report

    typer.echo(write_report(store, out, job))


@app.command()
def serve(
    port: int = typer.Option(8000, help="port to listen on"),
    host: str = typer.Option("127.0.0.1", help="interface to bind (default: this machine only)"),
    api_key: Optional[str] = typer.Option(
        None, envvar="WORKBENCH_API_KEY", help="require 'Authorization: Bearer <key>' (or set WORKBENCH_API_KEY)"
    ),
) -> None:
    """Serve the compact reasoning model as an OpenAI-compatible /v1/chat/completions endpoint."""
    from workbench.serve import serve as run_server

    run_server(host, port, api_key=api_key)


@app.command()
def version() -> None:
    """Print the version."""
    from workbench import __version__

    typer.echo(__version__)


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
