"""Trajectory-analysis throughput: JAX (jitted, vmapped, float64) against the plain NumPy references.

    OMP_NUM_THREADS=1 nice -n 5 python benchmarks/analysis.py [--frames 10000] [--repeats 3]

Two synthetic but realistic 10k-frame trajectories, analysed in this one process:
- ``aspirin``: 21 atoms, the first aspirin geometry of ``simulation/data/aspirin.npz`` with thermal vibrations
  (random normal-mode-like oscillations between 400 and 3200 cm^-1, ~0.05 A) plus a slow random walk, 0.5 fs
  apart; open boundaries.
- ``box``: 96 atoms in a 14.2 A periodic cube (water-like density of point particles), random walks wrapped
  into the cell; RDF with the minimum image.

For every analysis: frames per second for JAX (best of ``--repeats`` after a warm-up call) and NumPy (best of
``--repeats``), their ratio, and the JAX compile time (first call minus a steady call) reported separately.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")

import numpy as np  # noqa: E402

from benchmarks import _results  # noqa: E402
from simulation import analysis  # noqa: E402
from simulation import analysis_numpy as reference  # noqa: E402

DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "simulation", "data", "aspirin.npz")
DT_PS = 0.0005


def aspirin_trajectory(frames: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(numbers, positions: (frames, 21, 3))`` vibrating about a real aspirin geometry."""
    data = np.load(DATA)
    n = int(data["n_atoms"][0])
    numbers, x0 = data["numbers"][:n], data["positions"][:n]
    rng = np.random.default_rng(seed)
    t = np.arange(frames) * DT_PS
    modes = 24
    freq = rng.uniform(400.0, 3200.0, modes) / analysis.THZ_TO_INV_CM  # ps^-1
    shapes = rng.normal(size=(modes, n, 3))
    shapes *= 0.05 / np.linalg.norm(shapes, axis=-1).mean(axis=-1)[:, None, None]
    phase = rng.uniform(0, 2 * np.pi, modes)
    x = x0[None] + np.einsum("tm,mak->tak", np.sin(2 * np.pi * freq[None] * t[:, None] + phase), shapes)
    x += np.cumsum(rng.normal(scale=0.002, size=(frames, 1, 3)), axis=0)  # whole-molecule drift
    return numbers, x


def box_trajectory(frames: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """``(cell, positions: (frames, 96, 3))`` of diffusing particles wrapped into a periodic cube."""
    rng = np.random.default_rng(seed)
    cell = np.eye(3) * 14.2
    x = rng.uniform(0, 14.2, size=(96, 3)) + np.cumsum(rng.normal(scale=0.01, size=(frames, 96, 3)), axis=0)
    return cell, x - np.floor(x / 14.2) * 14.2


def bonded(x0: np.ndarray, cutoff: float = 1.6) -> tuple[np.ndarray, np.ndarray]:
    """Bonds (distance below ``cutoff``) and the angles they make, from one geometry."""
    d = np.linalg.norm(x0[:, None] - x0[None], axis=-1)
    i, j = np.nonzero(np.triu(d < cutoff, 1))
    bonds = np.stack([i, j], 1)
    triples = []
    for centre in range(len(x0)):
        nb = sorted({int(b) for a, b in bonds if a == centre} | {int(a) for a, b in bonds if b == centre})
        triples += [(nb[p], centre, nb[q]) for p in range(len(nb)) for q in range(p + 1, len(nb))]
    return bonds, np.array(triples)


def best_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def measure(name: str, frames: int, jax_fn, numpy_fn, repeats: int, check) -> dict:
    start = time.perf_counter()
    first = jax_fn()
    first_call = time.perf_counter() - start
    jax_s = best_time(jax_fn, repeats)
    numpy_s = best_time(numpy_fn, repeats)
    error = float(check(first, numpy_fn()))
    row = {
        "jax_frames_per_s": frames / jax_s,
        "numpy_frames_per_s": frames / numpy_s,
        "jax_over_numpy": numpy_s / jax_s,
        "jax_compile_s": max(first_call - jax_s, 0.0),
        "jax_first_call_s": first_call,
        "jax_s": jax_s,
        "numpy_s": numpy_s,
        "max_abs_difference": error,
    }
    print(
        f"{name:24s} jax {row['jax_frames_per_s']:12.0f} fr/s  numpy {row['numpy_frames_per_s']:12.0f} fr/s  "
        f"ratio {row['jax_over_numpy']:6.2f}  compile {row['jax_compile_s']:.2f} s  diff {error:.1e}",
        flush=True,
    )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    n, r = args.frames, args.repeats

    numbers, x = aspirin_trajectory(n)
    cell, box = box_trajectory(n)
    bonds, triples = bonded(x[0])
    masses = np.array([{1: 1.008, 6: 12.011, 8: 15.999}[int(z)] for z in numbers])
    v = reference.finite_difference_velocities(x, DT_PS)
    t = np.arange(n) * DT_PS
    rng = np.random.default_rng(2)
    kinetic = 0.8 + 0.05 * rng.normal(size=n)
    total = -1000.0 + 1e-3 * t + 1e-4 * rng.normal(size=n)

    def close(a, b):
        return np.abs(np.asarray(a) - np.asarray(b)).max()

    def close_pair(a, b):
        return max(close(a[0], b[0]), close(a[1], b[1]))

    def close_dict(a, b):
        return max(abs(a[k] - b[k]) for k in ("drift_mev_per_atom_ps", "drift_ratio"))

    rows = {
        "rdf_aspirin": measure(
            "rdf (21 atoms)", n, lambda: analysis.rdf(x, 6.0, 120), lambda: reference.rdf(x, 6.0, 120), r, close_pair
        ),
        "rdf_box_periodic": measure(
            "rdf (96 atoms, periodic)",
            n,
            lambda: analysis.rdf(box, 7.0, 140, cell=cell),
            lambda: reference.rdf(box, 7.0, 140, cell=cell),
            r,
            close_pair,
        ),
        "msd": measure("msd", n, lambda: analysis.msd(x), lambda: reference.msd(x), r, close),
        "vacf": measure(
            "vacf", n - 2, lambda: analysis.vacf(v, masses=masses), lambda: reference.vacf(v, masses=masses), r, close
        ),
        "vdos": measure(
            "vdos",
            n - 2,
            lambda: analysis.vdos(v, DT_PS, masses=masses),
            lambda: reference.vdos(v, DT_PS, masses=masses),
            r,
            close_pair,
        ),
        "bond_lengths": measure(
            f"bond lengths ({len(bonds)})",
            n,
            lambda: analysis.bond_lengths(x, bonds),
            lambda: reference.bond_lengths(x, bonds),
            r,
            close,
        ),
        "angles": measure(
            f"angles ({len(triples)})",
            n,
            lambda: analysis.angles(x, triples),
            lambda: reference.angles(x, triples),
            r,
            close,
        ),
        "energy_drift": measure(
            "energy drift",
            n,
            lambda: analysis.energy_drift(t, total, kinetic, 21),
            lambda: reference.energy_drift(t, total, kinetic, 21),
            r,
            close_dict,
        ),
    }
    batch = np.stack([x, x[::-1]])
    rows["msd_2_trajectories_vmapped"] = measure(
        "msd x2 (vmapped)",
        2 * n,
        lambda: analysis.msd(batch),
        lambda: np.stack([reference.msd(batch[0]), reference.msd(batch[1])]),
        r,
        close,
    )
    ratios = {k: round(v["jax_over_numpy"], 3) for k, v in rows.items()}
    path = _results.write(
        "analysis",
        {
            "frames": n,
            "atoms": {"aspirin": int(x.shape[1]), "box": int(box.shape[1])},
            "jax_over_numpy": ratios,
            "analyses": rows,
            "threads": "one (OMP_NUM_THREADS=1, XLA single-threaded Eigen)",
            "note": "frames/s of the whole trajectory analysis; ratios measured in this one run; compile time "
            "excluded from jax_frames_per_s and reported as jax_compile_s",
        },
    )
    print("wrote", path)


if __name__ == "__main__":
    main()
