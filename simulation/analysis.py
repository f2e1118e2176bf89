"""Trajectory analysis in JAX: jitted kernels, vmapped over frames and over trajectories, run in float64 on CPU.

>>> import numpy as np
>>> from simulation import analysis
>>> x = np.cumsum(np.random.default_rng(0).normal(size=(2000, 50, 3)), axis=0)  # random walk: 1 A^2 per axis per step
>>> analysis.msd(x)[:3].round(0)
array([0., 3., 6.])

Every function takes NumPy arrays and returns NumPy arrays. Positions are ``(frames, atoms, 3)`` in Angstrom; a
leading trajectory axis, ``(trajectories, frames, atoms, 3)``, analyses several equal-length trajectories in one
vmapped call and adds that axis to the result. Units: Angstrom, ps, eV, cm^-1, degrees.

The kernels run with 64-bit floats switched on only inside each call (``jax.enable_x64``), so other JAX code in
the process keeps its own setting. Plain NumPy references with the same names live in
:mod:`simulation.analysis_numpy`; ``benchmarks/analysis.py`` compares the two.

JAX is imported when this module is imported, never by ``import simulation``.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from simulation import analysis_numpy as reference
from simulation.analysis_numpy import A2_PER_PS_TO_CM2_PER_S, THZ_TO_INV_CM, _pairs

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
    "bond_length_distribution",
    "angle_distribution",
    "energy_drift",
    "infer_bonds",
    "angle_triples",
    "TrajectoryAnalysis",
    "THZ_TO_INV_CM",
]

_FRAME_BATCH = 256  # frames per vmapped batch inside lax.map: bounds memory for long trajectories


# ---------------------------------------------------------------------------------------------- input checks


def _positions(positions, name: str = "positions") -> np.ndarray:
    x = np.asarray(positions, dtype=np.float64)
    if x.ndim not in (3, 4) or x.shape[-1] != 3:
        raise ValueError(
            f"{name} must have shape (frames, atoms, 3) or (trajectories, frames, atoms, 3), got {x.shape}"
        )
    if not np.isfinite(x).all():
        raise ValueError(f"{name} contain NaN or inf values; drop the broken frames first")
    return x


def _cell(cell, r_max: float | None = None) -> np.ndarray | None:
    if cell is None:
        return None
    c = np.asarray(cell, dtype=np.float64)
    if c.shape == (3,):
        c = np.diag(c)
    if c.shape != (3, 3):
        raise ValueError(f"cell must be (3, 3) lattice vectors as rows or (3,) box lengths, got shape {c.shape}")
    volume = abs(np.linalg.det(c))
    if volume < 1e-9:
        raise ValueError("cell has zero volume; pass the periodic box in Angstrom")
    if r_max is not None:
        widths = volume / np.linalg.norm(np.cross(c[[1, 2, 0]], c[[2, 0, 1]]), axis=1)
        if r_max > 0.5 * widths.min() + 1e-9:
            raise ValueError(
                f"r_max = {r_max} A is more than half the narrowest cell width ({widths.min():.3f} A); "
                f"the minimum-image convention needs r_max <= {0.5 * widths.min():.3f} A"
            )
    return c


def _min_frames(x: np.ndarray, n: int, what: str) -> None:
    if x.shape[-3] < n:
        raise ValueError(f"{what} needs at least {n} frames, got {x.shape[-3]}")


def _over_trajectories(kernel, x: np.ndarray, *args):
    """Run ``kernel(x, *args)`` on one trajectory, or vmapped over the leading axis of a 4D batch."""
    with jax.enable_x64(True):
        xj = jnp.asarray(x)
        if x.ndim == 4:
            out = jax.vmap(kernel, in_axes=(0,) + (None,) * len(args))(xj, *args)
        else:
            out = kernel(xj, *args)
        return jax.tree_util.tree_map(np.asarray, out)


# ---------------------------------------------------------------------------------------------- geometry


def _minimum_image(vectors: jax.Array, cell: jax.Array | None) -> jax.Array:
    if cell is None:
        return vectors
    frac = vectors @ jnp.linalg.inv(cell)
    return (frac - jnp.round(frac)) @ cell


def minimum_image(vectors, cell) -> np.ndarray:
    """Shortest periodic images of difference ``vectors: (..., 3)`` in ``cell: (3, 3)`` (rows = lattice vectors)."""
    c = _cell(cell)
    with jax.enable_x64(True):
        return np.asarray(_minimum_image(jnp.asarray(np.asarray(vectors, dtype=np.float64)), c))


@jax.jit
def _unwrap(x: jax.Array, cell: jax.Array) -> jax.Array:
    steps = _minimum_image(x[1:] - x[:-1], cell)
    return jnp.concatenate([x[:1], x[:1] + jnp.cumsum(steps, axis=0)], axis=0)


def unwrap(positions, cell) -> np.ndarray:
    """Continuous positions from positions wrapped into ``cell`` (each step must move less than half a cell)."""
    x = _positions(positions)
    c = _cell(cell)
    if c is None:
        return x
    return _over_trajectories(_unwrap, x, c)


# ---------------------------------------------------------------------------------------------- RDF


def _frame_batches(fn, x: jax.Array, batch: int = _FRAME_BATCH) -> jax.Array:
    """``sum(fn(chunk))`` over consecutive chunks of ``batch`` frames (lax.map over the full chunks, then the
    remainder): bounded memory, one vectorised call per chunk."""
    n = x.shape[0]
    full = n // batch
    total = 0
    if full:
        total = jax.lax.map(fn, x[: full * batch].reshape(full, batch, *x.shape[1:])).sum(axis=0)
    if n % batch:
        total = total + fn(x[full * batch :])
    return total


@partial(jax.jit, static_argnames=("n_bins", "periodic"))
def _rdf_counts(x, a, b, r_max, cell, n_bins: int, periodic: bool):
    """Pair-distance histogram summed over frames: ``(n_bins,)``; vectorised over chunks of frames."""
    inverse = jnp.linalg.inv(cell)

    def chunk(frames):  # (chunk, atoms, 3)
        vec = frames[:, b] - frames[:, a]  # (chunk, pairs, 3)
        if periodic:
            frac = vec @ inverse
            vec = (frac - jnp.round(frac)) @ cell
        d = jnp.sqrt((vec**2).sum(-1))
        index = jnp.where(d < r_max, jnp.floor(d * (n_bins / r_max)).astype(jnp.int32), n_bins)
        return jnp.bincount(index.ravel(), length=n_bins + 1)[:n_bins]

    return _frame_batches(chunk, x)


def rdf(
    positions,
    r_max: float,
    n_bins: int = 100,
    cell=None,
    i_atoms=None,
    j_atoms=None,
) -> tuple[np.ndarray, np.ndarray]:
    """Radial distribution function ``(r, g)``: bin centres (Angstrom) and ``g(r)`` averaged over frames.

    ``g_IJ(r) = V / (frames * P) * sum_frames sum_{a in I, b in J, a != b} delta(r - r_ab) / (4 pi r^2 dr)`` with
    ``P`` the number of ordered pairs, so an ideal gas gives ``g = 1``. With ``cell`` the distances follow the
    minimum-image convention (``r_max`` at most half the narrowest cell width) and ``V`` is the cell volume;
    without one (an isolated molecule) ``V`` is the sphere of radius ``r_max`` — then ``g`` is a shape, not a
    density ratio. ``i_atoms``/``j_atoms`` are the atom indices of the two species, each defaulting to all
    atoms on its own: for an O-O g(r) pass the oxygens as both.
    """
    x = _positions(positions)
    if r_max <= 0 or n_bins < 1:
        raise ValueError("r_max must be positive and n_bins >= 1")
    c = _cell(cell, r_max)
    a, b, weight = _pairs(x.shape[-2], i_atoms, j_atoms)
    if len(a) == 0:
        raise ValueError("no atom pairs to measure: i_atoms and j_atoms select fewer than two atoms")
    periodic = c is not None
    c_arg = c if periodic else np.eye(3)

    def kernel(xt, a_, b_, c_):
        return _rdf_counts(xt, a_, b_, r_max, c_, n_bins=n_bins, periodic=periodic)

    counts = _over_trajectories(kernel, x, jnp.asarray(a), jnp.asarray(b), c_arg)
    edges = np.linspace(0.0, r_max, n_bins + 1)
    volume = abs(np.linalg.det(c)) if periodic else 4.0 / 3.0 * np.pi * r_max**3
    shell = 4.0 / 3.0 * np.pi * (edges[1:] ** 3 - edges[:-1] ** 3)
    frames = x.shape[-3]
    g = weight * counts / (frames * weight * len(a) / volume * shell)
    return 0.5 * (edges[1:] + edges[:-1]), g


# ---------------------------------------------------------------------------------------------- correlations


def _autocorrelation(x: jax.Array) -> jax.Array:
    """``sum_t x[t] x[t+m]`` for every lag m along axis 0 (FFT, zero-padded to 2n: no wrap-around)."""
    n = x.shape[0]
    spectrum = jnp.fft.rfft(x, n=2 * n, axis=0)
    return jnp.fft.irfft(spectrum * jnp.conj(spectrum), n=2 * n, axis=0)[:n]


@jax.jit
def _msd(x: jax.Array) -> jax.Array:
    n = x.shape[0]
    d = (x**2).sum(-1)  # (frames, atoms)
    ends = jnp.cumsum(d + d[::-1], axis=0)
    q = 2.0 * d.sum(0) - jnp.concatenate([jnp.zeros_like(d[:1]), ends[:-1]], axis=0)
    norm = (n - jnp.arange(n))[:, None]
    per_atom = jax.vmap(lambda xa: _autocorrelation(xa).sum(-1), in_axes=1, out_axes=1)(x)  # vmapped over atoms
    return (q / norm - 2.0 * per_atom / norm).mean(axis=1).at[0].set(0.0)  # lag 0 exactly, not FFT round-off


def msd(positions, max_lag: int | None = None, cell=None) -> np.ndarray:
    """Mean squared displacement ``(lags,)`` in Angstrom^2, averaged over atoms and every time origin.

    Uses the FFT algorithm, ``MSD(m) = S1(m) - 2 S2(m)`` with ``S2`` the positions' autocorrelation, so a
    10k-frame trajectory costs O(n log n). Positions wrapped into a periodic ``cell`` are unwrapped first.
    Lag ``m`` is ``m`` frame intervals; pass the result with ``time[:len(msd)]`` to
    :func:`diffusion_coefficient`.
    """
    x = _positions(positions)
    _min_frames(x, 2, "msd")
    if cell is not None:
        x = unwrap(x, cell)
    out = _over_trajectories(_msd, x)
    return out[..., :max_lag] if max_lag is not None else out


def diffusion_coefficient(time_ps, msd_values, fit: tuple[float, float] = (0.2, 0.8)) -> dict:
    """Einstein fit ``MSD(t) = 6 D t + c`` over the fraction ``fit`` of the lag range.

    Returns ``d_a2_per_ps`` (Angstrom^2/ps), ``d_cm2_per_s`` (1 A^2/ps = 1e-4 cm^2/s) and ``intercept_a2``.
    The window skips the ballistic start and the noisy long lags (few time origins).
    """
    t = np.asarray(time_ps, dtype=np.float64)
    y = np.asarray(msd_values, dtype=np.float64)
    if t.shape[0] != y.shape[-1]:
        raise ValueError(f"time_ps has {t.shape[0]} values but msd_values has {y.shape[-1]} lags")
    if not 0.0 <= fit[0] < fit[1] <= 1.0:
        raise ValueError(f"fit must be a window (lo, hi) with 0 <= lo < hi <= 1, got {fit}")
    n = len(t)
    lo, hi = int(fit[0] * n), max(int(fit[1] * n), int(fit[0] * n) + 2)
    if hi > n:
        raise ValueError(f"diffusion_coefficient needs at least 2 lags in the fit window, got {n} lags")
    with jax.enable_x64(True):
        slope, intercept = np.asarray(_line_fit(jnp.asarray(t[lo:hi]), jnp.asarray(y[..., lo:hi])))
    out = {"d_a2_per_ps": slope / 6.0, "d_cm2_per_s": slope / 6.0 * A2_PER_PS_TO_CM2_PER_S, "intercept_a2": intercept}
    return {k: float(v) if np.ndim(v) == 0 else v for k, v in out.items()}


@jax.jit
def _line_fit(t: jax.Array, y: jax.Array) -> jax.Array:
    """Least-squares ``(slope, intercept)`` of ``y: (..., n)`` against ``t: (n,)``; batched over leading axes."""
    tc = t - t.mean()
    slope = (y * tc).sum(-1) / (tc**2).sum()
    return jnp.stack([slope, y.mean(-1) - slope * t.mean()])


def finite_difference_velocities(positions, dt_ps: float) -> np.ndarray:
    """Central-difference velocities ``(frames - 2, atoms, 3)`` in Angstrom/ps from frames ``dt_ps`` apart.

    Use them when a trajectory stored positions only; the spectrum is accurate well below the frame Nyquist
    frequency ``1 / (2 dt)``.
    """
    x = _positions(positions)
    _min_frames(x, 3, "finite_difference_velocities")
    if dt_ps <= 0:
        raise ValueError("dt_ps must be positive")
    return (x[..., 2:, :, :] - x[..., :-2, :, :]) / (2.0 * dt_ps)


@jax.jit
def _vacf(v: jax.Array, w: jax.Array) -> jax.Array:
    n = v.shape[0]
    per_atom = jax.vmap(lambda va: _autocorrelation(va).sum(-1), in_axes=1, out_axes=1)(v)  # (lags, atoms)
    c = (per_atom * w).sum(1) / (n - jnp.arange(n))
    return c / c[0]


def _weights(masses, n_atoms: int) -> np.ndarray:
    if masses is None:
        return np.ones(n_atoms)
    w = np.asarray(masses, dtype=np.float64).reshape(-1)
    if w.shape != (n_atoms,) or (w <= 0).any():
        raise ValueError(f"masses must be {n_atoms} positive numbers (one per atom), got shape {w.shape}")
    return w


def vacf(velocities, max_lag: int | None = None, masses=None) -> np.ndarray:
    """Normalised velocity autocorrelation ``C(m) / C(0)``, ``C(m) = <sum_a w_a v_a(t) . v_a(t + m)>_t``.

    Averaged over every time origin (FFT); ``w_a`` are ``masses`` (default 1).
    """
    v = _positions(velocities, "velocities")
    _min_frames(v, 2, "vacf")
    out = _over_trajectories(_vacf, v, _weights(masses, v.shape[-2]))
    return out[..., :max_lag] if max_lag is not None else out


@jax.jit
def _power(v: jax.Array, w: jax.Array) -> jax.Array:
    spectrum = jnp.fft.rfft(v, axis=0)  # (freq, atoms, 3)
    return ((jnp.abs(spectrum) ** 2).sum(-1) * w).sum(-1)


def vdos(velocities, dt_ps: float, masses=None) -> tuple[np.ndarray, np.ndarray]:
    """Vibrational density of states ``(frequency cm^-1, density)`` from velocities ``dt_ps`` apart.

    The power spectrum ``sum_a w_a |FFT v_a|^2`` (the Fourier transform of the unnormalised VACF, by
    Wiener-Khinchin), normalised to unit area over frequency; mass-weighted with ``masses``.
    """
    v = _positions(velocities, "velocities")
    _min_frames(v, 2, "vdos")
    if dt_ps <= 0:
        raise ValueError("dt_ps must be positive")
    power = _over_trajectories(_power, v, _weights(masses, v.shape[-2]))
    freq = np.fft.rfftfreq(v.shape[-3], dt_ps) * THZ_TO_INV_CM
    area = np.sum(0.5 * (power[..., 1:] + power[..., :-1]) * np.diff(freq), axis=-1, keepdims=True)
    return freq, power / area


# ---------------------------------------------------------------------------------------------- internal geometry


def _index(values, width: int, n_atoms: int, what: str) -> np.ndarray:
    idx = np.asarray(values, dtype=np.int64).reshape(-1, width)
    if idx.size and (idx.min() < 0 or idx.max() >= n_atoms):
        raise ValueError(f"{what} refer to atoms outside 0..{n_atoms - 1}")
    if len(idx) == 0:
        raise ValueError(f"no {what} given")
    return idx


@partial(jax.jit, static_argnames=("periodic",))
def _bond_lengths(x, bonds, cell, periodic: bool):
    def one_frame(frame):
        vec = frame[bonds[:, 1]] - frame[bonds[:, 0]]
        vec = _minimum_image(vec, cell) if periodic else vec
        return jnp.sqrt((vec**2).sum(-1))

    return jax.vmap(one_frame)(x)  # output is (frames, n) anyway, so no chunking needed


@partial(jax.jit, static_argnames=("periodic",))
def _angles(x, triples, cell, periodic: bool):
    def one_frame(frame):
        u = frame[triples[:, 0]] - frame[triples[:, 1]]
        w = frame[triples[:, 2]] - frame[triples[:, 1]]
        if periodic:
            u, w = _minimum_image(u, cell), _minimum_image(w, cell)
        cos = (u * w).sum(-1) / jnp.sqrt((u**2).sum(-1) * (w**2).sum(-1))
        return jnp.degrees(jnp.arccos(jnp.clip(cos, -1.0, 1.0)))

    return jax.vmap(one_frame)(x)  # output is (frames, n) anyway, so no chunking needed


def bond_lengths(positions, bonds, cell=None) -> np.ndarray:
    """Bond lengths ``(frames, bonds)`` in Angstrom for atom pairs ``bonds: (bonds, 2)``."""
    x = _positions(positions)
    idx = _index(bonds, 2, x.shape[-2], "bonds")
    c = _cell(cell)
    return _over_trajectories(
        lambda xt, i, cc: _bond_lengths(xt, i, cc, periodic=c is not None), x, idx, np.eye(3) if c is None else c
    )


def angles(positions, triples, cell=None) -> np.ndarray:
    """Angles ``(frames, triples)`` in degrees at the middle atom ``j`` of each ``(i, j, k)`` triple."""
    x = _positions(positions)
    idx = _index(triples, 3, x.shape[-2], "angle triples")
    c = _cell(cell)
    return _over_trajectories(
        lambda xt, i, cc: _angles(xt, i, cc, periodic=c is not None), x, idx, np.eye(3) if c is None else c
    )


@partial(jax.jit, static_argnames=("n_bins",))
def _histogram(values, lo, hi, n_bins: int):
    """Density per column of ``values: (samples, columns)``: ``(n_bins, columns)``."""
    width = (hi - lo) / n_bins
    index = jnp.floor((values - lo) / width).astype(jnp.int32)
    index = jnp.where((values >= lo) & (values < hi), index, n_bins)
    counts = jax.vmap(lambda col: jnp.bincount(col, length=n_bins + 1)[:n_bins], in_axes=1, out_axes=1)(index)
    return counts / (values.shape[0] * width)


def histogram(values, n_bins: int, value_range: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Probability density ``(centres, density)`` of ``values: (samples, ...)`` for each trailing column.

    ``density`` has shape ``(n_bins, ...)``; values outside ``value_range`` are dropped (so the density then
    integrates to less than one).
    """
    v = np.asarray(values, dtype=np.float64)
    lo, hi = float(value_range[0]), float(value_range[1])
    if not hi > lo or n_bins < 1:
        raise ValueError(f"value_range must be (lo, hi) with hi > lo and n_bins >= 1, got {value_range}, {n_bins}")
    columns = v.reshape(v.shape[0], -1)
    with jax.enable_x64(True):
        dens = np.asarray(_histogram(jnp.asarray(columns), lo, hi, n_bins=n_bins))
    edges = np.linspace(lo, hi, n_bins + 1)
    return 0.5 * (edges[1:] + edges[:-1]), dens.reshape((n_bins,) + v.shape[1:])


def bond_length_distribution(
    positions, bonds, n_bins: int = 100, value_range: tuple[float, float] = (0.8, 2.0), cell=None
) -> tuple[np.ndarray, np.ndarray]:
    """Density ``(centres, density: (n_bins, bonds))`` of each bond's length over the frames (Angstrom)."""
    lengths = bond_lengths(positions, bonds, cell)
    return histogram(lengths.reshape(-1, lengths.shape[-1]), n_bins, value_range)


def angle_distribution(
    positions, triples, n_bins: int = 90, value_range: tuple[float, float] = (0.0, 180.0), cell=None
) -> tuple[np.ndarray, np.ndarray]:
    """Density ``(centres, density: (n_bins, triples))`` of each angle over the frames (degrees)."""
    values = angles(positions, triples, cell)
    return histogram(values.reshape(-1, values.shape[-1]), n_bins, value_range)


# ---------------------------------------------------------------------------------------------- energy drift


@jax.jit
def _drift(t, total, kinetic):
    slope, intercept = _line_fit(t, total)
    kinetic_std = jnp.std(kinetic, axis=-1)
    span = jnp.abs(slope) * (t[-1] - t[0])
    return slope, intercept, span, kinetic_std


def energy_drift(time_ps, total_energy, kinetic_energy, n_atoms: int) -> dict:
    """NVE energy drift: a least-squares line ``E_tot(t) = E0 + k t`` through the total energy.

    Returns (arrays with a leading trajectory axis when the energies are ``(trajectories, frames)``):

    - ``drift_mev_per_atom_ps`` — the raw slope ``1000 k / n_atoms``, meV/atom/ps (the form usually quoted;
      signed).
    - ``drift_ratio`` — the ml-peg / MLIP-Audit normalisation: the fitted drift accumulated over the whole run,
      ``|k| (t_end - t_start)``, divided by the standard deviation of the kinetic energy. Dimensionless;
      ``1`` means the drift has grown as large as the natural kinetic-energy fluctuation.
    - ``total_drift_ev`` (``|k| (t_end - t_start)``), ``kinetic_energy_std_ev``, ``drift_ev_per_ps`` (``k``),
      ``intercept_ev`` (``E0``).
    """
    t = np.asarray(time_ps, dtype=np.float64)
    total = np.asarray(total_energy, dtype=np.float64)
    kinetic = np.asarray(kinetic_energy, dtype=np.float64)
    if t.ndim != 1 or total.shape[-1] != t.shape[0] or kinetic.shape != total.shape:
        raise ValueError(
            f"time_ps {t.shape}, total_energy {total.shape} and kinetic_energy {kinetic.shape} must share the "
            "frame axis (the last one)"
        )
    if t.shape[0] < 3:
        raise ValueError(f"energy_drift needs at least 3 frames, got {t.shape[0]}")
    if n_atoms < 1:
        raise ValueError("n_atoms must be >= 1")
    with jax.enable_x64(True):
        slope, intercept, span, kinetic_std = (np.asarray(a) for a in _drift(t, total, kinetic))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(kinetic_std > 0, span / np.where(kinetic_std > 0, kinetic_std, 1.0), np.inf)
    out = {
        "drift_mev_per_atom_ps": 1000.0 * slope / n_atoms,
        "drift_ratio": ratio,
        "total_drift_ev": span,
        "kinetic_energy_std_ev": kinetic_std,
        "drift_ev_per_ps": slope,
        "intercept_ev": intercept,
    }
    return {k: float(v) if np.ndim(v) == 0 else v for k, v in out.items()}


# ---------------------------------------------------------------------------------------------- Trajectory accessor


def infer_bonds(numbers, positions, cell=None, scale: float = 1.2) -> np.ndarray:
    """Bonds ``(bonds, 2)`` from one geometry: atoms closer than ``scale`` x the sum of covalent radii."""
    from ase.data import covalent_radii

    z = np.asarray(numbers, dtype=np.int64)
    x = np.asarray(positions, dtype=np.float64)
    radii = covalent_radii[z]
    d = np.linalg.norm(reference.minimum_image(x[None] - x[:, None], _cell(cell)), axis=-1)
    i, j = np.nonzero(np.triu(d < scale * (radii[:, None] + radii[None]), k=1))
    return np.stack([i, j], axis=1)


def angle_triples(bonds, n_atoms: int) -> np.ndarray:
    """Every bonded angle ``(i, j, k)`` (``j`` bonded to both ``i`` and ``k``) from a bond list."""
    neighbours: list[set[int]] = [set() for _ in range(n_atoms)]
    for a, b in np.asarray(bonds, dtype=np.int64).reshape(-1, 2):
        neighbours[a].add(int(b))
        neighbours[b].add(int(a))
    triples = [(i, j, k) for j in range(n_atoms) for i in sorted(neighbours[j]) for k in sorted(neighbours[j]) if i < k]
    return np.array(triples, dtype=np.int64).reshape(-1, 3)


class TrajectoryAnalysis:
    """The analyses of this module on one :class:`simulation.md.Trajectory` (its ``.analysis``).

    >>> traj.analysis.rdf(r_max=4.0)          # doctest: +SKIP
    >>> traj.analysis.drift()["drift_ratio"]  # doctest: +SKIP

    Frame spacing comes from ``time_ps``; the cell, when the run was periodic, from ``traj.cell``; bonds from
    ``traj.bonds`` or, when the run did not record them, from covalent radii on the first frame. Velocities
    are central differences of the stored frames, so spectra reach only the frame Nyquist frequency
    ``1 / (2 dt_frame)``: report every step or two for vibrational spectra.
    """

    def __init__(self, trajectory):
        self.trajectory = trajectory

    @property
    def dt_ps(self) -> float:
        """Time between stored frames, ps."""
        t = np.asarray(self.trajectory.time_ps, dtype=np.float64)
        if len(t) < 2:
            raise ValueError("the trajectory has fewer than 2 frames: no time step to analyse")
        steps = np.diff(t)
        if not np.allclose(steps, steps[0], rtol=1e-6, atol=1e-9):
            raise ValueError("frames are not evenly spaced in time; correlation analyses need a constant spacing")
        return float(steps[0])

    @property
    def bonds(self) -> np.ndarray:
        """Bonds ``(bonds, 2)``: the run's, or inferred from the first frame."""
        t = self.trajectory
        if len(t.bonds):
            return np.asarray(t.bonds, dtype=np.int64).reshape(-1, 2)
        return infer_bonds(t.numbers, t.positions[0], t.cell)

    def _species(self, element) -> np.ndarray | None:
        if element is None:
            return None
        from ase.data import atomic_numbers

        z = atomic_numbers[element] if isinstance(element, str) else int(element)
        index = np.nonzero(np.asarray(self.trajectory.numbers) == z)[0]
        if len(index) == 0:
            raise ValueError(f"no {element} atoms in this trajectory")
        return index

    def rdf(self, r_max: float | None = None, n_bins: int = 100, a=None, b=None) -> tuple[np.ndarray, np.ndarray]:
        """``(r, g)`` between elements ``a`` and ``b`` (symbols or atomic numbers; ``b`` defaults to ``a``, and
        without either all atoms are used).

        ``r_max`` defaults to half the narrowest cell width for periodic runs and 6 A otherwise.
        """
        t = self.trajectory
        if r_max is None:
            if t.cell is None:
                r_max = 6.0
            else:
                c = _cell(t.cell)
                r_max = 0.5 * float(
                    (abs(np.linalg.det(c)) / np.linalg.norm(np.cross(c[[1, 2, 0]], c[[2, 0, 1]]), axis=1)).min()
                )
        return rdf(t.positions, r_max, n_bins, t.cell, self._species(a), self._species(a if b is None else b))

    def msd(self, max_lag: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(lag time ps, MSD A^2)`` averaged over atoms and time origins (unwrapped for periodic runs)."""
        values = msd(self.trajectory.positions, max_lag, self.trajectory.cell)
        return np.arange(values.shape[-1]) * self.dt_ps, values

    def diffusion(self, max_lag: int | None = None, fit: tuple[float, float] = (0.2, 0.8)) -> dict:
        """Einstein diffusion coefficient from :meth:`msd` (see :func:`diffusion_coefficient`)."""
        lag, values = self.msd(max_lag)
        return diffusion_coefficient(lag, values, fit)

    def velocities(self) -> np.ndarray:
        """Central-difference velocities ``(frames - 2, atoms, 3)`` in A/ps (unwrapped for periodic runs)."""
        x = self.trajectory.positions
        if self.trajectory.cell is not None:
            x = unwrap(x, self.trajectory.cell)
        return finite_difference_velocities(x, self.dt_ps)

    def _masses(self) -> np.ndarray:
        from ase.data import atomic_masses

        return atomic_masses[np.asarray(self.trajectory.numbers, dtype=np.int64)]

    def vacf(self, max_lag: int | None = None, mass_weighted: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """``(lag time ps, C(t) / C(0))`` of the (mass-weighted) velocities."""
        values = vacf(self.velocities(), max_lag, self._masses() if mass_weighted else None)
        return np.arange(values.shape[-1]) * self.dt_ps, values

    def vdos(self, mass_weighted: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """``(frequency cm^-1, density)`` of the (mass-weighted) velocities, unit area."""
        return vdos(self.velocities(), self.dt_ps, self._masses() if mass_weighted else None)

    def bond_lengths(self) -> np.ndarray:
        """``(frames, bonds)`` lengths in A for :attr:`bonds`."""
        return bond_lengths(self.trajectory.positions, self.bonds, self.trajectory.cell)

    def bond_length_distribution(self, n_bins: int = 100, value_range: tuple[float, float] = (0.8, 2.0)):
        """``(centres A, density: (n_bins, bonds))``."""
        return bond_length_distribution(
            self.trajectory.positions, self.bonds, n_bins, value_range, self.trajectory.cell
        )

    def angles(self) -> np.ndarray:
        """``(frames, angles)`` in degrees for every bonded angle."""
        return angles(
            self.trajectory.positions, angle_triples(self.bonds, len(self.trajectory.numbers)), self.trajectory.cell
        )

    def angle_distribution(self, n_bins: int = 90, value_range: tuple[float, float] = (0.0, 180.0)):
        """``(centres deg, density: (n_bins, angles))`` for every bonded angle."""
        triples = angle_triples(self.bonds, len(self.trajectory.numbers))
        return angle_distribution(self.trajectory.positions, triples, n_bins, value_range, self.trajectory.cell)

    def drift(self) -> dict:
        """NVE energy drift, raw (meV/atom/ps) and normalised by the kinetic-energy fluctuation
        (see :func:`energy_drift`)."""
        t = self.trajectory
        return energy_drift(t.time_ps, t.total_energy, t.kinetic_energy, len(t.numbers))

    def __repr__(self) -> str:
        return f"TrajectoryAnalysis({self.trajectory!r})"
