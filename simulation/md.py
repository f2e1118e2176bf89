"""Molecular dynamics with the equivariant potential in OpenMM: minimise, then Langevin NVT or Verlet NVE.

>>> traj = run("CCO", potential="ethanol", protocol="NVT", steps=200, temperature=300.0)  # doctest: +SKIP
>>> traj.positions.shape                                                                # doctest: +SKIP
(21, 9, 3)

A guard checks every report: a non-finite energy, a temperature far above the target (or, in NVE, far above
the starting one) or an excessive force stops the run with :class:`~workbench.errors.SimulationError`; the
last good frame is kept in the error (``error.last_frame``) and, with ``out_dir``, written to
``last_good.pdb``. Reporters (DCD trajectory, state-data CSV, OpenMM checkpoint) are written when
``out_dir`` is given, and a run restarts from ``out_dir/checkpoint.chk`` when it exists.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import openmm
import openmm.app as app
from openmm import unit

from simulation.model import EquivariantPotential
from simulation.openmm import EV_TO_KJ_PER_MOL, create_system
from workbench.errors import SimulationError

__all__ = ["Trajectory", "run", "PROTOCOLS"]

PROTOCOLS = ("NVT", "NVE")
_KB_EV = 8.617333262e-5  # eV/K


@dataclass
class Trajectory:
    """Frames of a run: ``positions: (frames, atoms, 3)`` Angstrom, energies in eV, ``time_ps: (frames,)``."""

    numbers: np.ndarray  # (atoms,)
    positions: np.ndarray  # (frames, atoms, 3) Angstrom
    potential_energy: np.ndarray  # (frames,) eV
    kinetic_energy: np.ndarray  # (frames,) eV
    temperature: np.ndarray  # (frames,) K
    time_ps: np.ndarray  # (frames,)
    protocol: str
    timestep_fs: float

    @property
    def total_energy(self) -> np.ndarray:
        """Potential + kinetic energy, eV."""
        return self.potential_energy + self.kinetic_energy

    def energy_drift(self) -> float:
        """Slope of a straight-line fit to the total energy, meV/atom/ps (meaningful for NVE)."""
        if len(self.time_ps) < 2:
            return 0.0
        slope = np.polyfit(self.time_ps, self.total_energy, 1)[0]
        return float(1000.0 * slope / len(self.numbers))

    def save_npz(self, path: str | os.PathLike) -> Path:
        """Write the arrays (Angstrom, eV, K, ps) to a pickle-free ``.npz``."""
        path = Path(path)
        np.savez_compressed(
            path,
            numbers=self.numbers,
            positions=self.positions,
            potential_energy=self.potential_energy,
            kinetic_energy=self.kinetic_energy,
            temperature=self.temperature,
            time_ps=self.time_ps,
            protocol=np.asarray(self.protocol),
            timestep_fs=np.asarray(self.timestep_fs),
        )
        return path


def _integrator(protocol: str, temperature: float, timestep_fs: float, friction_per_ps: float, seed: int):
    if protocol == "NVT":
        integrator = openmm.LangevinMiddleIntegrator(
            temperature * unit.kelvin, friction_per_ps / unit.picosecond, timestep_fs * unit.femtosecond
        )
        integrator.setRandomNumberSeed(seed)
        return integrator
    return openmm.VerletIntegrator(timestep_fs * unit.femtosecond)


def run(
    molecule: object,
    potential: str | os.PathLike | EquivariantPotential = "workbench-organic",
    *,
    protocol: str = "NVT",
    temperature: float = 300.0,
    timestep_fs: float = 0.5,
    steps: int = 1000,
    report_every: int = 10,
    friction_per_ps: float = 1.0,
    minimise: bool = True,
    seed: int = 0,
    out_dir: str | os.PathLike | None = None,
    max_temperature_factor: float = 5.0,
    max_force_ev_per_a: float = 50.0,
    platform: str = "Reference",
    progress: bool = False,
) -> Trajectory:
    """Minimise ``molecule`` on ``potential`` then run ``steps`` of NVT (Langevin) or NVE (Verlet) dynamics.

    ``molecule`` is anything :func:`simulation.openmm.to_structure` accepts (an RDKit molecule with 3D
    coordinates, an SDF/PDB path, a SMILES, ``(numbers, positions)``). Velocities start from a Maxwell
    distribution at ``temperature`` (for NVE too). A frame is recorded every ``report_every`` steps.
    """
    protocol = protocol.upper()
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    if steps < 0 or report_every < 1:
        raise ValueError("steps must be >= 0 and report_every >= 1")
    if timestep_fs > 2.0:
        warnings.warn(
            f"timestep {timestep_fs} fs is above 2 fs without constraints on bonds to hydrogen; "
            "expect energy drift or a blow-up (0.5 fs is safe)",
            stacklevel=2,
        )
    system, topology, positions = create_system(molecule, potential)
    numbers = np.array([a.element.atomic_number for a in topology.atoms()])
    integrator = _integrator(protocol, temperature, timestep_fs, friction_per_ps, seed)
    simulation = app.Simulation(topology, system, integrator, openmm.Platform.getPlatformByName(platform))
    simulation.context.setPositions(positions)

    out = Path(out_dir) if out_dir is not None else None
    checkpoint = out / "checkpoint.chk" if out is not None else None
    restarted = checkpoint is not None and checkpoint.exists()
    if restarted:
        simulation.loadCheckpoint(str(checkpoint))
    else:
        if minimise:
            simulation.minimizeEnergy(maxIterations=500)
        simulation.context.setVelocitiesToTemperature(temperature * unit.kelvin, seed)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        append = restarted
        simulation.reporters.append(app.DCDReporter(str(out / "trajectory.dcd"), report_every, append=append))
        simulation.reporters.append(
            app.StateDataReporter(
                str(out / "state.csv"),
                report_every,
                step=True,
                time=True,
                potentialEnergy=True,
                kineticEnergy=True,
                totalEnergy=True,
                temperature=True,
                append=append,
            )
        )
        simulation.reporters.append(app.CheckpointReporter(str(checkpoint), max(report_every, 100)))

    n_dof = 3 * len(numbers)  # no constraints and no centre-of-mass motion remover in the system
    frames: list[dict] = []
    start_temperature = None

    def record() -> dict:
        state = simulation.context.getState(getPositions=True, getEnergy=True, getForces=True)
        x = state.getPositions(asNumpy=True).value_in_unit(unit.angstrom)
        epot = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole) / EV_TO_KJ_PER_MOL
        ekin = state.getKineticEnergy().value_in_unit(unit.kilojoule_per_mole) / EV_TO_KJ_PER_MOL
        forces = state.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.angstrom)
        return {
            "positions": np.asarray(x, dtype=np.float64),
            "epot": epot,
            "ekin": ekin,
            "temperature": 2.0 * ekin / (n_dof * _KB_EV),
            "time_ps": state.getTime().value_in_unit(unit.picosecond),
            "max_force": float(np.abs(np.asarray(forces)).max()) / EV_TO_KJ_PER_MOL,
        }

    def guard(frame: dict) -> None:
        nonlocal start_temperature
        reasons = []
        if not (np.isfinite(frame["epot"]) and np.isfinite(frame["ekin"]) and np.isfinite(frame["positions"]).all()):
            reasons.append("the energy or positions became non-finite")
        reference_t = temperature if protocol == "NVT" else max(start_temperature or temperature, temperature)
        if frame["temperature"] > max_temperature_factor * reference_t:
            reasons.append(f"the temperature reached {frame['temperature']:.0f} K")
        if frame["max_force"] > max_force_ev_per_a:
            reasons.append(f"a force reached {frame['max_force']:.1f} eV/A")
        if reasons:
            last = frames[-1] if frames else None
            error = SimulationError(
                f"{protocol} run stopped at {frame['time_ps']:.3f} ps because {' and '.join(reasons)}"
                + (f"; last good frame saved to {out / 'last_good.pdb'}" if out is not None and last else "")
                + " (try a smaller timestep, a lower temperature or a potential trained on this chemistry)"
            )
            error.last_frame = last
            if out is not None and last is not None:
                with open(out / "last_good.pdb", "w") as fh:
                    app.PDBFile.writeFile(topology, last["positions"] * unit.angstrom, fh)
            raise error
        if start_temperature is None:
            start_temperature = frame["temperature"]

    first = record()
    guard(first)
    frames.append(first)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, unit="step", desc=f"{protocol} MD")
    done = 0
    while done < steps:
        chunk = min(report_every, steps - done)
        try:
            simulation.step(chunk)
        except (openmm.OpenMMException, ValueError) as exc:
            raise SimulationError(f"{protocol} run failed after {done} steps: {exc}") from exc
        done += chunk
        frame = record()
        guard(frame)
        frames.append(frame)
        if bar is not None:
            bar.update(chunk)
    if bar is not None:
        bar.close()
    if checkpoint is not None:
        simulation.saveCheckpoint(str(checkpoint))
    return Trajectory(
        numbers=numbers,
        positions=np.stack([f["positions"] for f in frames]),
        potential_energy=np.array([f["epot"] for f in frames]),
        kinetic_energy=np.array([f["ekin"] for f in frames]),
        temperature=np.array([f["temperature"] for f in frames]),
        time_ps=np.array([f["time_ps"] for f in frames]),
        protocol=protocol,
        timestep_fs=timestep_fs,
    )
