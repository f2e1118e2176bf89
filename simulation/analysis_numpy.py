"""Plain NumPy reference implementations of :mod:`simulation.analysis` (same names, same arguments, same units).

They exist to check the JAX versions and to measure what JIT compilation and vectorisation buy. Each one is
written for clarity: the same algorithm (FFT correlations, minimum-image distances), no JAX, no tricks.

Units: positions Angstrom, time ps, energies eV, frequencies cm^-1, angles degrees.

>>> import numpy as np
>>> x = np.cumsum(np.random.default_rng(0).normal(size=(2000, 50, 3)), axis=0)  # random walk: 1 A^2 per axis per step
>>> msd(x)[:3].round(0)
array([0., 3., 6.])
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "minimum_image",
    "unwrap",
    "rdf",
    "msd",
    "diffusion_coefficient",
    "finite_difference_velocities",
    "vacf",
    "vdos",
    "bond_lengths",
    "angles",
    "histogram",
    "energy_drift",
    "THZ_TO_INV_CM",
]

THZ_TO_INV_CM = 33.35640951981521  # 1 ps^-1 = 1 THz = 33.356 cm^-1
A2_PER_PS_TO_CM2_PER_S = 1e-4


def minimum_image(vectors: np.ndarray, cell: np.ndarray | None) -> np.ndarray:
    """Shortest periodic images of difference ``vectors: (..., 3)`` in ``cell: (3, 3)`` (rows = lattice vectors)."""
    if cell is None:
        return vectors
    frac = vectors @ np.linalg.inv(cell)
    frac -= np.round(frac)
    return frac @ cell


def unwrap(positions: np.ndarray, cell: np.ndarray | None) -> np.ndarray:
    """Continuous trajectories ``(frames, atoms, 3)`` from wrapped ones (each step moves less than half a cell)."""
    if cell is None:
        return positions
    steps = minimum_image(np.diff(positions, axis=0), cell)
    return np.concatenate([positions[:1], positions[:1] + np.cumsum(steps, axis=0)], axis=0)


def _pairs(n_atoms: int, i_atoms, j_atoms) -> tuple[np.ndarray, np.ndarray, float]:
    """Unique pairs to measure and the weight of each, so that weighted counts are ordered-pair counts."""
    i_set = np.arange(n_atoms) if i_atoms is None else np.asarray(i_atoms, dtype=int)
    j_set = np.arange(n_atoms) if j_atoms is None else np.asarray(j_atoms, dtype=int)
    if np.array_equal(np.sort(i_set), np.sort(j_set)):
        a, b = np.triu_indices(len(i_set), k=1)
        return np.sort(i_set)[a], np.sort(i_set)[b], 2.0
    a, b = np.meshgrid(i_set, j_set, indexing="ij")
    keep = a != b
    return a[keep], b[keep], 1.0


def rdf(
    positions: np.ndarray,
    r_max: float,
    n_bins: int = 100,
    cell: np.ndarray | None = None,
    i_atoms=None,
    j_atoms=None,
) -> tuple[np.ndarray, np.ndarray]:
    """Radial distribution function ``(r, g)`` averaged over frames of ``positions: (frames, atoms, 3)``.

    See :func:`simulation.analysis.rdf` for the normalisation.
    """
    positions = np.asarray(positions, dtype=np.float64)
    frames, n_atoms, _ = positions.shape
    a, b, weight = _pairs(n_atoms, i_atoms, j_atoms)
    edges = np.linspace(0.0, r_max, n_bins + 1)
    counts = np.zeros(n_bins)
    for start in range(0, frames, 1024):
        chunk = positions[start : start + 1024]
        d = np.linalg.norm(minimum_image(chunk[:, b] - chunk[:, a], cell), axis=-1)
        counts += np.histogram(d.ravel(), bins=edges)[0]
    volume = abs(np.linalg.det(cell)) if cell is not None else 4.0 / 3.0 * np.pi * r_max**3
    n_ordered = weight * len(a)
    shell = 4.0 / 3.0 * np.pi * (edges[1:] ** 3 - edges[:-1] ** 3)
    r = 0.5 * (edges[1:] + edges[:-1])
    return r, weight * counts / (frames * n_ordered / volume * shell)


def _autocorrelation(x: np.ndarray) -> np.ndarray:
    """``sum_t x[t] x[t+m]`` for every lag m along axis 0, by FFT with zero padding (no wrap-around)."""
    n = x.shape[0]
    spectrum = np.fft.rfft(x, n=2 * n, axis=0)
    return np.fft.irfft(spectrum * spectrum.conj(), n=2 * n, axis=0)[:n]


def msd(positions: np.ndarray, max_lag: int | None = None) -> np.ndarray:
    """Mean squared displacement ``(lags,)`` in Angstrom^2 over all atoms and time origins (FFT algorithm)."""
    x = np.asarray(positions, dtype=np.float64)
    n = x.shape[0]
    max_lag = n if max_lag is None else min(max_lag, n)
    d = (x**2).sum(axis=-1)  # (frames, atoms)
    # S1(m) = sum_{t < n-m} (|x(t)|^2 + |x(t+m)|^2) / (n - m): drop one term from each end per lag.
    ends = np.cumsum(d + d[::-1], axis=0)
    q = 2.0 * d.sum(axis=0) - np.concatenate([np.zeros_like(d[:1]), ends[:-1]], axis=0)
    s1 = q / (n - np.arange(n))[:, None]
    s2 = _autocorrelation(x).sum(axis=-1) / (n - np.arange(n))[:, None]
    out = (s1 - 2.0 * s2).mean(axis=1)
    out[0] = 0.0  # exactly, not FFT round-off
    return out[:max_lag]


def diffusion_coefficient(time_ps: np.ndarray, msd_values: np.ndarray, fit: tuple[float, float] = (0.2, 0.8)) -> dict:
    """Einstein fit ``MSD = 6 D t + c`` over the fraction ``fit`` of the lag range; D in A^2/ps and cm^2/s."""
    n = len(time_ps)
    lo, hi = int(fit[0] * n), max(int(fit[1] * n), int(fit[0] * n) + 2)
    slope, intercept = np.polyfit(time_ps[lo:hi], msd_values[lo:hi], 1)
    return {"d_a2_per_ps": slope / 6.0, "d_cm2_per_s": slope / 6.0 * A2_PER_PS_TO_CM2_PER_S, "intercept_a2": intercept}


def finite_difference_velocities(positions: np.ndarray, dt_ps: float) -> np.ndarray:
    """Central-difference velocities ``(frames - 2, atoms, 3)`` in Angstrom/ps from positions ``dt_ps`` apart."""
    return (positions[2:] - positions[:-2]) / (2.0 * dt_ps)


def vacf(velocities: np.ndarray, max_lag: int | None = None, masses: np.ndarray | None = None) -> np.ndarray:
    """Velocity autocorrelation ``C(m) / C(0)`` over atoms and time origins (mass-weighted with ``masses``)."""
    v = np.asarray(velocities, dtype=np.float64)
    n = v.shape[0]
    w = np.ones(v.shape[1]) if masses is None else np.asarray(masses, dtype=np.float64)
    c = (_autocorrelation(v).sum(axis=-1) * w).sum(axis=1) / (n - np.arange(n))
    max_lag = n if max_lag is None else min(max_lag, n)
    return (c / c[0])[:max_lag]


def vdos(velocities: np.ndarray, dt_ps: float, masses: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Vibrational density of states ``(frequency cm^-1, density)``: the power spectrum of the velocities,
    summed over atoms (mass-weighted with ``masses``) and normalised to unit area."""
    v = np.asarray(velocities, dtype=np.float64)
    n = v.shape[0]
    w = np.ones(v.shape[1]) if masses is None else np.asarray(masses, dtype=np.float64)
    power = (np.abs(np.fft.rfft(v, axis=0)) ** 2).sum(axis=-1) @ w
    freq = np.fft.rfftfreq(n, dt_ps) * THZ_TO_INV_CM
    area = np.sum(0.5 * (power[1:] + power[:-1]) * np.diff(freq))
    return freq, power / area


def bond_lengths(positions: np.ndarray, bonds, cell: np.ndarray | None = None) -> np.ndarray:
    """Bond lengths ``(frames, bonds)`` in Angstrom for atom pairs ``bonds: (bonds, 2)``."""
    bonds = np.asarray(bonds, dtype=int).reshape(-1, 2)
    return np.linalg.norm(minimum_image(positions[:, bonds[:, 1]] - positions[:, bonds[:, 0]], cell), axis=-1)


def angles(positions: np.ndarray, triples, cell: np.ndarray | None = None) -> np.ndarray:
    """Angles ``(frames, triples)`` in degrees at the middle atom of each ``(i, j, k)`` triple."""
    triples = np.asarray(triples, dtype=int).reshape(-1, 3)
    u = minimum_image(positions[:, triples[:, 0]] - positions[:, triples[:, 1]], cell)
    w = minimum_image(positions[:, triples[:, 2]] - positions[:, triples[:, 1]], cell)
    cos = (u * w).sum(-1) / (np.linalg.norm(u, axis=-1) * np.linalg.norm(w, axis=-1))
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def histogram(values: np.ndarray, n_bins: int, value_range: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Probability density ``(centres, density)`` of ``values`` per column: ``(bins,)`` or ``(bins, columns)``."""
    values = np.asarray(values, dtype=np.float64)
    edges = np.linspace(*value_range, n_bins + 1)
    width = edges[1] - edges[0]
    columns = values.reshape(values.shape[0], -1)
    dens = np.stack([np.histogram(c, bins=edges)[0] for c in columns.T], axis=-1) / (columns.shape[0] * width)
    return 0.5 * (edges[1:] + edges[:-1]), dens.reshape((n_bins,) + values.shape[1:])


def energy_drift(time_ps: np.ndarray, total_energy: np.ndarray, kinetic_energy: np.ndarray, n_atoms: int) -> dict:
    """Straight-line fit of the total energy; see :func:`simulation.analysis.energy_drift` for the definitions."""
    t = np.asarray(time_ps, dtype=np.float64)
    slope, intercept = np.polyfit(t, np.asarray(total_energy, dtype=np.float64), 1)
    kinetic_std = float(np.std(kinetic_energy))
    total = abs(slope) * (t[-1] - t[0])
    return {
        "drift_mev_per_atom_ps": 1000.0 * slope / n_atoms,
        "drift_ev_per_ps": slope,
        "total_drift_ev": total,
        "kinetic_energy_std_ev": kinetic_std,
        "drift_ratio": total / kinetic_std if kinetic_std > 0 else float("inf"),
        "intercept_ev": intercept,
    }
