"""GAQ quantization benchmark: accuracy, equivariance (LEE), memory, speed and MD stability, in one run.

Rows (ethanol, the same data for all): FP32 / naive W8A8 / naive W4A8 / GAQ W8A8 / GAQ W4A8, plus the ablations
(GAQ W4A8 without the QAT schedules; cosine vs dot-product attention, each fine-tuned and quantized the same
way) and GAQ W4A8 without QAT (calibration only). W8A8 rows are post-training (calibrated) quantization; the
W4A8 rows come from QAT with the same number of steps (``make quantize-potential`` for the shipped ones; the
ablation folders in ``build/quantize`` come from ``python -m simulation.quantize.qat`` with the flags in the
JSON). Aspirin and organic add FP32 vs GAQ W4A8 accuracy rows. MD (ethanol, OpenMM, compiled potentials) runs in
background processes alongside: 50 ps NVE for FP32, W4A8 and W4A8 with float activations (three initial-velocity
seeds each; the top-level drifts are their mean absolute values), and 1 ns of NVT
for W4A8; a run that hits its wall-clock cap reports the length it reached.

    python benchmarks/quantization.py [--configs 100 --rotations 100 --batched 1024 --nve-ps 50 --nvt-ps 1000]

``--part sites`` is a separate diagnostic (``quantization_sites.json``): the W4A8 NVE runs again with the
activation rounding of one family of layers off at a time, to see which rounding pumps energy in.
"""

from __future__ import annotations

import argparse
import concurrent.futures as futures
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._results import RESULTS, git_commit, write  # noqa: E402
from simulation.datasets import LabelledSet  # noqa: E402
from simulation.model import WEIGHTS_NAME, EquivariantPotential, neighbour_list  # noqa: E402
from simulation.quantize.conservation import path_work_mismatch  # noqa: E402
from simulation.quantize.fakequant import QuantSpec, quantize  # noqa: E402
from simulation.quantize.lee import lie_derivative_error, local_equivariance_error  # noqa: E402
from simulation.quantize.pack import save_packed, state_dict_bytes  # noqa: E402
from simulation.quantize.potential import KERNELS, QuantizedPotential  # noqa: E402
from simulation.train import evaluate  # noqa: E402

CKPT = ROOT / "simulation" / "checkpoints"
BUILD = ROOT / "build" / "quantize"
DATA = ROOT / "simulation" / "data"


# ------------------------------------------------------------------------------------------------ helpers
def _status(key: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return 0


def _batch(data: LabelledSet, frames: np.ndarray):
    atoms = np.concatenate([np.arange(data.offsets[f], data.offsets[f + 1]) for f in frames])
    z = torch.from_numpy(data.numbers[atoms]).long()
    x = torch.from_numpy(data.positions[atoms]).float()
    b = torch.from_numpy(np.repeat(np.arange(len(frames)), data.n_atoms[frames])).long()
    return z, x, b


def _ef_seconds(model, z, x, b, repeats: int) -> float:
    neighbours = neighbour_list(x, model.config.cutoff, b)
    n = int(b.max()) + 1
    model.energy_and_forces(z, x, b, n_graphs=n, neighbours=neighbours)  # warm-up (and weight unpacking)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        model.energy_and_forces(z, x, b, n_graphs=n, neighbours=neighbours)
        best = min(best, time.perf_counter() - t0)
    return best


def _weight_bytes(model) -> int:
    return state_dict_bytes(dict(model.state_dict()))


def _packed(fq, folder: Path) -> QuantizedPotential:
    save_packed(fq, folder)
    return QuantizedPotential.from_pretrained(folder)


def _path_conservation(model, z, x) -> float:
    """|E(b) - E(a) + work of F| / |E(b) - E(a)| along a 0.3 Angstrom straight path (float64)."""
    model = model.double()
    z, x = torch.as_tensor(z), torch.as_tensor(x, dtype=torch.float64)
    d = torch.as_tensor(np.random.default_rng(0).normal(size=tuple(x.shape)))
    gap, change = path_work_mismatch(lambda p: model.energy_and_forces(z, p), x, 0.3 * d / d.norm(), points=61)
    model.float()
    return gap / max(change, 1e-12)


def _compare_vector_quantizers(model: EquivariantPotential, test: LabelledSet, frames: int = 20) -> dict:
    """8-bit MDDQ with the direction grid in local frames / on fixed axes, the Fibonacci sphere codebook (12-bit
    directions) and the naive per-component quantizer, on the final-layer vector features of test frames:
    relative error, rotation error and time per call."""
    from simulation.model import _edge_vectors
    from simulation.quantize.graph import local_frames
    from simulation.quantize.lee import random_rotations
    from simulation.quantize.mddq import MDDQ, NaiveVectorQuantizer

    def frames_of(pos):
        batch = torch.zeros(len(pos), dtype=torch.long)
        i, j, images = neighbour_list(pos, model.config.cutoff, batch)
        vec = _edge_vectors(pos, i, j, images, batch, None)
        d = vec.norm(dim=-1)
        return local_frames(vec / d[:, None], d, i, len(pos))

    samples = []
    with torch.no_grad():
        for k in range(frames):
            z, x, _, _ = test.frame(k)
            z, x = torch.as_tensor(z), torch.as_tensor(x, dtype=torch.float32)
            _, v = model.features(z, x)
            samples.append((x, v.detach().transpose(1, 2).contiguous()))  # (atoms, 3, F)
    features = model.config.features
    quantizers = {
        "mddq_local_frames": MDDQ(features, 8),
        "mddq_global_axes": MDDQ(features, 8, use_frames=False),
        "mddq_sphere_codebook_12bit": MDDQ(features, 8, codebook="sphere", use_frames=False),
        "naive_per_component": NaiveVectorQuantizer(features, 8),
    }
    allv = torch.cat([v for _, v in samples])
    out = {}
    rotations = random_rotations(5, seed=3, dtype=torch.float32)
    for name, q in quantizers.items():
        q.calibrate(allv)
        q.eval()
        rel, rot, seconds = [], [], 0.0
        with torch.no_grad():
            for x, v in samples:
                fr = frames_of(x)
                t0 = time.perf_counter()
                qv = q(v, fr)
                seconds += time.perf_counter() - t0
                norm = v.norm(dim=1).clamp_min(1e-6)
                rel.append(float(((qv - v).norm(dim=1) / norm).mean()))
                for r in rotations:
                    vr = torch.einsum("ab,nbf->naf", r, v)
                    diff = q(vr, frames_of(x @ r.T)) - torch.einsum("ab,nbf->naf", r, qv)
                    rot.append(float((diff.norm(dim=1) / norm).mean()))
        out[name] = {
            "relative_error": float(np.mean(rel)),
            "rotation_error_relative": float(np.mean(rot)),
            "ms_per_call": 1000.0 * seconds / len(samples),
        }
    return out


_NVE_KINDS = ("fp32", "gaq_w4a8", "gaq_w4a8_float_act")  # the models of the NVE runs (see _md_job)

# Where the W4A8 model rounds activations, grouped by layer family: the NVE runs of ``--part sites`` keep one
# family in float at a time, to find which rounding makes the straight-through forces non-conservative.
_ROUNDING_SITES = {
    "vectors": ("vector:",),  # the MDDQ vector-feature quantizers
    "messages": (".query", ".key", ".key_radial", ".value.0", ".value.2", ".value_radial"),
    "updates": (".gate.0", ".gate.2"),
    "readout": ("readout.",),
}
_ROUNDING_SITES["all_scalars"] = _ROUNDING_SITES["messages"] + _ROUNDING_SITES["updates"] + _ROUNDING_SITES["readout"]


class _PartlyRoundedPotential(QuantizedPotential):
    """The packed W4A8 model with the activation rounding of some layer families (``_ROUNDING_SITES``) off."""

    float_sites: tuple[str, ...] = ()

    def rounds_activations(self, site: str) -> bool:
        return not any(pattern in site for pattern in self.float_sites) and super().rounds_activations(site)


def _partly_rounded(family: str) -> QuantizedPotential:
    model = QuantizedPotential.from_pretrained(CKPT / "ethanol-w4a8", torch.float64)
    model.__class__ = _PartlyRoundedPotential
    model.float_sites = _ROUNDING_SITES[family]
    return model


_FOLDERS = {
    "naive_w4a8": BUILD / "ethanol-naive-w4a8",
    "gaq_w4a8": CKPT / "ethanol-w4a8",
    "gaq_w4a8_no_schedule": BUILD / "ethanol-w4a8-noschedule",
    "ablation_cosine_fp32": BUILD / "ethanol-cosine-w4a8" / "float",
    "ablation_cosine_w4a8": BUILD / "ethanol-cosine-w4a8",
    "ablation_dot_fp32": BUILD / "ethanol-dot-w4a8" / "float",
    "ablation_dot_w4a8": BUILD / "ethanol-dot-w4a8",
}
_PTQ = {
    "naive_w8a8": QuantSpec(8, 8, "naive"),
    "gaq_w8a8": QuantSpec(8, 8, "mddq"),
    "gaq_w4a8_ptq": QuantSpec(4, 8, "mddq"),
}


def _build(name: str, train: LabelledSet) -> tuple[object, str]:
    """The ethanol model of row ``name`` and where it comes from."""
    if name == "fp32":
        return EquivariantPotential.from_pretrained(CKPT / "ethanol"), "simulation/checkpoints/ethanol"
    if name in _PTQ:
        fp32 = EquivariantPotential.from_pretrained(CKPT / "ethanol")
        tmp = Path(tempfile.mkdtemp(prefix="quant-bench-"))
        scale = _PTQ[name].activation_scale
        source = f"post-training quantization (no QAT, per-{scale} activation steps), calibrated on 8 x 32 frames"
        return _packed(quantize(fp32, _PTQ[name], train), tmp / name), source
    if name == "gaq_w4a8_global_grid":
        model = QuantizedPotential.from_pretrained(CKPT / "ethanol-w4a8")
        for q in model.vector_q.values():
            q.use_frames = False
        return model, "the shipped GAQ W4A8 weights, direction grid on the fixed x, y, z axes"
    folder = _FOLDERS[name]
    model = (
        EquivariantPotential.from_pretrained(folder)
        if name.endswith("_fp32")
        else QuantizedPotential.from_pretrained(folder)
    )
    source = str(folder.relative_to(ROOT))
    log = (folder.parent if name.endswith("_fp32") else folder) / "qat_log.jsonl"
    qat = json.loads((folder / "config.json").read_text()).get("quantization", {}).get("qat", {})
    if not log.exists() and "steps" in qat:  # the packed config keeps the QAT summary too
        source += f" (QAT {qat['steps']} steps)"
    if log.exists():
        records = [json.loads(line) for line in log.read_text().splitlines()]
        tests = [r for r in records if r.get("event") == "test"]
        floats = [r for r in records if r.get("event") == "float_test"]
        if name.endswith("_fp32") and floats:
            source += f" (float fine-tuning {floats[-1]['steps']} steps)"
        elif tests:
            source += f" (QAT {tests[-1]['steps']} steps)"
    return model, source


def _evaluate_row(name: str, settings: dict) -> dict:
    """Accuracy, LEE, bytes, latency and path conservation of one ethanol row (runs in a worker process)."""
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    data = LabelledSet.load(DATA / "ethanol.npz")
    train, test = data.split_set("train"), data.split_set("test")
    model, source = _build(name, train)
    rng = np.random.default_rng(0)
    lee_frames = rng.choice(test.n_frames, size=min(settings["configs"], test.n_frames), replace=False)
    numbers = test.frame(int(lee_frames[0]))[0]
    lee_configs = [test.frame(int(f))[1] for f in lee_frames]
    z1, x1 = torch.as_tensor(numbers).long(), torch.as_tensor(lee_configs[0]).float()
    metrics = evaluate(model, test)
    main_row = name in ("fp32", "naive_w4a8", "gaq_w4a8")
    configs = lee_configs if main_row else lee_configs[: settings["ablation_configs"]]
    lee = local_equivariance_error(model, numbers, configs, n_rotations=settings["rotations"], seed=1)
    row = {
        "source": source,
        "energy_mae_mev": metrics["energy_mae_mev"],
        "force_mae_mev_per_a": metrics["force_mae_mev_per_a"],
        "lee_mev_per_a": lee["lee_mev_per_a"],
        "lee_configs_x_rotations": f"{lee['n_configs']} x {lee['n_rotations']}",
        "lie_derivative_mev_per_a_per_rad": lie_derivative_error(model, numbers, lee_configs[:5]),
        "weight_bytes": _weight_bytes(model),
        "single_molecule_ef_ms": 1000.0 * _ef_seconds(model, z1, x1, torch.zeros(len(z1), dtype=torch.long), 20),
        "_force_scale": lee["force_scale_mev_per_a"],
    }
    if isinstance(model, QuantizedPotential) or name == "fp32":
        row["energy_path_conservation_rel"] = _path_conservation(model, numbers, lee_configs[0])
    print(name, json.dumps(row), f"({time.perf_counter() - t0:.0f} s)", flush=True)
    return row


def _peak_memory(name: str, configurations: int) -> dict:
    """Peak resident memory of one batched E+F call on aspirin in a fresh process (bytes above the loaded model)."""
    torch.set_num_threads(1)
    test = LabelledSet.load(DATA / "aspirin.npz").split_set("test")
    z, x, b = _batch(test, np.arange(configurations) % test.n_frames)
    if name == "fp32":
        model = EquivariantPotential.from_pretrained(CKPT / "aspirin")
    else:
        model = QuantizedPotential.from_pretrained(CKPT / "aspirin-w4a8")
    base = _status("VmRSS")
    _ef_seconds(model, z, x, b, 0)
    return {"peak_rss_above_loaded_bytes": _status("VmHWM") - base, "configurations": configurations}


# ------------------------------------------------------------------------------------------------ MD
def _md_job(
    kind: str,
    protocol: str,
    ps: float,
    timestep_fs: float,
    max_minutes: float,
    hydrogen_mass: float | None = None,
    seed: int = 0,
) -> dict:
    """Ethanol MD in OpenMM (Reference platform, compiled potential) for ``ps`` picoseconds or ``max_minutes`` of
    wall clock, whichever ends first; energies every 20 steps, bond lengths every 400. ``hydrogen_mass`` (amu)
    repartitions mass from each heavy atom to its hydrogens (total mass and configurational ensemble unchanged),
    which slows the X-H vibrations so a 2 fs step is stable without constraints.

    ``kind``: ``fp32`` (the float checkpoint), ``gaq_w4a8`` (the packed W4A8 model as shipped, 8-bit activations)
    or ``gaq_w4a8_float_act`` (the same packed int4 weights with activation rounding off: a smooth energy), or
    ``gaq_w4a8_float:<family>`` (rounding off only in that family of ``_ROUNDING_SITES``).
    """
    torch.set_num_threads(1)
    import openmm
    import openmm.app as app
    from openmm import unit
    from scipy import stats

    from simulation.openmm import EV_TO_KJ_PER_MOL, create_system, to_structure

    potential: object = {"fp32": "workbench-ethanol", "gaq_w4a8": "workbench-ethanol-w4a8"}.get(kind)
    if kind == "gaq_w4a8_float_act":
        potential = QuantizedPotential.from_pretrained(CKPT / "ethanol-w4a8", torch.float64, activations="float")
    elif kind.startswith("gaq_w4a8_float:"):
        potential = _partly_rounded(kind.split(":", 1)[1])
    structure = to_structure("CCO")
    t_compile = time.perf_counter()
    system, topology, positions = create_system(structure, potential, compile=True)
    if hydrogen_mass is not None:
        for a, b in structure.bonds:
            h, heavy = (a, b) if structure.numbers[a] == 1 else (b, a)
            if structure.numbers[h] != 1 or structure.numbers[heavy] == 1:
                continue
            extra = hydrogen_mass * unit.amu - system.getParticleMass(h)
            system.setParticleMass(h, hydrogen_mass * unit.amu)
            system.setParticleMass(heavy, system.getParticleMass(heavy) - extra)
    if protocol == "NVE":
        integrator = openmm.VerletIntegrator(timestep_fs * unit.femtosecond)
    else:
        integrator = openmm.LangevinMiddleIntegrator(
            300 * unit.kelvin, 1.0 / unit.picosecond, timestep_fs * unit.femtosecond
        )
        integrator.setRandomNumberSeed(seed)
    sim = app.Simulation(topology, system, integrator, openmm.Platform.getPlatformByName("Reference"))
    sim.context.setPositions(positions)
    sim.minimizeEnergy(maxIterations=500)  # also compiles the potential
    sim.context.setVelocitiesToTemperature(300 * unit.kelvin, seed)
    sim.step(20)
    compile_seconds = time.perf_counter() - t_compile
    n = len(structure.numbers)
    dof = 3 * n  # no constraints, no centre-of-mass motion remover
    kb = 0.00831446261815324  # kJ/mol/K
    times, pot, kin, max_bond = [], [], [], 0.0
    bonds = np.array(structure.bonds)
    total_steps = int(round(ps * 1000.0 / timestep_fs))
    t0 = time.perf_counter()
    steps = 0
    while steps < total_steps and time.perf_counter() - t0 < max_minutes * 60.0:
        sim.step(20)
        steps += 20
        state = sim.context.getState(getEnergy=True, getPositions=(steps % 400 == 0))
        times.append(steps * timestep_fs * 1e-3)
        pot.append(state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole))
        kin.append(state.getKineticEnergy().value_in_unit(unit.kilojoule_per_mole))
        if steps % 400 == 0:
            xyz = state.getPositions(asNumpy=True).value_in_unit(unit.angstrom)
            max_bond = max(max_bond, float(np.linalg.norm(xyz[bonds[:, 0]] - xyz[bonds[:, 1]], axis=1).max()))
        if not np.isfinite(pot[-1]) or 2 * kin[-1] / (dof * kb) > 3000:
            break
    wall = time.perf_counter() - t0
    total = (np.array(pot) + np.array(kin)) / EV_TO_KJ_PER_MOL  # eV
    t = np.array(times)
    temps = 2 * np.array(kin) / (dof * kb)
    burn = len(temps) // 10
    result = {
        "model": kind,
        "protocol": protocol,
        "simulated_ps": float(t[-1]) if len(t) else 0.0,
        "target_ps": ps,
        "steps": steps,
        "timestep_fs": timestep_fs,
        "hydrogen_mass_amu": hydrogen_mass,
        "compile_and_minimise_seconds": round(compile_seconds, 1),
        "wall_seconds": round(wall, 1),
        "ms_per_step": 1000.0 * wall / max(steps, 1),
        "ns_per_day": float(steps * timestep_fs * 1e-6 / (wall / 86400.0)) if wall > 0 else float("nan"),
        "drift_mev_per_atom_per_ps": float(1000.0 * np.polyfit(t, total, 1)[0] / n) if len(t) > 2 else float("nan"),
        "total_energy_std_mev_per_atom": float(1000.0 * total.std() / n) if len(total) else float("nan"),
        "total_energy_span_mev_per_atom": float(1000.0 * np.ptp(total) / n) if len(total) else float("nan"),
        "temperature_mean_k": float(temps[burn:].mean()) if len(temps) else float("nan"),
        "temperature_std_k": float(temps[burn:].std()) if len(temps) else float("nan"),
        "max_bond_length_a": max_bond,
        "bonds_intact": bool(max_bond < 2.0),
    }
    if protocol == "NVT" and len(temps) > 10:
        # Canonical kinetic energy: Gamma(dof / 2, kT); compare the sampled kinetic energies (after burn-in).
        kt = kb * 300.0
        ks = stats.kstest(np.array(kin)[burn:], stats.gamma(dof / 2.0, scale=kt).cdf)
        result.update(
            {
                "temperature_std_expected_k": float(300.0 * np.sqrt(2.0 / dof)),
                "kinetic_energy_ks_statistic_vs_canonical": float(ks.statistic),
                "kinetic_energy_mean_over_canonical": float(np.mean(np.array(kin)[burn:]) / (dof / 2.0 * kt)),
            }
        )
    return result


# ------------------------------------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--configs", type=int, default=100, help="test configurations for LEE")
    parser.add_argument("--rotations", type=int, default=100)
    parser.add_argument("--ablation-configs", type=int, default=20, help="LEE configurations for the other rows")
    parser.add_argument("--batched", type=int, default=1024, help="configurations per batched E+F call")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--nve-ps", type=float, default=50.0, help="NVE length per model (0.5 fs steps)")
    parser.add_argument("--nvt-ps", type=float, default=1000.0, help="NVT length, W4A8 (2 fs steps, H mass 4 amu)")
    parser.add_argument("--nve-seeds", type=int, default=3, help="NVE runs per model (initial-velocity seeds)")
    parser.add_argument("--md-max-minutes", type=float, default=150.0, help="wall-clock cap per MD run")
    parser.add_argument("--md-workers", type=int, default=2, help="0: no MD")
    parser.add_argument("--row-workers", type=int, default=3, help="processes evaluating the ethanol rows")
    parser.add_argument("--markdown-only", action="store_true", help="re-render quantization.md from the JSON")
    parser.add_argument(
        "--part",
        choices=("all", "md", "static", "merge", "speed", "sites"),
        default="all",
        help="md: only the MD runs (-> quantization_md.json); static: everything else, MD read from that file; "
        "merge: put that file's MD into quantization.json; speed: re-measure the batched speed into it; "
        "sites: NVE of W4A8 with the rounding of one layer family off at a time (-> quantization_sites.json)",
    )
    args = parser.parse_args(argv)
    if args.part == "sites":
        return _site_runs(args)
    if args.part in ("merge", "speed"):
        figures = json.loads((RESULTS / "quantization.json").read_text())
        figures.update(_saved_md())
        if args.part == "speed":
            torch.set_num_threads(1)
            speed = _batched_speed(args.batched, args.repeats)
            speed["matmul_seconds_21504x64x192"] = figures["speed"].get("matmul_seconds_21504x64x192")
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())
            speed["source"] = f"python benchmarks/quantization.py --part speed at {git_commit()}, {stamp}"
            figures["speed"] = speed
            figures["speed_ratio_w4a8_vs_fp32"] = speed["kernels"]["dequant"]["ratio_vs_fp32"]
        (RESULTS / "quantization.json").write_text(json.dumps(figures, indent=2) + "\n")
        _write_markdown(figures, RESULTS / "quantization.md")
        return figures
    if args.markdown_only:
        figures = json.loads((RESULTS / "quantization.json").read_text())
        _write_markdown(figures, RESULTS / "quantization.md")
        return figures
    torch.set_num_threads(1)
    t_start = time.perf_counter()

    run_md = args.md_workers > 0 and args.part != "static"
    pool = futures.ProcessPoolExecutor(max_workers=args.md_workers) if run_md else None
    md_jobs = {}
    if pool is not None:  # the long NVT run first, so it overlaps everything else
        md_jobs["nvt_w4a8"] = pool.submit(_md_job, "gaq_w4a8", "NVT", args.nvt_ps, 2.0, args.md_max_minutes, 4.0)
        for seed in range(args.nve_seeds):  # initial velocities differ by seed; one drift alone is noisy
            for kind in _NVE_KINDS:
                key = f"nve_{kind}" + (f"_seed{seed}" if seed else "")
                md_jobs[key] = pool.submit(_md_job, kind, "NVE", args.nve_ps, 0.5, args.md_max_minutes, None, seed)
    if args.part == "md":
        md = _collect(md_jobs, pool)
        path = write("quantization_md", {"md": md, "seconds": round(time.perf_counter() - t_start, 1)})
        print(path)
        return {"md": md}

    data = LabelledSet.load(DATA / "ethanol.npz")
    test = data.split_set("test")
    fp32 = EquivariantPotential.from_pretrained(CKPT / "ethanol")
    names = ["fp32", "naive_w8a8", "gaq_w8a8", "gaq_w4a8_ptq"]
    for name, folder in _FOLDERS.items():
        if (folder / "config.json").exists():
            names.append(name)
        else:
            print(f"skipping {name}: {folder} not built", flush=True)
    names.append("gaq_w4a8_global_grid")
    settings = {"configs": args.configs, "rotations": args.rotations, "ablation_configs": args.ablation_configs}
    with futures.ProcessPoolExecutor(max_workers=args.row_workers) as row_pool:
        done = dict(zip(names, row_pool.map(_evaluate_row, names, [settings] * len(names)), strict=True))
    rows: dict[str, dict] = {}
    for name in names:
        rows[name] = done[name]
    for name in rows:
        if name != "fp32":
            rows[name]["single_molecule_ratio_vs_fp32"] = (
                rows["fp32"]["single_molecule_ef_ms"] / rows[name]["single_molecule_ef_ms"]
            )
    lee_force_scale = rows["fp32"].pop("_force_scale")
    for row in rows.values():
        row.pop("_force_scale", None)

    vector_quantizers = _compare_vector_quantizers(fp32, test)
    print("vector quantizers", json.dumps(vector_quantizers), flush=True)

    # ---- batched throughput on ~20-atom molecules (aspirin, 21 atoms)
    speed = _batched_speed(args.batched, args.repeats)
    kernels = speed["kernels"]

    memory = {}
    for name in ("fp32", "gaq_w4a8"):
        with futures.ProcessPoolExecutor(max_workers=1) as fresh:  # a new process: its VmHWM is this call's peak
            memory[name] = fresh.submit(_peak_memory, name, 256).result()

    # ---- matmul kernels alone (the linear layers of the model: 64 -> 192 on 20k atoms)
    a = torch.randn(21504, 64)
    w = torch.randn(192, 64)
    a8 = torch.randint(-127, 127, (21504, 64), dtype=torch.int8)
    w8t = torch.randint(-8, 8, (64, 192), dtype=torch.int8)
    micro = {}
    for label, fn in [
        ("fp32_matmul", lambda: a @ w.T),
        ("int8_int_mm", lambda: torch._int_mm(a8, w8t)),
        ("int4_codes_dequant_then_fp32", lambda: a @ (w8t.float() * 0.01)),
    ]:
        fn()
        t0 = time.perf_counter()
        for _ in range(10):
            fn()
        micro[label] = (time.perf_counter() - t0) / 10
    try:
        import torchao  # noqa: F401
        from torchao.quantization import Int8WeightOnlyConfig, quantize_

        lin = torch.nn.Sequential(torch.nn.Linear(64, 192))
        quantize_(lin, Int8WeightOnlyConfig())
        lin(a)
        t0 = time.perf_counter()
        for _ in range(10):
            lin(a)
        micro["torchao_int8_weight_only"] = (time.perf_counter() - t0) / 10
    except Exception as exc:  # noqa: BLE001 - report why the optional kernel is unavailable
        micro["torchao_int8_weight_only"] = f"unavailable: {type(exc).__name__}: {str(exc)[:160]}"
    speed["matmul_seconds_21504x64x192"] = micro

    # ---- the other shipped checkpoints
    shipped = {}
    for mol in ("aspirin", "organic"):
        dset = LabelledSet.load(DATA / f"{mol}.npz").split_set("test")
        f32 = evaluate(EquivariantPotential.from_pretrained(CKPT / mol), dset)
        q = evaluate(QuantizedPotential.from_pretrained(CKPT / f"{mol}-w4a8"), dset)
        shipped[mol] = {
            "fp32_force_mae": f32["force_mae_mev_per_a"],
            "gaq_w4a8_force_mae": q["force_mae_mev_per_a"],
            "fp32_energy_mae": f32["energy_mae_mev"],
            "gaq_w4a8_energy_mae": q["energy_mae_mev"],
            "weight_bytes_fp32": _weight_bytes(EquivariantPotential.from_pretrained(CKPT / mol)),
            "weight_bytes_w4a8": _weight_bytes(QuantizedPotential.from_pretrained(CKPT / f"{mol}-w4a8")),
            "file_bytes_fp32": (CKPT / mol / WEIGHTS_NAME).stat().st_size,
            "file_bytes_w4a8": (CKPT / f"{mol}-w4a8" / WEIGHTS_NAME).stat().st_size,
        }
        print(mol, json.dumps(shipped[mol]), flush=True)

    md_figures = _saved_md() if args.part == "static" else _md_figures(_collect(md_jobs, pool), "this run")

    figures = {
        "fp32_force_mae": rows["fp32"]["force_mae_mev_per_a"],
        "gaq_w4a8_force_mae": rows["gaq_w4a8"]["force_mae_mev_per_a"],
        "naive_w4a8_force_mae": rows.get("naive_w4a8", {}).get("force_mae_mev_per_a"),
        "naive_w4a8_lee": rows.get("naive_w4a8", {}).get("lee_mev_per_a"),
        "gaq_w4a8_lee": rows["gaq_w4a8"]["lee_mev_per_a"],
        "fp32_lee": rows["fp32"]["lee_mev_per_a"],
        "weight_bytes_fp32": rows["fp32"]["weight_bytes"],
        "weight_bytes_w4a8": rows["gaq_w4a8"]["weight_bytes"],
        "file_bytes_fp32": (CKPT / "ethanol" / WEIGHTS_NAME).stat().st_size,
        "file_bytes_w4a8": (CKPT / "ethanol-w4a8" / WEIGHTS_NAME).stat().st_size,
        "speed_ratio_w4a8_vs_fp32": kernels["dequant"]["ratio_vs_fp32"],
        **{k: v for k, v in md_figures.items() if k not in ("md", "md_source")},
        "units": {
            "force_mae": "meV/Angstrom",
            "lee": "meV/Angstrom",
            "weight_bytes": "bytes (state_dict of the model as loaded)",
            "speed_ratio": "FP32 time / W4A8 time, batched energy+forces",
            "nve_drift": "meV/atom/ps (mean absolute drift over the NVE seeds; signed values in nve_drift_per_seed)",
        },
        "targets": {
            "force_mae_w4a8_over_fp32": rows["gaq_w4a8"]["force_mae_mev_per_a"] / rows["fp32"]["force_mae_mev_per_a"],
            "lee_naive_over_gaq": (rows["naive_w4a8"]["lee_mev_per_a"] / rows["gaq_w4a8"]["lee_mev_per_a"])
            if "naive_w4a8" in rows
            else None,
            "weight_memory_ratio": rows["fp32"]["weight_bytes"] / rows["gaq_w4a8"]["weight_bytes"],
        },
        "rows": rows,
        "lee_setup": {
            "molecule": "ethanol",
            "configurations": min(args.configs, test.n_frames),
            "configurations_other_rows": min(args.ablation_configs, args.configs),
            "rotations": args.rotations,
            "mean_force_norm_mev_per_a": lee_force_scale,
        },
        "speed": speed,
        "vector_quantizers": vector_quantizers,
        "memory": memory,
        "shipped": shipped,
        "md": md_figures["md"],
        "md_source": md_figures["md_source"],
        "seconds": round(time.perf_counter() - t_start, 1),
    }
    path = write("quantization", figures)
    _write_markdown(figures, RESULTS / "quantization.md")
    print(path)
    return figures


def _site_runs(args) -> dict:
    """NVE drift of the W4A8 model as shipped and with the activation rounding of one layer family off at a
    time (same protocol and seeds as the headline NVE runs), written to ``quantization_sites.json``."""
    t_start = time.perf_counter()
    kinds = ["gaq_w4a8", *(f"gaq_w4a8_float:{family}" for family in _ROUNDING_SITES)]
    with futures.ProcessPoolExecutor(max_workers=max(args.md_workers, 1)) as pool:
        jobs = {
            f"{kind}_seed{seed}": pool.submit(_md_job, kind, "NVE", args.nve_ps, 0.5, args.md_max_minutes, None, seed)
            for seed in range(args.nve_seeds)
            for kind in kinds
        }
        md = _collect(jobs, pool)
    drift = {}
    for kind in kinds:
        runs = [md[f"{kind}_seed{seed}"] for seed in range(args.nve_seeds)]
        signed = [r.get("drift_mev_per_atom_per_ps", float("nan")) for r in runs]
        family = kind.partition(":")[2]
        drift[family or "none (as shipped)"] = {
            "float_sites": list(_ROUNDING_SITES.get(family, ())),
            "mean_abs_drift_mev_per_atom_per_ps": float(np.mean(np.abs(signed))),
            "drift_per_seed": signed,
            "mean_total_energy_std_mev_per_atom": float(
                np.mean([r.get("total_energy_std_mev_per_atom", float("nan")) for r in runs])
            ),
        }
    figures = {
        "rounding_off_in": drift,
        "units": "meV/atom/ps (drift), meV/atom (total-energy standard deviation)",
        "nve_ps": args.nve_ps,
        "seeds": args.nve_seeds,
        "md": md,
        "seconds": round(time.perf_counter() - t_start, 1),
    }
    print(write("quantization_sites", figures))
    return figures


def _md_figures(md: dict, source: str) -> dict:
    """Top-level NVE figures: per model, the mean absolute drift over its seeds (``nve_<kind>`` is seed 0,
    ``nve_<kind>_seed<k>`` the others; signed drifts of opposite sign would cancel in a plain mean) and its
    ratio to FP32's."""
    per_seed: dict[str, list[float]] = {}
    for kind in _NVE_KINDS:
        runs = [m for k, m in md.items() if k == f"nve_{kind}" or k.startswith(f"nve_{kind}_seed")]
        per_seed[kind] = [m["drift_mev_per_atom_per_ps"] for m in runs if "drift_mev_per_atom_per_ps" in m]

    def mean_abs(kind: str) -> float | None:
        return float(np.mean(np.abs(per_seed[kind]))) if per_seed[kind] else None

    def ratio(kind: str) -> float | None:
        a, b = mean_abs(kind), mean_abs("fp32")
        return a / b if a is not None and b else None

    return {
        "nve_drift_abs_ratio_w4a8_vs_fp32": ratio("gaq_w4a8"),
        "nve_drift_abs_ratio_w4a8_float_activations_vs_fp32": ratio("gaq_w4a8_float_act"),
        "nve_drift_fp32": mean_abs("fp32"),
        "nve_drift_w4a8": mean_abs("gaq_w4a8"),
        "nve_drift_w4a8_float_activations": mean_abs("gaq_w4a8_float_act"),
        "nve_drift_per_seed": per_seed,
        "md": md,
        "md_source": source,
    }


def _saved_md() -> dict:
    """The MD figures of the last ``--part md`` run, with where they come from."""
    path = RESULTS / "quantization_md.json"
    if not path.exists():
        return _md_figures({}, "no MD run yet (python benchmarks/quantization.py --part md)")
    saved = json.loads(path.read_text())
    return _md_figures(saved["md"], f"{path.relative_to(ROOT)} ({saved.get('git_commit')}, {saved.get('date')})")


def _batched_speed(configurations: int, repeats: int) -> dict:
    """Energy+forces time of one batched call on ``configurations`` aspirin frames: FP32 and each W4A8 kernel,
    ``repeats`` rounds with the models interleaved in every round (so a burst of load hits all of them), the
    median per model, and each kernel's ratio to FP32 as the median of the per-round ratios."""
    test = LabelledSet.load(DATA / "aspirin.npz").split_set("test")
    z, x, b = _batch(test, np.resize(np.arange(test.n_frames), configurations))
    models = {"fp32": EquivariantPotential.from_pretrained(CKPT / "aspirin")}
    models.update({k: QuantizedPotential.from_pretrained(CKPT / "aspirin-w4a8", kernel=k) for k in KERNELS})
    neighbours = neighbour_list(x, models["fp32"].config.cutoff, b)
    n = int(b.max()) + 1
    times: dict[str, list[float]] = {name: [] for name in models}
    for model in models.values():  # warm-up (weight unpacking, allocator)
        model.energy_and_forces(z, x, b, n_graphs=n, neighbours=neighbours)
    for _ in range(max(1, repeats)):
        for name, model in models.items():
            t0 = time.perf_counter()
            model.energy_and_forces(z, x, b, n_graphs=n, neighbours=neighbours)
            times[name].append(time.perf_counter() - t0)
    fp32 = np.array(times["fp32"])
    kernels = {
        k: {
            "seconds": float(np.median(times[k])),
            "seconds_per_round": [round(t, 3) for t in times[k]],
            "ratio_vs_fp32": float(np.median(fp32 / np.array(times[k]))),
        }
        for k in KERNELS
    }
    # profile a 256-frame call of each (the profiler's own overhead grows with the number of op calls)
    zs, xs, bs = _batch(test, np.resize(np.arange(test.n_frames), 256))
    shares = {
        name: _time_shares(models[name], zs, xs, bs, neighbour_list(xs, models["fp32"].config.cutoff, bs))
        for name in ("fp32", "int8")
    }
    matmul = shares["fp32"]["matmul"]
    return {
        "configurations": configurations,
        "atoms_per_configuration": int(test.n_atoms[0]),
        "rounds": max(1, repeats),
        "fp32_seconds": float(np.median(fp32)),
        "fp32_seconds_per_round": [round(t, 3) for t in fp32],
        "kernels": kernels,
        "default_kernel": "dequant",
        "fastest_kernel": max(kernels, key=lambda k: kernels[k]["ratio_vs_fp32"]),
        "cpu_int8_dot_product_flags": _int8_flags(),
        "time_shares_256_frames": shares,
        # Amdahl: even matmuls of zero cost leave the rest, so E+F can speed up by at most 1 / (1 - matmul share)
        "speedup_bound_if_matmuls_were_free": 1.0 / (1.0 - matmul) if matmul < 1.0 else None,
    }


_OP_GROUPS = {
    "matmul": ("aten::mm", "aten::addmm", "aten::bmm", "aten::_int_mm", "aten::matmul", "aten::linear"),
    "gather_scatter": (
        "aten::index",
        "aten::index_select",
        "aten::scatter_add_",
        "aten::_index_put_impl_",
        "aten::index_add_",
        "aten::gather",
        "aten::scatter_add",
    ),
    "elementwise": ("aten::mul", "aten::add", "aten::add_", "aten::sub", "aten::div", "aten::mul_", "aten::neg"),
}


def _time_shares(model, z, x, b, neighbours) -> dict:
    """Fractions of one energy+forces call's CPU time (self time of each op) by op group, from torch.profiler."""
    from torch.profiler import ProfilerActivity, profile

    n = int(b.max()) + 1
    model.energy_and_forces(z, x, b, n_graphs=n, neighbours=neighbours)  # warm-up
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        model.energy_and_forces(z, x, b, n_graphs=n, neighbours=neighbours)
    self_us = {e.key: e.self_cpu_time_total for e in prof.key_averages()}
    total = sum(self_us.values()) or 1.0
    shares = {group: sum(self_us.get(op, 0.0) for op in ops) / total for group, ops in _OP_GROUPS.items()}
    shares["other"] = max(0.0, 1.0 - sum(shares.values()))
    return {k: round(v, 4) for k, v in shares.items()}


def _int8_flags() -> list[str]:
    """The CPU's int8 dot-product instruction sets (VNNI, AMX) as /proc/cpuinfo lists them."""
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        return []
    return sorted({f for f in flags.split(":", 1)[1].split() if "vnni" in f or f.startswith("amx")})


def _collect(jobs: dict, pool) -> dict:
    md = {}
    for key, job in jobs.items():
        try:
            md[key] = job.result()
        except Exception as exc:  # noqa: BLE001 - a failed run is a result too
            md[key] = {"error": f"{type(exc).__name__}: {exc}"}
        print(key, json.dumps(md[key]), flush=True)
    if pool is not None:
        pool.shutdown()
    return md


def _fmt(value, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "–"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.{digits}f}"


def _write_markdown(fig: dict, path: Path) -> None:
    labels = {
        "fp32": "FP32",
        "naive_w8a8": "naive W8A8 (PTQ)",
        "naive_w4a8": "naive W4A8 (QAT)",
        "gaq_w8a8": "GAQ W8A8 (PTQ)",
        "gaq_w4a8_ptq": "GAQ W4A8, no QAT",
        "gaq_w4a8": "**GAQ W4A8 (QAT, shipped)**",
        "gaq_w4a8_no_schedule": "GAQ W4A8, QAT without branch schedules",
        "gaq_w4a8_global_grid": "GAQ W4A8, direction grid on fixed axes (no local frames)",
        "ablation_cosine_fp32": "ablation: cosine attention FP32",
        "ablation_cosine_w4a8": "ablation: cosine attention GAQ W4A8",
        "ablation_dot_fp32": "ablation: dot-product attention FP32",
        "ablation_dot_w4a8": "ablation: dot-product attention GAQ W4A8",
    }
    lines = [
        "| ethanol model | energy MAE (meV) | force MAE (meV/Å) | LEE (meV/Å) | weight bytes "
        "| single-molecule E+F (ms) |",
        "|---|---|---|---|---|---|",
    ]
    for name, row in fig["rows"].items():
        lines.append(
            f"| {labels.get(name, name)} | {_fmt(row['energy_mae_mev'])} | {_fmt(row['force_mae_mev_per_a'])} | "
            f"{_fmt(row['lee_mev_per_a'], 3)} | {_fmt(row['weight_bytes'])} | {_fmt(row['single_molecule_ef_ms'], 2)} |"
        )
    sp = fig["speed"]
    lines += [
        "",
        f"Batched energy+forces, {sp['configurations']} aspirin configurations ({sp['atoms_per_configuration']} atoms) "
        f"per call, median of {sp.get('rounds', 1)} interleaved rounds: FP32 {sp['fp32_seconds']:.2f} s; "
        + ", ".join(f"W4A8 `{k}` {v['seconds']:.2f} s ({v['ratio_vs_fp32']:.2f}×)" for k, v in sp["kernels"].items())
        + ".",
        "",
        "Matmul kernels alone (21504 x 64 @ 64 x 192, seconds): "
        + ", ".join(
            f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in sp["matmul_seconds_21504x64x192"].items()
        )
        + ".",
        "",
    ]
    if "time_shares_256_frames" in sp:
        shares = sp["time_shares_256_frames"]
        lines += [
            "Where one E+F call's CPU time goes (256 aspirin frames, profiler self time): "
            + "; ".join(f"{k}: " + ", ".join(f"{g} {v:.0%}" for g, v in sh.items()) for k, sh in shares.items())
            + f". Even free matmuls would speed FP32 up at most {sp['speedup_bound_if_matmuls_were_free']:.2f}×"
            + f" (CPU int8 dot-product flags: {', '.join(sp.get('cpu_int8_dot_product_flags') or ['none'])}).",
            "",
        ]
    lines += [
        "| shipped | FP32 force MAE | GAQ W4A8 force MAE | FP32 weights (bytes) | W4A8 weights (bytes) "
        "| file FP32 → W4A8 |",
        "|---|---|---|---|---|---|",
    ]
    for mol, s in fig["shipped"].items():
        lines.append(
            f"| {mol} | {_fmt(s['fp32_force_mae'])} | {_fmt(s['gaq_w4a8_force_mae'])} | "
            f"{_fmt(s['weight_bytes_fp32'])} | "
            f"{_fmt(s['weight_bytes_w4a8'])} | {_fmt(s['file_bytes_fp32'])} → {_fmt(s['file_bytes_w4a8'])} |"
        )
    lines += [
        "",
        "| MD (ethanol, OpenMM Reference platform, compiled potential) | step (fs) | length (ps) | ns/day "
        "| drift (meV/atom/ps) | total-energy span (meV/atom) | T mean ± std (K) | bonds intact |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for key, m in fig["md"].items():
        if "error" in m:
            lines.append(f"| {key} | failed: {m['error']} | | | | | | |")
            continue
        seed = key.rsplit("_seed", 1)[1] if "_seed" in key else "0"
        seed = f", seed {seed}" if m["protocol"] == "NVE" else ""
        lines.append(
            f"| {m['protocol']} {m['model']}{seed} | {_fmt(m.get('timestep_fs'), 1)} | {_fmt(m['simulated_ps'], 1)} | "
            f"{_fmt(m['ns_per_day'], 2)} | {_fmt(m['drift_mev_per_atom_per_ps'], 4)} | "
            f"{_fmt(m.get('total_energy_span_mev_per_atom'), 2)} | "
            f"{_fmt(m['temperature_mean_k'], 0)} ± {_fmt(m['temperature_std_k'], 0)} | "
            f"{m['bonds_intact']} |"
        )
    if fig.get("md_source", "this run") != "this run":
        lines += ["", f"MD rows from {fig['md_source']}."]
    mem = fig.get("memory", {})
    if all("peak_rss_above_loaded_bytes" in m for m in mem.values()) and mem:
        lines += [
            "",
            "Peak resident memory of one E+F call on 256 aspirin configurations, above the loaded model: "
            + ", ".join(f"{k} {m['peak_rss_above_loaded_bytes'] / 2**20:.0f} MiB" for k, m in mem.items())
            + ".",
        ]
    path.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
