"""A self-contained HTML report of a campaign: provenance, health, ranked grid, property distributions and
simulation observables."""

from __future__ import annotations

import base64
import datetime as _dt
import io
import json
from html import escape
from typing import Any

from workbench.chem.depict import molecule_card
from workbench.chem.spec import DesignSpec
from workbench.jobs.runner import rows_to_moleculeset, rows_to_records
from workbench.jobs.store import ResultStore

__all__ = ["render_report", "write_report"]

PLOT_PROPERTIES = ("mw", "clogp", "tpsa", "qed", "sa", "hbd", "hba", "rotb")


SIM_OBSERVABLES = {
    "sim_mean_temperature_k": "mean temperature (K)",
    "sim_energy_drift_mev_per_atom_ps": "energy drift (meV/atom/ps)",
    "sim_rmsd_a": "heavy-atom RMSD from start (Å)",
    "sim_potential_energy_ev": "final potential energy (eV)",
}


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _simulation_plots(records: list[dict[str, Any]], job_config: dict[str, Any]) -> str:
    """Distributions of the MD observables of the simulated candidates, and RMSD against the score."""
    simulate = job_config.get("simulate") or {}
    if not simulate.get("enabled"):
        return "<p>The job ran no simulation stage.</p>"
    names = [k for k in SIM_OBSERVABLES if any(isinstance(r.get(k), int | float) for r in records)]
    if not names:
        return "<p>No candidate finished its simulation.</p>"
    plt = _pyplot()
    panels = names + (["score"] if "sim_rmsd_a" in names else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 2.6), squeeze=False)
    for ax, name in zip(axes.flat, panels, strict=False):
        if name == "score":
            pairs = [(r["sim_rmsd_a"], r["score"]) for r in records if isinstance(r.get("sim_rmsd_a"), int | float)]
            pairs = [(x, y) for x, y in pairs if isinstance(y, int | float)]
            ax.scatter([x for x, _ in pairs], [y for _, y in pairs], s=12, color="#5c6bc0")
            ax.set_xlabel(SIM_OBSERVABLES["sim_rmsd_a"], fontsize=8)
            ax.set_ylabel("score", fontsize=8)
            ax.set_title("score vs RMSD", fontsize=9)
            continue
        values = [r[name] for r in records if isinstance(r.get(name), int | float)]
        ax.hist(values, bins=20, color="#26a69a")
        if name == "sim_mean_temperature_k" and simulate.get("temperature"):
            ax.axvline(float(simulate["temperature"]), color="#ef5350", label="thermostat")
            ax.legend(fontsize=7)
        ax.set_title(SIM_OBSERVABLES[name], fontsize=9)
    data = _png(fig)
    n = sum(isinstance(r.get(names[0]), int | float) for r in records)
    protocol = ", ".join(f"{k} {simulate[k]}" for k in ("potential", "protocol", "ps", "timestep_fs") if k in simulate)
    return (
        f"<p>{n} candidates simulated ({escape(protocol)}).</p>"
        f"<img alt='simulation observables' src='data:image/png;base64,{data}'/>"
    )


def _histograms(records: list[dict[str, Any]], spec: DesignSpec) -> str:
    plt = _pyplot()

    names = [p for p in PLOT_PROPERTIES if any(isinstance(r.get(p), int | float) for r in records)]
    if not names:
        return "<p>No finished candidates to plot.</p>"
    cols = 4
    rows = (len(names) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.4 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names, strict=False):
        values = [r[name] for r in records if isinstance(r.get(name), int | float)]
        ax.hist(values, bins=20, color="#5c6bc0")
        if name in spec.properties:
            lo, hi = spec.properties[name]
            ax.axvspan(lo, hi, color="#66bb6a", alpha=0.25, label="target")
            ax.legend(fontsize=7)
        ax.set_title(name, fontsize=9)
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    return f"<img alt='property distributions' src='data:image/png;base64,{_png(fig)}'/>"


def render_report(store_path: str, job_name: str | None = None, top: int = 48) -> str:
    """The report HTML for one job of a store (the only job when ``job_name`` is None)."""
    with ResultStore(store_path, readonly=True) as store:
        jobs = store.jobs()
        if not jobs:
            raise ValueError(f"store {store_path!r} holds no jobs")
        name = job_name or jobs[-1]["name"]
        job = store.job(name)
        if job is None:
            raise ValueError(f"no job {name!r} in {store_path}; jobs: {', '.join(j['name'] for j in jobs)}")
        rows = store.rows(job["job_id"], ranked=True)
        counts = store.counts(job["job_id"])
    spec = DesignSpec.from_dict(job["config"].get("spec", {}))
    records = rows_to_records(rows)
    mols = rows_to_moleculeset(rows)
    cards = "".join(
        molecule_card(m, extra={"rank": m.meta.get("rank"), "score": m.meta.get("score"), "spec": _spec_label(m)})
        for m in mols[:top]
    )
    columns = ["rank", "smiles", "source", "status", "score", "spec_ok", "mw", "clogp", "qed", "sa"]
    columns += [k for k in ("sim_rmsd_a", "sim_mean_temperature_k") if any(k in r for r in records)]
    table_rows = "".join(
        "<tr>" + "".join(f"<td>{escape(_fmt(r.get(c)))}</td>" for c in columns) + "</tr>" for r in records[:200]
    )
    generated = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    provenance = {k: job[k] for k in ("git_commit", "seed", "workbench_version", "created_at", "status", "message")}
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>workbench report: {escape(name)}</title>
<style>body{{font-family:sans-serif;margin:1.5em}} table{{border-collapse:collapse;font-size:12px}}
td,th{{border:1px solid #ddd;padding:2px 6px}} .grid{{display:flex;flex-wrap:wrap}}</style></head>
<body>
<h1>Campaign {escape(name)}</h1>
<p>Generated {generated} from <code>{escape(store_path)}</code>.</p>
<h2>Design spec</h2><ul>{"".join(f"<li>{escape(s)}</li>" for s in spec.describe()) or "<li>(none)</li>"}</ul>
<h2>Run</h2><p>{escape(json.dumps(counts))}</p>
<pre>{escape(json.dumps(provenance, indent=1, default=str))}</pre>
<h2>Top candidates</h2><div class="grid">{cards}</div>
<h2>Property distributions against the targets</h2>{_histograms(records, spec)}
<h2>Simulation</h2>{_simulation_plots(records, job["config"])}
<h2>All candidates</h2>
<table><tr>{"".join(f"<th>{c}</th>" for c in columns)}</tr>{table_rows}</table>
<h2>Job configuration</h2><pre>{escape(json.dumps(job["config"], indent=1))}</pre>
</body></html>"""


def write_report(store_path: str, out_path: str, job_name: str | None = None) -> str:
    html = render_report(store_path, job_name)
    with open(out_path, "w", encoding="utf-8") as fh:
        fh.write(html)
    return out_path


def _spec_label(mol: Any) -> str:
    if mol.meta.get("spec_ok"):
        return "met"
    failed = mol.meta.get("spec_failed", "")
    return f"not met: {failed}" if failed else "not met"


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)
