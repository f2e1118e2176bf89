"""The notebook-first facade behind ``import workbench as wb``.

>>> import workbench as wb
>>> callable(wb.campaign)
True
"""

from __future__ import annotations

import functools
import os
from typing import Any

from workbench.chem import DesignSpec, Molecule, MoleculeSet, conformers
from workbench.jobs import CampaignResult, JobConfig, run

__all__ = ["campaign", "generate", "propose", "simulate"]


def campaign(
    job: JobConfig | dict[str, Any] | str | os.PathLike,
    store: str | os.PathLike = "workbench-results.db",
    *,
    resume: bool = False,
    workers: int | None = None,
    executor: str = "local",
    progress: bool = True,
) -> CampaignResult:
    """Run a design campaign from a :class:`JobConfig`, a dict, YAML text or a job file path.

    Returns a :class:`CampaignResult` that renders as a ranked molecule grid in Jupyter and exports with
    ``.to_pandas()`` / ``.molecules().to_sdf(...)``.
    """
    if isinstance(job, dict):
        job = JobConfig.model_validate(job)
    elif isinstance(job, str) and not os.path.exists(job) and ("\n" in job or ":" in job):
        job = JobConfig.from_text(job)
    return run(job, store, resume=resume, executor=executor, workers=workers, progress=progress)


@functools.lru_cache(maxsize=4)
def _pipeline(checkpoint: str):
    from diffusion.pipeline import MoleculeDiffusionPipeline

    return MoleculeDiffusionPipeline.from_pretrained(checkpoint)


def generate(
    targets: dict[str, float] | None = None,
    n: int = 64,
    *,
    guidance: Any = "c2fg",
    steps: int = 25,
    seed: int = 0,
    spec: DesignSpec | None = None,
    checkpoint: str | None = None,
) -> MoleculeSet:
    """Property-targeted molecules from the diffusion engine (C2FG guidance by default).

    ``guidance`` is a schedule object from :mod:`diffusion.guidance`, a job-file mapping such as
    ``{"type": "constant", "w": 2.0}``, ``"c2fg"`` (w0=4, lam=3) or ``None`` for no guidance.
    """
    from workbench.jobs.proposers import default_diffusion_checkpoint, guidance_from_config

    if guidance == "c2fg":
        guidance = {"type": "c2fg", "w0": 4.0, "lam": 3.0}
    if isinstance(guidance, dict) or guidance is None:
        guidance = guidance_from_config(guidance)
    pipe = _pipeline(checkpoint or default_diffusion_checkpoint())
    return pipe(n=n, targets=targets, guidance=guidance, num_inference_steps=steps, seed=seed, spec=spec)


def propose(
    spec: DesignSpec | dict[str, Any] | str, n: int = 8, *, method: str = "reasoning", seed: int = 0
) -> MoleculeSet:
    """Molecules for a design spec: ``method="reasoning"`` (trace + SMILES per proposal) or ``"diffusion"``
    (sampled toward the midpoints of the spec's property ranges, then filtered by the spec)."""
    if not isinstance(spec, DesignSpec):
        spec = DesignSpec.from_dict(spec) if isinstance(spec, dict) else DesignSpec.from_yaml(spec)
    if method == "reasoning":
        from reasoning import Proposer

        out = MoleculeSet(name=f"reasoning seed={seed}")
        for p in Proposer.default().propose(spec, n, seed=seed):
            if p.molecule is not None:
                out.add(p.molecule.with_meta(trace=p.trace, validation=p.validation, spec_ok=p.spec_report.ok))
        return out
    if method == "diffusion":
        targets = {k: (lo + hi) / 2 for k, (lo, hi) in spec.properties.items() if k in _DIFFUSION_PROPERTIES}
        return generate(targets or None, n=n, seed=seed, spec=spec)
    raise ValueError(f"unknown method {method!r}; choose 'reasoning' or 'diffusion'")


_DIFFUSION_PROPERTIES = ("qed", "clogp", "mw", "tpsa", "sa", "hbd", "hba", "rings")


def simulate(
    mol: Molecule | str,
    potential: str = "workbench-organic-w4a8",
    *,
    ps: float = 10.0,
    temperature: float = 300.0,
    protocol: str = "NVT",
    timestep_fs: float = 0.5,
    seed: int = 0,
    report_every: int = 20,
    minimise_iterations: int = 500,
    out_dir: str | None = None,
):
    """Embed (if needed), minimise (at most ``minimise_iterations`` L-BFGS steps) and run ``ps`` picoseconds
    of MD with a named potential in OpenMM; returns the Trajectory."""
    from simulation import md

    steps = md.steps_for(ps, timestep_fs)
    if not isinstance(mol, Molecule):
        mol = Molecule(mol)
    if not mol.has_3d:
        mol = conformers.embed(mol, seed=seed)
    return md.run(
        mol.to_rdkit(),
        potential=potential,
        protocol=protocol,
        temperature=temperature,
        timestep_fs=timestep_fs,
        steps=steps,
        report_every=report_every,
        minimise_iterations=minimise_iterations,
        seed=seed,
        out_dir=out_dir,
    )
