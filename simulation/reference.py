"""GFN2-xTB reference labels (energy and forces) through ``tblite``.

Every potential in :mod:`simulation` is trained on these labels. Inputs are in Angstrom, outputs in eV and
eV/Angstrom; the conversion from tblite's atomic units (Hartree, Bohr) happens here and nowhere else.

>>> import numpy as np
>>> label = xtb_label([8, 1, 1], np.array([[0.0, 0.0, 0.0], [0.96, 0.0, 0.0], [-0.24, 0.93, 0.0]]))
>>> label.forces.shape
(3, 3)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from workbench.errors import InvalidMoleculeError, SimulationError, UnsupportedElementError

__all__ = [
    "element_symbol",
    "HARTREE_TO_EV",
    "BOHR_TO_ANGSTROM",
    "XTB_ELEMENTS",
    "ReferenceLabel",
    "check_geometry",
    "xtb_label",
]

HARTREE_TO_EV = 27.211386245988
BOHR_TO_ANGSTROM = 0.529177210903
MIN_DISTANCE_ANGSTROM = 0.5

# GFN2-xTB is parametrised for H..Rn (Z = 1..86).
XTB_ELEMENTS = frozenset(range(1, 87))


def element_symbol(z: int) -> str:
    """Chemical symbol of atomic number ``z`` (``"Z123"`` when out of the periodic table)."""
    from rdkit import Chem

    return Chem.GetPeriodicTable().GetElementSymbol(int(z)) if 0 < int(z) <= 118 else f"Z{z}"


@dataclass(frozen=True)
class ReferenceLabel:
    """One labelled configuration: ``energy`` in eV, ``forces: (atoms, 3)`` in eV/Angstrom."""

    energy: float
    forces: np.ndarray
    method: str = "GFN2-xTB"


def check_geometry(
    numbers: Sequence[int] | np.ndarray,
    positions: np.ndarray,
    *,
    source: object = "structure",
    min_distance: float = MIN_DISTANCE_ANGSTROM,
) -> tuple[np.ndarray, np.ndarray]:
    """Validate atomic numbers and Cartesian positions (Angstrom) and return them as arrays.

    Raises :class:`InvalidMoleculeError` for a shape mismatch, non-finite positions or two atoms closer than
    ``min_distance`` Angstrom; the message names the atoms involved.

    >>> z, x = check_geometry([1, 1], [[0.0, 0.0, 0.0], [0.74, 0.0, 0.0]])
    >>> x.shape
    (2, 3)
    """
    z = np.asarray(numbers, dtype=np.int64).reshape(-1)
    x = np.asarray(positions, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != 3 or x.shape[0] != z.shape[0]:
        raise InvalidMoleculeError(
            source, f"positions must have shape ({z.shape[0]}, 3) to match the atoms, got {tuple(x.shape)}"
        )
    if z.shape[0] == 0:
        raise InvalidMoleculeError(source, "no atoms")
    bad = np.where(~np.isfinite(x).all(axis=1))[0]
    if bad.size:
        raise InvalidMoleculeError(
            source,
            f"non-finite (NaN or inf) positions for atom(s) {bad[:10].tolist()}",
            hint="embed the molecule in 3D first, e.g. with RDKit ETKDG",
        )
    if z.shape[0] > 1:
        d = np.linalg.norm(x[:, None, :] - x[None, :, :], axis=-1)
        d[np.diag_indices_from(d)] = np.inf
        i, j = np.unravel_index(np.argmin(d), d.shape)
        if d[i, j] < min_distance:
            raise InvalidMoleculeError(
                source,
                f"atoms {min(i, j)} and {max(i, j)} overlap ({d[i, j]:.3f} A apart, minimum {min_distance} A)",
                hint="check the coordinates' units (Angstrom expected) or re-embed the molecule",
            )
    return z, x


def xtb_label(
    numbers: Sequence[int] | np.ndarray,
    positions: np.ndarray,
    *,
    charge: int = 0,
    uhf: int = 0,
    method: str = "GFN2-xTB",
    source: object = "structure",
) -> ReferenceLabel:
    """Single-point GFN2-xTB energy (eV) and forces (eV/Angstrom) for one configuration.

    ``positions`` are Cartesian coordinates in Angstrom, ``numbers`` atomic numbers. ``charge`` is the total
    charge and ``uhf`` the number of unpaired electrons. Invalid geometries and unsupported elements raise
    before tblite is called; an SCF that does not converge raises :class:`SimulationError`.
    """
    z, x = check_geometry(numbers, positions, source=source)
    unsupported = {element_symbol(int(a)) for a in z if int(a) not in XTB_ELEMENTS}
    if unsupported:
        raise UnsupportedElementError(source, unsupported, [element_symbol(a) for a in sorted(XTB_ELEMENTS)])

    from tblite.interface import Calculator

    try:
        calc = Calculator(method, z, x / BOHR_TO_ANGSTROM, charge=float(charge), uhf=int(uhf))
        calc.set("verbosity", 0)
        result = calc.singlepoint()
        energy = float(result.get("energy"))
        gradient = np.asarray(result.get("gradient"), dtype=np.float64)
    except (RuntimeError, ValueError) as exc:
        raise SimulationError(f"{method} single point failed for {source!r}: {exc}") from exc
    if not np.isfinite(energy) or not np.isfinite(gradient).all():
        raise SimulationError(f"{method} returned a non-finite energy or gradient for {source!r}")
    forces = -gradient * (HARTREE_TO_EV / BOHR_TO_ANGSTROM)
    return ReferenceLabel(energy=energy * HARTREE_TO_EV, forces=forces, method=method)
