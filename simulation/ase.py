"""The equivariant potential as an ASE calculator, so ASE users can relax structures and run dynamics with it.

>>> from ase.build import molecule                                   # doctest: +SKIP
>>> atoms = molecule("CH3CH2OH"); atoms.calc = WorkbenchCalculator("workbench-organic")  # doctest: +SKIP
>>> atoms.get_potential_energy(), atoms.get_forces().shape          # doctest: +SKIP
(-..., (9, 3))

Energies are in eV and forces in eV/Angstrom (ASE's units, the model's units). When ``atoms.pbc`` is set on all
three axes the cell is used as a periodic box; a structure periodic along only one or two axes is refused.
Elements the potential was not trained on raise :class:`~workbench.errors.UnsupportedElementError` before any
evaluation.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes

from simulation.model import EquivariantPotential
from simulation.openmm import load_potential
from workbench.errors import InvalidMoleculeError

__all__ = ["WorkbenchCalculator"]


class WorkbenchCalculator(Calculator):
    """ASE calculator for a workbench potential (shipped name, checkpoint folder, or model instance).

    >>> calc = WorkbenchCalculator("workbench-ethanol")                       # doctest: +SKIP
    >>> atoms.calc = calc; atoms.get_forces()                                 # doctest: +SKIP

    ``dtype`` is the precision the model runs in (float64 by default, so finite-difference checks and
    long NVE runs see smooth energies).
    """

    implemented_properties = ["energy", "free_energy", "forces"]
    default_parameters: dict = {}

    def __init__(
        self,
        potential: str | os.PathLike | EquivariantPotential = "workbench-organic",
        *,
        dtype: torch.dtype = torch.float64,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.potential_name = potential if isinstance(potential, (str, os.PathLike)) else type(potential).__name__
        self.model = load_potential(potential, dtype)

    @property
    def elements(self) -> list[int]:
        """Atomic numbers the potential was trained on."""
        return list(self.model.elements)

    def check_atoms(self, atoms: Atoms) -> np.ndarray | None:
        """The periodic cell ``(3, 3)`` Angstrom for ``atoms``, or ``None``; refuses what the model cannot do."""
        formula = atoms.get_chemical_formula()
        self.model.element_indices(torch.as_tensor(atoms.numbers, dtype=torch.long), formula)
        pbc = np.asarray(atoms.pbc, dtype=bool)
        if not pbc.any():
            return None
        if not pbc.all():
            raise InvalidMoleculeError(
                formula,
                f"periodic along some axes only (pbc={pbc.tolist()})",
                hint="set atoms.pbc = True with a full 3D cell, or atoms.pbc = False for an isolated molecule",
            )
        cell = np.asarray(atoms.cell.array, dtype=np.float64)
        if abs(np.linalg.det(cell)) < 1e-6:
            raise InvalidMoleculeError(formula, "atoms.pbc is set but the cell has zero volume", hint="set atoms.cell")
        return cell

    def calculate(
        self,
        atoms: Atoms | None = None,
        properties: list[str] | tuple[str, ...] = ("energy",),
        system_changes: list[str] = all_changes,
    ) -> None:
        super().calculate(atoms, properties, system_changes)
        cell = self.check_atoms(self.atoms)
        energy, forces = self.model.predict(
            self.atoms.numbers, self.atoms.positions, cell, source=self.atoms.get_chemical_formula()
        )
        self.results = {"energy": energy, "free_energy": energy, "forces": forces}

    def __repr__(self) -> str:
        symbols = ",".join(_symbols(self.model.elements))
        return f"WorkbenchCalculator({self.potential_name!r}, elements={symbols})"


def _symbols(numbers: list[int]) -> list[str]:
    from ase.data import chemical_symbols

    return [chemical_symbols[z] for z in numbers]
