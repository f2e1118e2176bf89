"""Run the equivariant potential inside OpenMM through ``openmm.PythonForce``.

OpenMM hands the force a ``State`` (positions in nm); the potential answers with energy and forces, converted
from eV and eV/Angstrom to kJ/mol and kJ/mol/nm. No openmm-torch, no TorchScript: the model runs in
ordinary PyTorch on the CPU.

>>> system, topology, positions = create_system("CCO", potential="ethanol")  # doctest: +SKIP
>>> system.getNumParticles()                                               # doctest: +SKIP
9
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import openmm
import openmm.app as app
import torch

from simulation.model import EquivariantPotential, neighbour_list
from simulation.quantize.graph import QuantizedGraphInterface
from simulation.reference import check_geometry, element_symbol
from workbench.errors import CheckpointError, InvalidMoleculeError

__all__ = [
    "EV_TO_KJ_PER_MOL",
    "CHECKPOINTS",
    "Structure3D",
    "load_potential",
    "create_force",
    "create_system",
    "to_structure",
]

EV_TO_KJ_PER_MOL = 96.48533212331002
CHECKPOINTS = Path(__file__).resolve().parent / "checkpoints"
_ALIASES = {"workbench-organic": "organic", "workbench-ethanol": "ethanol", "workbench-aspirin": "aspirin"}
_ALIASES.update({f"{k}-w4a8": f"{v}-w4a8" for k, v in list(_ALIASES.items())})  # packed GAQ W4A8 checkpoints


@dataclass
class Structure3D:
    """Atoms with 3D coordinates: ``numbers: (atoms,)``, ``positions: (atoms, 3)`` Angstrom, optional bonds."""

    numbers: np.ndarray
    positions: np.ndarray
    bonds: list[tuple[int, int]]
    cell: np.ndarray | None = None  # (3, 3) Angstrom, rows are lattice vectors
    name: str = "molecule"


def load_potential(
    potential: str | os.PathLike | EquivariantPotential, dtype: torch.dtype = torch.float64
) -> EquivariantPotential:
    """A potential by shipped name (``"workbench-organic"``, ``"ethanol"``, ``"aspirin"``, and their quantized
    ``"workbench-organic-w4a8"`` etc.), folder, or model. Packed quantized folders load as a
    :class:`~simulation.quantize.potential.QuantizedPotential` (same interface)."""
    if isinstance(potential, torch.nn.Module) and hasattr(potential, "energy_and_forces"):
        return potential.to(dtype).eval()
    name = str(potential)
    folder = CHECKPOINTS / _ALIASES.get(name, name)
    if not folder.is_dir():
        folder = Path(name)
    if not folder.is_dir():
        shipped = sorted(p.name for p in CHECKPOINTS.iterdir() if (p / "config.json").exists())
        raise CheckpointError(name, f"no such potential; shipped: {', '.join(shipped)} (or pass a folder)")
    config_path = folder / "config.json"
    if config_path.is_file() and '"quantization"' in config_path.read_text():
        from simulation.quantize.potential import QuantizedPotential

        return QuantizedPotential.from_pretrained(folder, dtype=dtype)
    return EquivariantPotential.from_pretrained(folder, dtype=dtype)


def to_structure(molecule: object, name: str | None = None) -> Structure3D:
    """Coerce an RDKit ``Mol`` with a conformer, an ``.sdf``/``.mol``/``.pdb`` path, a SMILES (embedded with
    ETKDGv3 + MMFF94), a ``(numbers, positions)`` pair, a pymatgen ``Structure``/``Molecule``, an ASE ``Atoms``
    or a :class:`Structure3D` into a :class:`Structure3D` (periodic when it carries a cell).

    A molecule without 3D coordinates raises :class:`InvalidMoleculeError` saying how to embed it.
    """
    from rdkit import Chem

    if isinstance(molecule, Structure3D):
        return molecule
    module = type(molecule).__module__
    if module.startswith("pymatgen."):  # Structure (periodic) or Molecule
        from simulation.materials import from_pymatgen

        return from_pymatgen(molecule, name)
    if module.startswith("ase."):
        from simulation.materials import from_ase

        return from_ase(molecule, name)
    if isinstance(molecule, tuple) and len(molecule) == 2:
        z, x = check_geometry(molecule[0], molecule[1], source=name or "structure")
        return Structure3D(z, x, [], name=name or "structure")
    if isinstance(molecule, (str, os.PathLike)):
        text = str(molecule)
        path = Path(text)
        if path.suffix.lower() in {".sdf", ".mol", ".pdb"}:
            if not path.is_file():
                raise InvalidMoleculeError(text, "file not found")
            if path.suffix.lower() == ".pdb":
                mol = Chem.MolFromPDBFile(text, removeHs=False)
            else:
                mol = Chem.MolFromMolFile(text, removeHs=False)
            if mol is None:
                raise InvalidMoleculeError(text, "RDKit cannot read the file")
            return to_structure(mol, name or path.stem)
        from simulation.datasets import embed

        return to_structure(embed(text, n_conformers=1, seed=0), name or text)
    if isinstance(molecule, Chem.Mol):
        source = name or (Chem.MolToSmiles(Chem.RemoveHs(molecule)) if molecule.GetNumAtoms() else "molecule")
        if molecule.GetNumConformers() == 0 or not molecule.GetConformer().Is3D():
            raise InvalidMoleculeError(
                source, "no 3D coordinates", hint="embed it first, e.g. simulation.datasets.embed(smiles)"
            )
        if any(a.GetNumImplicitHs() for a in molecule.GetAtoms()):
            raise InvalidMoleculeError(
                source, "implicit hydrogens", hint="add them with Chem.AddHs(mol, addCoords=True)"
            )
        z = np.array([a.GetAtomicNum() for a in molecule.GetAtoms()])
        z, x = check_geometry(z, molecule.GetConformer().GetPositions(), source=source)
        bonds = [(b.GetBeginAtomIdx(), b.GetEndAtomIdx()) for b in molecule.GetBonds()]
        return Structure3D(z, x, bonds, name=source)
    raise TypeError(f"cannot make a 3D structure from {type(molecule).__name__}")


def create_force(
    potential: EquivariantPotential,
    numbers: Sequence[int] | np.ndarray,
    *,
    periodic: bool = False,
    compile: bool = False,
) -> openmm.PythonForce:
    """An ``openmm.PythonForce`` evaluating ``potential`` on all particles (in order ``numbers``).

    Untrained elements raise :class:`~workbench.errors.UnsupportedElementError` here, before any Context is
    made. With ``periodic=True`` the box vectors of the State are used as the cell. An
    :class:`EquivariantPotential` runs through :class:`simulation.fast.FastPotential` (a static all-pairs graph
    for molecules; ``compile=True`` compiles forward and backward with ``torch.compile``, worth it for long
    runs); a :class:`~simulation.quantize.potential.QuantizedPotential` does so when compiled. Otherwise, and
    for any other module with the same interface, its own ``energy_and_forces`` runs on a neighbour list.
    """
    from simulation.fast import FastPotential

    z = torch.as_tensor(np.asarray(numbers), dtype=torch.long).reshape(-1)
    potential.element_indices(z, "OpenMM system")
    dtype = next(potential.parameters()).dtype
    # A quantized model takes the static graph only when compiled: eager, its per-pair activation rounding makes
    # the all-pairs graph slower than a neighbour list (39 atoms: 182 vs 101 ms per call).
    if isinstance(potential, EquivariantPotential) or (compile and isinstance(potential, QuantizedGraphInterface)):
        evaluate = FastPotential(potential, z, compile=compile, periodic=periodic, source="OpenMM system")
    else:  # quantized eager, or any other module with the same interface: its energy_and_forces on a neighbour list
        batch = torch.zeros(z.shape[0], dtype=torch.long)

        def evaluate(x: torch.Tensor, cell: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
            neighbours = neighbour_list(x, potential.config.cutoff, batch, cell)
            energy, forces = potential.energy_and_forces(z, x, batch, cell, 1, neighbours=neighbours)
            return energy.detach()[0], forces.detach()

    buffer = np.empty((z.shape[0], 3), dtype=np.float64)  # positions in nm, refilled every step
    fast_read = hasattr(openmm.State, "_getVectorAsNumpy")

    def compute(state: openmm.State) -> tuple[float, np.ndarray]:
        if fast_read:  # straight into the buffer, without the unit-wrapped copy of getPositions(asNumpy=True)
            state._getVectorAsNumpy(openmm.State.Positions, buffer)
        else:
            buffer[:] = state.getPositions(asNumpy=True).value_in_unit(openmm.unit.nanometer)
        x = torch.from_numpy(buffer * 10.0).to(dtype)  # Angstrom
        cell = None
        if periodic:
            box = state.getPeriodicBoxVectors(asNumpy=True).value_in_unit(openmm.unit.nanometer)
            cell = torch.as_tensor(np.asarray(box) * 10.0, dtype=dtype)
        energy, forces = evaluate(x, cell)
        f = forces.numpy().astype(np.float64) * (EV_TO_KJ_PER_MOL * 10.0)  # eV/A -> kJ/mol/nm
        return float(energy) * EV_TO_KJ_PER_MOL, f

    force = openmm.PythonForce(compute)
    force.setUsesPeriodicBoundaryConditions(bool(periodic))
    force.setName(f"EquivariantPotential({','.join(element_symbol(e) for e in potential.elements)})")
    return force


def _topology(structure: Structure3D) -> app.Topology:
    topology = app.Topology()
    chain = topology.addChain()
    residue = topology.addResidue("MOL", chain)
    atoms = []
    counts: dict[str, int] = {}
    for z in structure.numbers:
        symbol = element_symbol(int(z))
        counts[symbol] = counts.get(symbol, 0) + 1
        atoms.append(topology.addAtom(f"{symbol}{counts[symbol]}", app.Element.getByAtomicNumber(int(z)), residue))
    for a, b in structure.bonds:
        topology.addBond(atoms[a], atoms[b])
    if structure.cell is not None:
        topology.setPeriodicBoxVectors(openmm.unit.Quantity(structure.cell / 10.0, openmm.unit.nanometer))
    return topology


def create_system(
    molecule: object,
    potential: str | os.PathLike | EquivariantPotential = "workbench-organic",
    *,
    compile: bool = False,
) -> tuple[openmm.System, app.Topology, openmm.unit.Quantity]:
    """``(system, topology, positions)`` for ``molecule`` (see :func:`to_structure`) driven by ``potential``.

    Masses come from the elements; the only force is the potential's ``PythonForce`` (periodic when the
    structure has a cell; ``compile`` as in :func:`create_force`). Positions are returned in nm as an OpenMM
    ``Quantity``.
    """
    structure = to_structure(molecule)
    model = load_potential(potential)
    system = openmm.System()
    for z in structure.numbers:
        system.addParticle(app.Element.getByAtomicNumber(int(z)).mass)
    periodic = structure.cell is not None
    if periodic:
        a, b, c = (openmm.Vec3(*row) * 0.1 for row in structure.cell)
        system.setDefaultPeriodicBoxVectors(a, b, c)
    system.addForce(create_force(model, structure.numbers, periodic=periodic, compile=compile))
    positions = openmm.unit.Quantity(structure.positions / 10.0, openmm.unit.nanometer)
    return system, _topology(structure), positions
