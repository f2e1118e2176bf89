"""Are a potential's forces the gradient of its energy? The work of the forces along a straight path against
the energy change there.

For forces ``F = -dE/dx`` the work ``W = integral of F . dx`` along any path equals ``E(start) - E(end)``, so
``|E(end) - E(start) + W|`` is quadrature error only. Straight-through rounding of activations (8-bit) breaks
this: the energy steps where a rounded value flips, the forces do not see the step, and the gap grows. That gap
is what makes energy drift in NVE dynamics.

>>> evaluate = lambda x: model.energy_and_forces(numbers, x)  # doctest: +SKIP
>>> gap, change = path_work_mismatch(evaluate, x0, 0.3 * unit_direction)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from torch import Tensor

__all__ = ["path_work_mismatch"]


def path_work_mismatch(
    evaluate: Callable[[Tensor], tuple[Tensor, Tensor]], x0: Tensor, direction: Tensor, points: int = 121
) -> tuple[float, float]:
    """``(|E(end) - E(start) + W|, |E(end) - E(start)|)`` along ``x0 + t * direction`` for ``t`` in [0, 1].

    ``evaluate(x)`` returns the energy (any shape summing to the total, eV) and the forces (eV/Angstrom) at
    positions ``x``; ``W``, the work of the forces, is integrated with the trapezoidal rule on ``points`` points.
    """
    ts = np.linspace(0.0, 1.0, points)
    energies, slopes = [], []
    for t in ts:
        energy, forces = evaluate(x0 + float(t) * direction)
        energies.append(float(energy.detach().sum()))
        slopes.append(float((forces.detach() * direction).sum()))
    work = float(np.trapezoid(slopes, ts))
    change = energies[-1] - energies[0]
    return abs(change + work), abs(change)
