"""The per-candidate pipeline: validate -> filter -> spec -> properties -> embed -> simulate -> score.

:func:`process_candidate` is a pure function of (candidate, job settings), so the local executor and Dask
workers run exactly the same code and produce the same rows for the same seeds. A failure in any stage is
recorded on that candidate's row; it never stops the job.
"""

from __future__ import annotations

import functools
import json
import math
import traceback
from typing import Any

from workbench.chem import conformers
from workbench.chem.properties import NUMERIC_PROPERTIES
from workbench.chem.rules import validate
from workbench.jobs.jobfile import JobConfig

__all__ = ["process_candidate", "score"]


@functools.lru_cache(maxsize=8)
def _config(settings_json: str) -> JobConfig:
    return JobConfig.model_validate(json.loads(settings_json))


def score(properties: dict[str, Any], spec_fraction: float, config: JobConfig) -> float:
    """Weighted sum of properties (and simulation observables) plus the spec bonus."""
    total = config.score.spec_weight * spec_fraction
    for name, weight in config.score.weights.items():
        value = properties.get(name)
        if isinstance(value, int | float) and math.isfinite(value):
            total += weight * float(value)
    return round(total, 6)


def process_candidate(item: dict[str, Any], settings_json: str) -> dict[str, Any]:
    """Run every stage on one proposed candidate and return its result row (JSON-serialisable)."""
    config = _config(settings_json)
    out: dict[str, Any] = {"idx": item["idx"], "status": "done", "stages": {}}
    stage = "validate"
    try:
        report = validate(item["smiles"], config.ruleset())
        out["valid"] = report.ok
        out["findings"] = [f"{f.severity}:{f.rule}: {f.message}" for f in report.findings]
        if report.molecule is None or (config.filter_invalid and not report.ok):
            out.update(status="invalid", score=None, canonical=report.molecule.smiles if report.molecule else None)
            return out
        mol = report.molecule
        out["canonical"] = mol.smiles

        stage = "spec"
        spec_report = config.spec.check(mol)
        out["spec_ok"] = spec_report.ok
        out["spec_fraction"] = spec_report.fraction_passed
        out["spec_failed"] = [str(r) for r in spec_report.failed]
        if config.filter_spec and not spec_report.ok:
            out.update(status="filtered", score=None)
            return out

        stage = "properties"
        props = {name: mol.prop(name) for name in NUMERIC_PROPERTIES}
        out["properties"] = props

        if config.embed.enabled:
            stage = "embed"
            try:
                m3d = conformers.embed(
                    mol, n=config.embed.n_conformers, seed=config.seed, max_heavy_atoms=config.embed.max_heavy_atoms
                )
                out["mmff_energy"] = m3d.meta.get("mmff_energy")
                out["molblock"] = m3d.to_molblock()
                out["stages"]["embed"] = "ok"
            except Exception as exc:  # recorded on the row; later stages that need 3D are skipped
                out["stages"]["embed"] = f"failed: {exc}"
                m3d = None
        else:
            m3d = None

        observables: dict[str, Any] = {}
        if config.simulate.enabled:
            stage = "simulate"
            if m3d is None:
                out["stages"]["simulate"] = "skipped: no 3D structure"
            else:
                from workbench.jobs.simulate import simulate_candidate

                try:
                    observables = {
                        f"sim_{k}": v for k, v in simulate_candidate(m3d, config.simulate, config.seed).items()
                    }
                    out["simulation"] = observables
                    out["stages"]["simulate"] = "ok"
                except Exception as exc:
                    out["stages"]["simulate"] = f"failed: {exc}"

        stage = "score"
        out["score"] = score({**props, **observables}, spec_report.fraction_passed, config)
        return out
    except Exception as exc:  # an engine failing on one candidate: record it, keep the job going
        out.update(status="failed", score=None, error=f"{stage}: {type(exc).__name__}: {exc}")
        out["traceback"] = traceback.format_exc(limit=5)
        return out
