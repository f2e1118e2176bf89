"""Local equivariance error (LEE): how far a potential's forces are from rotating with the molecule.

For a configuration ``x: (atoms, 3)`` and rotations ``R``::

    LEE(x) = mean over R and atoms of | F(R x) - R F(x) |        (meV/Angstrom)

with ``R`` drawn uniformly from SO(3) (Haar measure, via random unit quaternions). An exactly equivariant
model gives 0 up to floating-point rounding (the FP32 floor); a quantizer that does not commute with
rotations (per-component rounding of vectors) gives a larger value. All rotations of one configuration are
evaluated in one batched call.

The infinitesimal version, :func:`lie_derivative_error`, is the norm of ``d/dt [R(t)^T F(R(t) x)]`` at
``t = 0`` for the three generators, by central differences at a small angle (meV/Angstrom per radian).

>>> lee = local_equivariance_error(model, numbers, [positions], n_rotations=100)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from simulation.model import neighbour_list

__all__ = ["random_rotations", "local_equivariance_error", "lie_derivative_error"]


def random_rotations(n: int, seed: int = 0, dtype: torch.dtype = torch.float64) -> Tensor:
    """``n`` Haar-random rotation matrices ``(n, 3, 3)`` from normalised Gaussian quaternions."""
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(n, 4, generator=g, dtype=torch.float64)
    q = q / q.norm(dim=1, keepdim=True)
    w, x, y, z = q.unbind(1)
    r = torch.stack(
        [
            1 - 2 * (y * y + z * z),
            2 * (x * y - z * w),
            2 * (x * z + y * w),
            2 * (x * y + z * w),
            1 - 2 * (x * x + z * z),
            2 * (y * z - x * w),
            2 * (x * z - y * w),
            2 * (y * z + x * w),
            1 - 2 * (x * x + y * y),
        ],
        dim=1,
    ).reshape(n, 3, 3)
    return r.to(dtype)


def _batched_forces(model, numbers: Tensor, positions: Tensor) -> Tensor:
    """Forces ``(graphs, atoms, 3)`` of ``positions: (graphs, atoms, 3)``, all in one call."""
    graphs, atoms = positions.shape[:2]
    z = numbers.repeat(graphs)
    x = positions.reshape(-1, 3)
    batch = torch.arange(graphs).repeat_interleave(atoms)
    neighbours = neighbour_list(x, model.config.cutoff, batch)
    _, forces = model.energy_and_forces(z, x, batch, n_graphs=graphs, neighbours=neighbours)
    return forces.detach().reshape(graphs, atoms, 3)


def local_equivariance_error(
    model,
    numbers: Sequence[int] | np.ndarray | Tensor,
    configurations: Sequence[np.ndarray] | np.ndarray,
    *,
    n_rotations: int = 100,
    seed: int = 0,
    chunk: int = 100,
) -> dict:
    """LEE in meV/Angstrom over ``configurations`` (each ``(atoms, 3)`` Angstrom, same ``numbers``).

    Returns ``{"lee_mev_per_a", "per_config": [...], "n_rotations", "n_configs", "force_scale_mev_per_a"}``,
    the last being the mean force norm, for scale. Configurations are centred before rotating.
    """
    dtype = next(model.parameters()).dtype
    z = torch.as_tensor(np.asarray(numbers), dtype=torch.long)
    rotations = random_rotations(n_rotations, seed, dtype)  # (R, 3, 3)
    per_config, scale = [], []
    for x in configurations:
        x = torch.as_tensor(np.asarray(x), dtype=dtype)
        x = x - x.mean(0)
        f0 = _batched_forces(model, z, x[None])[0]  # (atoms, 3)
        errors = []
        for start in range(0, n_rotations, chunk):
            r = rotations[start : start + chunk]
            xr = torch.einsum("rab,nb->rna", r, x)  # (R, atoms, 3)
            fr = _batched_forces(model, z, xr)
            expected = torch.einsum("rab,nb->rna", r, f0)
            errors.append((fr - expected).norm(dim=-1).mean(1))  # (R,)
        per_config.append(float(torch.cat(errors).mean()) * 1000.0)
        scale.append(float(f0.norm(dim=-1).mean()) * 1000.0)
    return {
        "lee_mev_per_a": float(np.mean(per_config)),
        "per_config": per_config,
        "n_rotations": n_rotations,
        "n_configs": len(per_config),
        "force_scale_mev_per_a": float(np.mean(scale)),
    }


def lie_derivative_error(
    model, numbers: Sequence[int] | np.ndarray | Tensor, configurations: Sequence[np.ndarray], *, angle: float = 1e-3
) -> float:
    """Mean norm (meV/Angstrom/rad) of ``d/dt R(t)^T F(R(t) x)`` at ``t = 0`` over the three rotation generators."""
    dtype = next(model.parameters()).dtype
    z = torch.as_tensor(np.asarray(numbers), dtype=torch.long)
    generators = torch.zeros(3, 3, 3, dtype=torch.float64)
    for k, (a, b) in enumerate([(1, 2), (2, 0), (0, 1)]):
        generators[k, a, b], generators[k, b, a] = -1.0, 1.0
    values = []
    for x in configurations:
        x = torch.as_tensor(np.asarray(x), dtype=dtype)
        x = x - x.mean(0)
        rots = torch.cat([torch.linalg.matrix_exp(s * angle * generators) for s in (1.0, -1.0)]).to(dtype)  # (6, 3, 3)
        f = _batched_forces(model, z, torch.einsum("rab,nb->rna", rots, x))
        back = torch.einsum("rba,rnb->rna", rots, f)  # R^T F(R x)
        deriv = (back[:3] - back[3:]) / (2 * angle)  # (3, atoms, 3)
        values.append(float(deriv.norm(dim=-1).mean()) * 1000.0)
    return float(np.mean(values))
