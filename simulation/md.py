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
from simulation.openmm import EV_TO_KJ_PER_MOL, create_system, load_potential, to_structure
from workbench.errors import SimulationError

__all__ = ["Trajectory", "run", "steps_for", "PROTOCOLS"]

PROTOCOLS = ("NVT", "NVE")
_KB_EV = 8.617333262e-5  # eV/K


@dataclass
class Trajectory:
    """Frames of a run: ``positions: (frames, atoms, 3)`` Angstrom, energies in eV, ``time_ps: (frames,)``.

    >>> traj = run("CCO", potential="ethanol", protocol="NVE", steps=400)   # doctest: +SKIP
    >>> traj.plot(); traj.show(); traj.analysis.rdf(r_max=4.0)                # doctest: +SKIP

    In a notebook the trajectory displays as a summary table with its energy plot; elsewhere ``repr`` is a
    one-line text summary. ``.plot()`` draws energies, temperature and the drift fit (matplotlib), ``.show()``
    animates the frames (py3Dmol), ``.analysis`` runs :mod:`simulation.analysis` on the frames, and
    ``to_ase()`` / ``to_mdtraj()`` convert. ``cell`` (Angstrom, rows = lattice vectors) marks a periodic run;
    ``bonds`` are the molecule's bonds when known (otherwise analyses infer them from covalent radii).
    """

    numbers: np.ndarray  # (atoms,)
    positions: np.ndarray  # (frames, atoms, 3) Angstrom
    potential_energy: np.ndarray  # (frames,) eV
    kinetic_energy: np.ndarray  # (frames,) eV
    temperature: np.ndarray  # (frames,) K
    time_ps: np.ndarray  # (frames,)
    protocol: str
    timestep_fs: float
    cell: np.ndarray | None = None  # (3, 3) Angstrom for periodic runs
    bonds: tuple[tuple[int, int], ...] = ()

    @property
    def total_energy(self) -> np.ndarray:
        """Potential + kinetic energy, eV."""
        return self.potential_energy + self.kinetic_energy

    @property
    def n_frames(self) -> int:
        return int(self.positions.shape[0])

    @property
    def n_atoms(self) -> int:
        return int(len(self.numbers))

    @property
    def formula(self) -> str:
        """Hill formula of the atoms (C first, then H, then alphabetical)."""
        from simulation.reference import element_symbol

        counts: dict[str, int] = {}
        for z in self.numbers:
            symbol = element_symbol(int(z))
            counts[symbol] = counts.get(symbol, 0) + 1
        first = [s for s in ("C", "H") if s in counts] if "C" in counts else []
        order = first + sorted(s for s in counts if s not in first)
        return "".join(f"{s}{counts[s] if counts[s] > 1 else ''}" for s in order)

    def energy_drift(self) -> float:
        """Slope of a straight-line fit to the total energy, meV/atom/ps (meaningful for NVE)."""
        if len(self.time_ps) < 2:
            return 0.0
        slope = np.polyfit(self.time_ps, self.total_energy, 1)[0]
        return float(1000.0 * slope / len(self.numbers))

    @property
    def analysis(self):
        """:class:`simulation.analysis.TrajectoryAnalysis` on these frames (rdf, msd, vacf/vdos, bonds, drift).

        JAX is imported on first use, not with this module.
        """
        from simulation.analysis import TrajectoryAnalysis

        return TrajectoryAnalysis(self)

    # -------------------------------------------------------------------------------------------- display

    def summary(self) -> dict:
        """Key figures: atoms, frames, time span, temperature, energy drift (raw and normalised for NVE)."""
        out = {
            "formula": self.formula,
            "atoms": self.n_atoms,
            "frames": self.n_frames,
            "protocol": self.protocol,
            "timestep_fs": float(self.timestep_fs),
            "time_ps": float(self.time_ps[-1] - self.time_ps[0]) if self.n_frames else 0.0,
            "periodic": self.cell is not None,
            "temperature_k": float(np.mean(self.temperature)) if self.n_frames else float("nan"),
            "temperature_std_k": float(np.std(self.temperature)) if self.n_frames else float("nan"),
            "drift_mev_per_atom_ps": self.energy_drift(),
        }
        if self.n_frames >= 3 and np.std(self.kinetic_energy) > 0:
            span = abs(np.polyfit(self.time_ps, self.total_energy, 1)[0]) * (self.time_ps[-1] - self.time_ps[0])
            out["drift_ratio"] = float(span / np.std(self.kinetic_energy))
        return out

    def __repr__(self) -> str:
        s = self.summary()
        text = (
            f"Trajectory({s['protocol']}, {s['formula']}, {s['atoms']} atoms, {s['frames']} frames, "
            f"{s['time_ps']:.3g} ps at {s['timestep_fs']:g} fs"
        )
        if self.n_frames:
            text += f", T = {s['temperature_k']:.0f} ± {s['temperature_std_k']:.0f} K"
        if self.n_frames >= 2:
            text += f", drift {s['drift_mev_per_atom_ps']:.3g} meV/atom/ps"
        return text + (", periodic)" if s["periodic"] else ")")

    def plot(self, *, figsize: tuple[float, float] = (8.0, 6.0)):
        """A matplotlib ``Figure`` in three panels sharing the time axis: potential, kinetic and total energy
        (meV, relative to the first total energy); the total energy alone on its own scale with the
        straight-line drift fit (meV/atom/ps in the legend); the temperature (K).

        Uses ``matplotlib.figure.Figure`` directly (no pyplot state): notebooks display the returned figure,
        scripts call ``fig.savefig(path)``.
        """
        from matplotlib.figure import Figure

        if self.n_frames == 0:
            raise ValueError("the trajectory has no frames to plot")
        t = self.time_ps
        e0 = self.total_energy[0]
        fig = Figure(figsize=figsize, layout="constrained")
        ax_e, ax_d, ax_t = fig.subplots(3, 1, sharex=True, height_ratios=[2, 1, 1])
        ax_e.plot(t, 1000 * (self.potential_energy - e0), label="potential", color="tab:blue", lw=1)
        ax_e.plot(t, 1000 * self.kinetic_energy, label="kinetic", color="tab:orange", lw=1)
        ax_e.plot(t, 1000 * (self.total_energy - e0), label="total", color="black", lw=1.2)
        ax_e.set_ylabel("E − E_total(0) (meV)")
        ax_e.legend(loc="best", fontsize=8, ncol=3)
        ax_e.set_title(f"{self.formula}: {self.protocol}, {self.n_atoms} atoms, {self.timestep_fs:g} fs step")
        ax_d.plot(t, 1000 * (self.total_energy - e0), label="total", color="black", lw=1)
        if self.n_frames >= 2:
            slope, intercept = np.polyfit(t, self.total_energy, 1)
            ax_d.plot(
                t,
                1000 * (slope * t + intercept - e0),
                ls="--",
                color="tab:red",
                label=f"drift {1000 * slope / self.n_atoms:.3g} meV/atom/ps",
            )
        ax_d.set_ylabel("total (meV)")
        ax_d.legend(loc="best", fontsize=8)
        ax_t.plot(t, self.temperature, color="tab:green", lw=1)
        ax_t.axhline(float(np.mean(self.temperature)), color="tab:green", ls=":", lw=1)
        ax_t.set_ylabel("T (K)")
        ax_t.set_xlabel("time (ps)")
        return fig

    def to_xyz(self, every: int = 1) -> str:
        """Multi-model XYZ text of every ``every``-th frame (Angstrom), one model per frame."""
        from simulation.reference import element_symbol

        if every < 1:
            raise ValueError("every must be >= 1")
        symbols = [element_symbol(int(z)) for z in self.numbers]
        blocks = []
        for k in range(0, self.n_frames, every):
            lines = [str(self.n_atoms), f"t = {self.time_ps[k]:.4f} ps  E_pot = {self.potential_energy[k]:.6f} eV"]
            lines += [f"{s} {x:.5f} {y:.5f} {z:.5f}" for s, (x, y, z) in zip(symbols, self.positions[k], strict=True)]
            blocks.append("\n".join(lines))
        return "\n".join(blocks) + "\n"

    def show(self, *, every: int = 1, style: str = "stick", width: int = 480, height: int = 360, interval_ms: int = 50):
        """A py3Dmol view animating the frames (every ``every``-th, as multi-model XYZ); returns the view.

        ``style`` is a 3Dmol style name (``"stick"``, ``"sphere"``, ``"line"``) or a full style dict. In a
        notebook the returned view renders itself; call ``view.show()`` to force it.
        """
        try:
            import py3Dmol
        except ImportError as exc:
            raise ImportError("Trajectory.show() needs py3Dmol: pip install py3Dmol") from exc

        if self.n_frames == 0:
            raise ValueError("the trajectory has no frames to show")
        view = py3Dmol.view(width=width, height=height)
        view.addModelsAsFrames(self.to_xyz(every), "xyz")
        view.setStyle({}, style if isinstance(style, dict) else {style: {}})
        if self.cell is not None:  # the 12 edges of the (possibly triclinic) cell
            a, b, c = (np.asarray(v, dtype=float) for v in self.cell)
            for start, end in self._cell_edges(a, b, c):
                view.addLine(
                    {
                        "start": dict(zip("xyz", map(float, start), strict=True)),
                        "end": dict(zip("xyz", map(float, end), strict=True)),
                        "color": "gray",
                    }
                )
        view.zoomTo()
        view.animate({"loop": "forward", "interval": int(interval_ms)})
        return view

    @staticmethod
    def _cell_edges(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """The 12 edges of the parallelepiped spanned by ``a``, ``b``, ``c`` (for drawing a periodic cell)."""
        edges = []
        for u, v, w in ((a, b, c), (b, c, a), (c, a, b)):
            for corner in (np.zeros(3), v, w, v + w):
                edges.append((corner, corner + u))
        return edges

    def _repr_html_(self) -> str:
        import html
        import io

        s = self.summary()
        rows = [
            ("molecule", f"{s['formula']} ({s['atoms']} atoms{', periodic' if s['periodic'] else ''})"),
            ("protocol", f"{s['protocol']}, {s['timestep_fs']:g} fs step"),
            ("frames", f"{s['frames']} over {s['time_ps']:.4g} ps"),
        ]
        if self.n_frames:
            rows.append(("temperature", f"{s['temperature_k']:.1f} ± {s['temperature_std_k']:.1f} K"))
        if self.n_frames >= 2:
            rows.append(("energy drift", f"{s['drift_mev_per_atom_ps']:.4g} meV/atom/ps"))
        if "drift_ratio" in s:
            rows.append(("drift / σ(E_kin)", f"{s['drift_ratio']:.3g}"))
        table = "".join(
            f"<tr><th style='text-align:left;padding-right:1em'>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>"
            for k, v in rows
        )
        figure = ""
        if self.n_frames >= 2:
            buffer = io.StringIO()
            self.plot(figsize=(6.0, 4.5)).savefig(buffer, format="svg")
            svg = buffer.getvalue()
            figure = f"<div style='max-width:600px'>{svg[svg.find('<svg') :]}</div>"
        return (
            "<div class='workbench-trajectory' style='display:flex;gap:1.5em;align-items:flex-start;flex-wrap:wrap'>"
            f"<table><caption style='text-align:left;font-weight:bold'>Trajectory</caption>{table}</table>"
            f"{figure}</div>"
        )

    # -------------------------------------------------------------------------------------------- conversion

    def to_ase(self) -> list:
        """One ASE ``Atoms`` per frame, with the frame's potential energy attached (``atoms.get_potential_energy()``)
        and the cell and ``pbc`` set for periodic runs."""
        from ase import Atoms
        from ase.calculators.singlepoint import SinglePointCalculator

        frames = []
        for k in range(self.n_frames):
            atoms = Atoms(numbers=self.numbers, positions=self.positions[k])
            if self.cell is not None:
                atoms.cell = self.cell
                atoms.pbc = True
            atoms.info["time_ps"] = float(self.time_ps[k])
            atoms.info["temperature_k"] = float(self.temperature[k])
            atoms.calc = SinglePointCalculator(atoms, energy=float(self.potential_energy[k]))
            frames.append(atoms)
        return frames

    def to_mdtraj(self):
        """An ``mdtraj.Trajectory`` (positions in nm, time in ps, unit cell for periodic runs, bonds when known)."""
        try:
            import mdtraj
        except ImportError as exc:
            raise ImportError(
                "Trajectory.to_mdtraj() needs MDTraj, which is not installed: pip install mdtraj"
            ) from exc
        from simulation.reference import element_symbol

        topology = mdtraj.Topology()
        residue = topology.add_residue("MOL", topology.add_chain())
        element = mdtraj.element.Element.getByAtomicNumber
        atoms = [
            topology.add_atom(f"{element_symbol(int(z))}{i + 1}", element(int(z)), residue)
            for i, z in enumerate(self.numbers)
        ]
        for a, b in self.bonds:
            topology.add_bond(atoms[a], atoms[b])
        cell = None if self.cell is None else np.repeat(self.cell[None] / 10.0, self.n_frames, axis=0)
        return mdtraj.Trajectory(self.positions / 10.0, topology, time=self.time_ps, unitcell_vectors=cell)

    # -------------------------------------------------------------------------------------------- files

    def save_npz(self, path: str | os.PathLike) -> Path:
        """Write the arrays (Angstrom, eV, K, ps) to a pickle-free ``.npz``."""
        path = Path(path)
        extra = {} if self.cell is None else {"cell": np.asarray(self.cell)}
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
            bonds=np.asarray(self.bonds, dtype=np.int64).reshape(-1, 2),
            **extra,
        )
        return path

    @classmethod
    def load_npz(cls, path: str | os.PathLike) -> Trajectory:
        """Read a trajectory written by :meth:`save_npz` (no pickles are loaded)."""
        with np.load(Path(path), allow_pickle=False) as data:
            return cls(
                numbers=data["numbers"],
                positions=data["positions"],
                potential_energy=data["potential_energy"],
                kinetic_energy=data["kinetic_energy"],
                temperature=data["temperature"],
                time_ps=data["time_ps"],
                protocol=str(data["protocol"]),
                timestep_fs=float(data["timestep_fs"]),
                cell=data["cell"] if "cell" in data.files else None,
                bonds=tuple(map(tuple, data["bonds"].tolist())) if "bonds" in data.files else (),
            )


def _minimise(simulation: app.Simulation, structure: object, model: object, platform: str, iterations: int) -> None:
    """Local energy minimisation (OpenMM's L-BFGS, at most ``iterations``) of the simulation's positions.

    A quantized potential with 8-bit activations has a piecewise-constant energy (its activations are
    rounded) whose straight-through forces are not its exact gradient, so L-BFGS's line search fails
    within a few dozen evaluations and stops far from a minimum (a 47-atom drug-like molecule kept forces
    of ~500 kJ/mol/nm; ethanol an RMS force of 76 against the tolerance of 10). Such a model is minimised
    on its smooth twin instead: the same packed weights with float activations
    (:meth:`QuantizedPotential.with_activations`), whose forces are the
    exact gradient; the dynamics then run on the model itself.
    """
    smooth = getattr(model, "smooth_twin", lambda: model)()
    if smooth is model:
        simulation.minimizeEnergy(maxIterations=iterations)
        return
    system, _, _ = create_system(structure, smooth)
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName(platform))
    context.setPositions(simulation.context.getState(getPositions=True).getPositions())
    openmm.LocalEnergyMinimizer.minimize(context, 10.0, iterations)
    simulation.context.setPositions(context.getState(getPositions=True).getPositions())


def _integrator(protocol: str, temperature: float, timestep_fs: float, friction_per_ps: float, seed: int):
    if protocol == "NVT":
        integrator = openmm.LangevinMiddleIntegrator(
            temperature * unit.kelvin, friction_per_ps / unit.picosecond, timestep_fs * unit.femtosecond
        )
        integrator.setRandomNumberSeed(seed)
        return integrator
    return openmm.VerletIntegrator(timestep_fs * unit.femtosecond)


def _check_timestep(timestep_fs: float) -> None:
    if not timestep_fs > 0.0:
        raise ValueError(f"timestep_fs must be positive, got {timestep_fs}; 0.5 fs is a safe choice")


def steps_for(ps: float, timestep_fs: float) -> int:
    """The number of ``timestep_fs`` steps in ``ps`` picoseconds (rounded); bad values raise ``ValueError``.

    >>> steps_for(10.0, 0.5)
    20000
    """
    _check_timestep(timestep_fs)
    if not ps >= 0.0:
        raise ValueError(f"ps (simulated time) must be >= 0 picoseconds, got {ps}")
    return int(round(ps * 1000.0 / timestep_fs))


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
    minimise_iterations: int = 500,
    seed: int = 0,
    out_dir: str | os.PathLike | None = None,
    max_temperature_factor: float = 5.0,
    max_force_ev_per_a: float = 50.0,
    platform: str = "Reference",
    progress: bool = False,
    compile: bool | None = None,
) -> Trajectory:
    """Minimise ``molecule`` on ``potential`` then run ``steps`` of NVT (Langevin) or NVE (Verlet) dynamics.

    ``molecule`` is anything :func:`simulation.openmm.to_structure` accepts (an RDKit molecule with 3D
    coordinates, an SDF/PDB path, a SMILES, ``(numbers, positions)``). Velocities start from a Maxwell
    distribution at ``temperature`` (for NVE too). A frame is recorded every ``report_every`` steps.
    ``minimise_iterations`` caps the L-BFGS minimisation before the dynamics (a quantized model with 8-bit
    activations is minimised on its smooth twin, see :func:`_minimise`).

    ``compile`` compiles the potential with ``torch.compile`` (see :mod:`simulation.fast`); the default
    (``None``) compiles for runs of 20,000 steps or more, where the one-off compilation is repaid.
    Bad input (untrained elements, no 3D coordinates, overlapping atoms, NaN positions, a corrupt checkpoint,
    a non-positive timestep or temperature) raises before any dynamics runs.
    """
    protocol = protocol.upper()
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    if steps < 0 or report_every < 1:
        raise ValueError("steps must be >= 0 and report_every >= 1")
    _check_timestep(timestep_fs)
    if not temperature > 0.0:
        raise ValueError(f"temperature must be positive (kelvin), got {temperature}")
    if timestep_fs > 2.0:
        warnings.warn(
            f"timestep {timestep_fs} fs is above 2 fs without constraints on bonds to hydrogen; "
            "expect energy drift or a blow-up (0.5 fs is safe)",
            stacklevel=2,
        )
    if compile is None:
        compile = steps >= 20_000
    structure = to_structure(molecule)
    model = load_potential(potential)
    system, topology, positions = create_system(structure, model, compile=compile)
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
            _minimise(simulation, structure, model, platform, minimise_iterations)
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
    box = topology.getPeriodicBoxVectors()
    cell = None if box is None else np.asarray(box.value_in_unit(unit.angstrom), dtype=np.float64)
    return Trajectory(
        numbers=numbers,
        positions=np.stack([f["positions"] for f in frames]),
        potential_energy=np.array([f["epot"] for f in frames]),
        kinetic_energy=np.array([f["ekin"] for f in frames]),
        temperature=np.array([f["temperature"] for f in frames]),
        time_ps=np.array([f["time_ps"] for f in frames]),
        protocol=protocol,
        timestep_fs=timestep_fs,
        cell=cell,
        bonds=tuple((b.atom1.index, b.atom2.index) for b in topology.bonds()),
    )
