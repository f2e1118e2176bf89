"""The simulation stage of a campaign: short MD of each embedded candidate with a named potential.

Observables recorded on the row (and available to scoring by name): ``sim_potential_energy_ev``,
``sim_mean_temperature_k``, ``sim_energy_drift_mev_per_atom_ps`` and ``sim_rmsd_a`` (heavy-atom RMSD of the
last frame from the minimised start, Å).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from workbench.chem.molecule import Molecule
from workbench.errors import JobFileError

__all__ = ["simulate_candidate", "check_potential"]


def check_potential(name: str) -> None:
    """Fail before any work when the potential is unknown, listing the shipped ones."""
    try:
        from simulation.openmm import load_potential
    except ImportError as exc:
        raise JobFileError(f"simulate: the simulation engine is not available here ({exc})") from None
    try:
        load_potential(name)
    except Exception as exc:
        raise JobFileError(f"simulate.potential: {exc}") from None


def simulate_candidate(m3d: Molecule, settings: Any, seed: int = 0) -> dict[str, Any]:
    """Minimise then run ``settings.ps`` of dynamics; return scalar observables."""
    from simulation import md

    steps = 0 if settings.protocol == "minimize" else md.steps_for(settings.ps, settings.timestep_fs)
    traj = md.run(
        m3d.to_rdkit(),
        potential=settings.potential,
        protocol="NVE" if settings.protocol == "nve" else "NVT",
        temperature=settings.temperature,
        timestep_fs=settings.timestep_fs,
        steps=steps,
        report_every=max(1, steps // 50) if steps else 1,
        minimise_iterations=settings.minimise_iterations,
        seed=seed,
    )
    heavy = traj.numbers > 1
    first, last = traj.positions[0][heavy], traj.positions[-1][heavy]
    first = first - first.mean(axis=0)
    last = last - last.mean(axis=0)
    u, _, vt = np.linalg.svd(last.T @ first)  # Kabsch alignment before the RMSD
    d = np.sign(np.linalg.det(u @ vt))
    rot = u @ np.diag([1.0, 1.0, d]) @ vt
    rmsd = float(np.sqrt(((last @ rot - first) ** 2).sum(axis=1).mean()))
    return {
        "potential_energy_ev": float(traj.potential_energy[-1]),
        "mean_temperature_k": float(np.mean(traj.temperature)),
        "energy_drift_mev_per_atom_ps": float(traj.energy_drift()),
        "rmsd_a": rmsd,
        "steps": steps,
        "potential": settings.potential,
    }
