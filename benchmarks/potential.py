"""Potential benchmark: accuracy against GFN2-xTB, MD speed in OpenMM, NVE drift, and the MACE / SevenNet peers.

Writes ``benchmarks/results/potential.json``. Parts (``--parts``, default all), each cached as JSON in ``--work``
so a long part can be run on its own and the results assembled afterwards (``--parts assemble``):

- ``accuracy``: test-split energy and force MAE of the shipped checkpoints (ethanol and aspirin per-molecule
  models; the transferable ``organic`` model on its held-out molecules), computed as ``simulation.train``
  computes its test MAE.
- ``speed``: ns/day of Verlet NVE at 0.5 fs in OpenMM (Reference platform, one thread) for ethanol and aspirin:
  the model's original per-step path (neighbour list + ``energy_and_forces``), the fast path of
  :mod:`simulation.fast` eager and compiled, float64 and float32, and the classical floor (harmonic bonds and
  angles at the embedded geometry, the same integrator and atom count). All in one process, so the ratios hold
  even on a busy machine.
- ``nve``: ``simulation.md.run`` NVE (float64, compiled fast path) from a 300 K start; drift fitted in
  meV/atom/ps and normalised by the kinetic-energy fluctuation (ml-peg convention).
- ``mace`` / ``sevenn``: the peers, run in their own virtualenvs (``make bench-potential`` creates them) through
  ``benchmarks/peers/*.py``.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/potential.py --nve-ps 50
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks._results import write  # noqa: E402

MOLECULES = {"ethanol": "CCO", "aspirin": "CC(=O)Oc1ccccc1C(=O)O"}
PARTS = ("accuracy", "speed", "nve", "mace", "sevenn")
TIMESTEP_FS = 0.5
MACE_PYTHON = ROOT / ".venv-peers" / "bin" / "python"
SEVENN_PYTHON = ROOT / ".venv-peers" / "sevenn" / "bin" / "python"


def _ns_per_day(seconds_per_step: float) -> float:
    return TIMESTEP_FS * 1e-6 * 86400.0 / seconds_per_step


def _save(work: Path, name: str, figures: dict) -> None:
    (work / f"{name}.json").write_text(json.dumps(figures, indent=2) + "\n")


def _load(work: Path, name: str) -> dict | None:
    path = work / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


# ------------------------------------------------------------------------------------------------- accuracy


def accuracy() -> dict:
    from simulation.datasets import LabelledSet
    from simulation.model import EquivariantPotential
    from simulation.train import evaluate

    out = {}
    for name in ("ethanol", "aspirin", "organic"):
        model = EquivariantPotential.from_pretrained(ROOT / "simulation" / "checkpoints" / name)
        test = LabelledSet.load(ROOT / "simulation" / "data" / f"{name}.npz").split_set("test")
        out[name] = {**evaluate(model, test), "parameters": sum(p.numel() for p in model.parameters())}
        if name == "organic":
            out[name]["test_molecules"] = len(set(test.molecule.tolist()))
    return out


# ------------------------------------------------------------------------------------------------- speed


def _structure(smiles: str):
    from simulation.datasets import embed
    from simulation.openmm import to_structure

    mol = embed(smiles, n_conformers=1, seed=0)
    return mol, to_structure(mol)


def _time_steps(system, positions_nm: np.ndarray, steps: int, warmup: int) -> dict:
    import openmm

    integrator = openmm.VerletIntegrator(TIMESTEP_FS * openmm.unit.femtosecond)
    context = openmm.Context(system, integrator, openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(positions_nm)
    context.setVelocitiesToTemperature(300.0, 1)
    start = time.perf_counter()
    integrator.step(warmup)
    warm = time.perf_counter() - start
    start, cpu = time.perf_counter(), time.process_time()
    integrator.step(steps)
    seconds = (time.perf_counter() - start) / steps
    cpu_seconds = (time.process_time() - cpu) / steps
    return {
        "ms_per_step": 1000.0 * seconds,
        "ns_per_day": _ns_per_day(seconds),
        # CPU time of this process per step: what one otherwise idle core would give, on a shared machine.
        "cpu_ms_per_step": 1000.0 * cpu_seconds,
        "ns_per_day_cpu": _ns_per_day(cpu_seconds),
        "steps": steps,
        "warmup_s": warm,
    }


def _ml_system(structure, force):
    import openmm
    import openmm.app as app

    system = openmm.System()
    for z in structure.numbers:
        system.addParticle(app.Element.getByAtomicNumber(int(z)).mass)
    system.addForce(force)
    return system


def _original_force(model, numbers):
    """The per-step path before :mod:`simulation.fast`: neighbour list + ``energy_and_forces`` + unit-wrapped I/O."""
    import openmm
    import torch

    from simulation.model import neighbour_list
    from simulation.openmm import EV_TO_KJ_PER_MOL

    dtype = next(model.parameters()).dtype
    z = torch.as_tensor(numbers, dtype=torch.long)
    batch = torch.zeros(len(numbers), dtype=torch.long)

    def compute(state):
        x_nm = state.getPositions(asNumpy=True).value_in_unit(openmm.unit.nanometer)
        x = torch.as_tensor(np.asarray(x_nm) * 10.0, dtype=dtype)
        neighbours = neighbour_list(x, model.config.cutoff, batch)
        energy, forces = model.energy_and_forces(z, x, batch, None, 1, neighbours=neighbours)
        f = forces.detach().numpy().astype(np.float64) * (EV_TO_KJ_PER_MOL * 10.0)
        return float(energy.detach()[0]) * EV_TO_KJ_PER_MOL, f

    return openmm.PythonForce(compute)


def classical_system(mol, structure):
    """Harmonic bonds and angles at the embedded (MMFF94-relaxed) geometry: the OpenMM engine floor."""
    import openmm
    import openmm.app as app

    system = openmm.System()
    for z in structure.numbers:
        system.addParticle(app.Element.getByAtomicNumber(int(z)).mass)
    x = structure.positions / 10.0  # nm
    bonds = openmm.HarmonicBondForce()
    neighbours: dict[int, list[int]] = {k: [] for k in range(len(structure.numbers))}
    for a, b in structure.bonds:
        bonds.addBond(a, b, float(np.linalg.norm(x[a] - x[b])), 3.0e5)  # kJ/mol/nm^2
        neighbours[a].append(b)
        neighbours[b].append(a)
    angles = openmm.HarmonicAngleForce()
    for centre, around in neighbours.items():
        for p in range(len(around)):
            for q in range(p + 1, len(around)):
                a, b = around[p], around[q]
                u, v = x[a] - x[centre], x[b] - x[centre]
                theta = float(np.arccos(np.clip(u @ v / np.linalg.norm(u) / np.linalg.norm(v), -1.0, 1.0)))
                angles.addAngle(a, centre, b, theta, 400.0)  # kJ/mol/rad^2
    system.addForce(bonds)
    system.addForce(angles)
    return system, {"bonds": bonds.getNumBonds(), "angles": angles.getNumAngles()}


def speed(molecules: list[str], steps_eager: int, steps_fast: int, compile_dtypes: list[str]) -> dict:
    import torch

    from simulation.model import EquivariantPotential
    from simulation.openmm import create_force

    out: dict = {}
    for name in molecules:
        mol, structure = _structure(MOLECULES[name])
        x_nm = structure.positions / 10.0
        rows: dict = {"atoms": len(structure.numbers)}
        system, counts = classical_system(mol, structure)
        rows["classical"] = {**_time_steps(system, x_nm, 20000, 500), **counts}
        for dtype_name in ("float64", "float32"):
            dtype = getattr(torch, dtype_name)
            model = EquivariantPotential.from_pretrained(ROOT / "simulation" / "checkpoints" / name, dtype=dtype)
            system = _ml_system(structure, _original_force(model, structure.numbers))
            rows[f"original_{dtype_name}"] = _time_steps(system, x_nm, steps_eager, 5)
            system = _ml_system(structure, create_force(model, structure.numbers))
            rows[f"fast_eager_{dtype_name}"] = _time_steps(system, x_nm, steps_eager, 5)
            if dtype_name in compile_dtypes:
                start = time.perf_counter()
                system = _ml_system(structure, create_force(model, structure.numbers, compile=True))
                rows[f"fast_compiled_{dtype_name}"] = _time_steps(system, x_nm, steps_fast, 5)
                rows[f"fast_compiled_{dtype_name}"]["compile_and_warmup_s"] = time.perf_counter() - start
            print(name, dtype_name, json.dumps(rows), flush=True)
        out[name] = rows
    return out


# ------------------------------------------------------------------------------------------------- NVE


def nve(name: str, picoseconds: float, report_every: int, work: Path, max_minutes: float) -> dict:
    """Verlet NVE on the compiled float64 fast path after minimisation and a 300 K Maxwell start.

    Energies are appended to ``work/nve_<name>.jsonl`` as the run goes, and the run stops early (recording the
    length actually reached) when ``max_minutes`` of wall-clock time are spent.
    """
    import openmm
    from openmm import unit

    from simulation.analysis_numpy import energy_drift
    from simulation.openmm import EV_TO_KJ_PER_MOL, create_system

    steps = int(round(picoseconds * 1000.0 / TIMESTEP_FS))
    start = time.perf_counter()
    system, _, positions = create_system(MOLECULES[name], name, compile=True)
    integrator = openmm.VerletIntegrator(TIMESTEP_FS * unit.femtosecond)
    context = openmm.Context(system, integrator, openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(positions)
    openmm.LocalEnergyMinimizer.minimize(context, 1.0, 500)
    context.setVelocitiesToTemperature(300.0 * unit.kelvin, 0)
    setup = time.perf_counter() - start
    n_atoms = system.getNumParticles()
    rows = []
    log = work / f"nve_{name}.jsonl"
    log.write_text("")
    done, t_md = 0, time.perf_counter()
    while True:
        state = context.getState(getEnergy=True)
        rows.append(
            (
                state.getTime().value_in_unit(unit.picosecond),
                state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole) / EV_TO_KJ_PER_MOL,
                state.getKineticEnergy().value_in_unit(unit.kilojoule_per_mole) / EV_TO_KJ_PER_MOL,
            )
        )
        if len(rows) % 20 == 1:
            with log.open("a") as fh:
                fh.write(json.dumps({"step": done, "time_ps": rows[-1][0], "epot": rows[-1][1], "ekin": rows[-1][2]}))
                fh.write("\n")
        if done >= steps or time.perf_counter() - start > 60.0 * max_minutes:
            break
        integrator.step(report_every)
        done += report_every
    md_seconds = time.perf_counter() - t_md
    t, epot, ekin = (np.array(c) for c in zip(*rows, strict=True))
    drift = energy_drift(t, epot + ekin, ekin, n_atoms)
    return {
        "steps": done,
        "requested_steps": steps,
        "length_ps": float(t[-1] - t[0]),
        "complete": done >= steps,
        "timestep_fs": TIMESTEP_FS,
        "frames": len(t),
        "dtype": "float64",
        "path": "simulation.fast compiled (torch.compile, all-pairs graph), Verlet, Reference platform",
        "drift_mev_per_atom_ps": float(drift["drift_mev_per_atom_ps"]),
        "drift_ratio_over_kinetic_std": float(drift["drift_ratio"]),
        "kinetic_energy_std_ev": float(drift["kinetic_energy_std_ev"]),
        "total_energy_std_mev_per_atom": 1000.0 * float(np.std(epot + ekin)) / n_atoms,
        "mean_temperature_k": float(np.mean(2.0 * ekin / (3 * n_atoms * 8.617333262e-5))),
        "setup_and_compile_s": setup,
        "md_wall_s": md_seconds,
        "ms_per_step_in_run": 1000.0 * md_seconds / max(done, 1),
    }


# ------------------------------------------------------------------------------------------------- peers


def mace(name: str, work: Path, minutes: float) -> dict:
    if not MACE_PYTHON.exists():
        raise SystemExit(f"{MACE_PYTHON} not found; create the peers' virtualenv with `make bench-potential`")
    out = work / f"mace_{name}_raw.json"
    cmd = [str(MACE_PYTHON), str(ROOT / "benchmarks" / "peers" / "mace_peer.py")]
    cmd += ["--dataset", str(ROOT / "simulation" / "data" / f"{name}.npz"), "--minutes", str(minutes)]
    subprocess.run([*cmd, "--json", str(out)], check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    return json.loads(out.read_text())


def sevenn(name: str, work: Path) -> dict:
    if not SEVENN_PYTHON.exists():
        raise SystemExit(f"{SEVENN_PYTHON} not found; create the peers' virtualenv with `make bench-potential`")
    _, structure = _structure(MOLECULES[name])
    geometry = work / f"{name}_geometry.json"
    geometry.write_text(json.dumps({"numbers": structure.numbers.tolist(), "positions": structure.positions.tolist()}))
    out = work / f"sevenn_{name}_raw.json"
    cmd = [str(SEVENN_PYTHON), str(ROOT / "benchmarks" / "peers" / "sevenn_peer.py")]
    subprocess.run([*cmd, "--structure", str(geometry), "--json", str(out)], check=True)
    return json.loads(out.read_text())


# ------------------------------------------------------------------------------------------------- report


def assemble(work: Path) -> dict:
    acc, spd = _load(work, "accuracy") or {}, _load(work, "speed") or {}
    figures: dict = {
        key: {}
        for key in (
            "force_mae_mev_per_a",
            "energy_mae_mev",
            "mace_force_mae_mev_per_a",
            "mace_energy_mae_mev",
            "nve_drift_mev_per_atom_ps",
            "nve_drift_ratio",
            "nve_length_ps",
            "ns_per_day",
            "ns_per_day_eager",
            "ns_per_day_original",
            "mace_ns_per_day",
            "sevenn_ns_per_day",
            "classical_ns_per_day",
            "ns_per_day_cpu",
            "classical_ns_per_day_cpu",
        )
    }
    for name, row in acc.items():
        figures["force_mae_mev_per_a"][name] = row["force_mae_mev_per_a"]
        figures["energy_mae_mev"][name] = row["energy_mae_mev"]
    for name, row in spd.items():
        best = max((k for k in row if k.startswith("fast_compiled_")), key=lambda k: row[k]["ns_per_day"], default=None)
        figures["ns_per_day"][name] = row[best]["ns_per_day"] if best else row["fast_eager_float64"]["ns_per_day"]
        figures["ns_per_day_eager"][name] = row["fast_eager_float64"]["ns_per_day"]
        figures["ns_per_day_original"][name] = row["original_float64"]["ns_per_day"]
        figures["classical_ns_per_day"][name] = row["classical"]["ns_per_day"]
        if best and "ns_per_day_cpu" in row[best]:
            figures["ns_per_day_cpu"][name] = row[best]["ns_per_day_cpu"]
            figures["classical_ns_per_day_cpu"][name] = row["classical"]["ns_per_day_cpu"]
    details: dict = {"accuracy": acc, "speed": spd, "nve": {}, "mace": {}, "sevenn": {}}
    for name in MOLECULES:
        run = _load(work, f"nve_{name}")
        if run:
            figures["nve_drift_mev_per_atom_ps"][name] = run["drift_mev_per_atom_ps"]
            figures["nve_drift_ratio"][name] = run["drift_ratio_over_kinetic_std"]
            figures["nve_length_ps"][name] = run["length_ps"]
            details["nve"][name] = run
        peer = _load(work, f"mace_{name}")
        if peer:
            figures["mace_force_mae_mev_per_a"][name] = peer["test"]["force_mae_mev_per_a"]
            figures["mace_energy_mae_mev"][name] = peer["test"]["energy_mae_mev"]
            figures["mace_ns_per_day"][name] = peer["speed"]["ns_per_day"]
            details["mace"][name] = {k: v for k, v in peer.items() if k != "log"}
        seven = _load(work, f"sevenn_{name}")
        if seven:
            figures["sevenn_ns_per_day"][name] = seven["ns_per_day"]
            details["sevenn"][name] = seven
    for name in acc:
        log = ROOT / "simulation" / "checkpoints" / name / "train_log.jsonl"
        last = json.loads(log.read_text().strip().splitlines()[-1]) if log.exists() else {}
        details["accuracy"][name]["training"] = {k: last.get(k) for k in ("epochs", "minutes", "stop_reason")}
    figures["details"] = details
    figures["units"] = {"energy": "meV", "force": "meV/Angstrom", "drift": "meV/atom/ps", "speed": "ns/day"}
    figures["notes"] = (
        "ns_per_day: our potential through simulation.fast (compiled, best dtype), Verlet 0.5 fs, OpenMM "
        "Reference platform, one thread; ns_per_day_eager: the fast path without compilation (float64); "
        "ns_per_day_original: the per-step path before simulation.fast; classical: harmonic bonds + angles. "
        "MACE: randomly initialised ScaleShiftMACE trained on the same train split for a wall-clock budget, "
        "timed eager in a PythonForce with an all-pairs graph. SevenNet-0: speed only, through openmm-ml's "
        "'ase' potential. Wall-clock figures come from a shared two-core machine and are noisy; ratios within "
        "the speed part were measured in one process. *_cpu: from the process CPU time per step, i.e. what one "
        "otherwise idle core gives."
    )
    return figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--parts", default="all", help=f"comma list of {', '.join(PARTS)}, 'assemble' or 'all'")
    parser.add_argument("--molecules", default="ethanol,aspirin")
    parser.add_argument("--work", default=str(ROOT / "build" / "bench_potential"))
    parser.add_argument("--nve-ps", type=float, default=50.0)
    parser.add_argument("--report-every", type=int, default=20)
    parser.add_argument("--nve-max-minutes", type=float, default=240.0, help="wall-clock cap per NVE run")
    parser.add_argument("--mace-minutes", type=float, default=15.0)
    parser.add_argument("--steps-eager", type=int, default=200)
    parser.add_argument("--steps-fast", type=int, default=2000)
    parser.add_argument("--compile-dtypes", default="float64,float32")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    parts = PARTS if args.parts == "all" else tuple(p for p in args.parts.split(",") if p)
    molecules = [m for m in args.molecules.split(",") if m]
    if "accuracy" in parts:
        _save(work, "accuracy", accuracy())
    if "speed" in parts:
        rows = speed(molecules, args.steps_eager, args.steps_fast, args.compile_dtypes.split(","))
        _save(work, "speed", {**(_load(work, "speed") or {}), **rows})  # one molecule may be re-measured alone
    for name in molecules:
        if "nve" in parts:
            _save(work, f"nve_{name}", nve(name, args.nve_ps, args.report_every, work, args.nve_max_minutes))
        if "mace" in parts:
            _save(work, f"mace_{name}", mace(name, work, args.mace_minutes))
        if "sevenn" in parts:
            _save(work, f"sevenn_{name}", sevenn(name, work))
    if args.parts in ("all", "assemble") or "assemble" in parts:
        path = write("potential", assemble(work))
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
