"""pymatgen and ASE interop, and periodic boxes of molecules for condensed-phase dynamics.

>>> from simulation.materials import molecule_box, to_pymatgen                    # doctest: +SKIP
>>> box = molecule_box("CO", n=6, density=0.79, seed=0)   # doctest: +SKIP
>>> structure = to_pymatgen(box)   # a pymatgen Structure with the cell        # doctest: +SKIP
>>> traj = run(box, potential="workbench-organic", steps=200)   # doctest: +SKIP

The project's structure type is :class:`simulation.openmm.Structure3D` (atomic numbers, Cartesian positions in
Angstrom, bonds, an optional ``(3, 3)`` cell with lattice vectors as rows). pymatgen ``Molecule`` and ASE
``Atoms`` without periodicity map to a structure without a cell; a pymatgen ``Structure`` (and ``Atoms`` with
``pbc``) to one with a cell. Every simulation entry point (``create_system``, ``md.run``, the ASE calculator)
takes the result, and uses periodic boundaries when it has a cell.

Example — a periodic NVT run of a methanol box with the transferable potential (200 steps of 0.5 fs after a
minimisation took 2.4-3.2 minutes on one busy core of this machine; the O-O g(r) peaks at 2.75 A)::

    from simulation.materials import molecule_box
    from simulation.md import run
    from simulation import analysis

    box = molecule_box("CO", n=6, density=0.79, seed=0)   # 36 atoms in a 7.39 A cube
    traj = run(box, potential="workbench-organic", protocol="NVT", temperature=300, steps=200, report_every=4)
    oxygens = [i for i, z in enumerate(box.numbers) if z == 8]
    r, g = analysis.rdf(traj.positions, r_max=3.6, cell=box.cell, i_atoms=oxygens, j_atoms=oxygens)  # O-O g(r)
"""

from __future__ import annotations

import numpy as np

from simulation.openmm import Structure3D, to_structure
from simulation.reference import check_geometry
from workbench.errors import InvalidMoleculeError

__all__ = [
    "AMU_PER_A3_TO_G_PER_CM3",
    "from_pymatgen",
    "to_pymatgen",
    "from_ase",
    "to_ase",
    "molecule_box",
    "density",
]

AMU_PER_A3_TO_G_PER_CM3 = 1.66053906660  # 1 amu/A^3 in g/cm^3


def _symbols(numbers) -> list[str]:
    from ase.data import chemical_symbols

    return [chemical_symbols[int(z)] for z in numbers]


# ---------------------------------------------------------------------------------------------- pymatgen


def from_pymatgen(obj, name: str | None = None) -> Structure3D:
    """A :class:`Structure3D` from a pymatgen ``Molecule`` (no cell) or ``Structure`` (cell = lattice matrix).

    Only ordered structures (one element per site) are accepted; bonds are not carried by pymatgen, so the
    result has none (they are only used for topology output).
    """
    from pymatgen.core import Molecule, Structure

    if not isinstance(obj, (Molecule, Structure)):
        raise TypeError(f"expected a pymatgen Molecule or Structure, got {type(obj).__name__}")
    label = name or obj.composition.reduced_formula
    if not obj.is_ordered:
        raise InvalidMoleculeError(label, "disordered sites (partial occupancies)", hint="order the structure first")
    numbers = np.array([site.specie.Z for site in obj], dtype=np.int64)
    cell = np.array(obj.lattice.matrix, dtype=np.float64) if isinstance(obj, Structure) else None
    z, x = check_geometry(numbers, np.array(obj.cart_coords, dtype=np.float64), source=label)
    return Structure3D(z, x, [], cell=cell, name=label)


def to_pymatgen(structure):
    """A pymatgen ``Structure`` (when the structure has a cell) or ``Molecule`` from anything
    :func:`simulation.openmm.to_structure` accepts, or from ASE ``Atoms``."""
    from pymatgen.core import Lattice, Molecule, Structure

    s = from_ase(structure) if _is_atoms(structure) else to_structure(structure)
    species = _symbols(s.numbers)
    if s.cell is None:
        return Molecule(species, s.positions)
    return Structure(Lattice(s.cell), species, s.positions, coords_are_cartesian=True)


# ---------------------------------------------------------------------------------------------- ASE


def _is_atoms(obj) -> bool:
    try:
        from ase import Atoms
    except ImportError:  # pragma: no cover - ase is a dependency
        return False
    return isinstance(obj, Atoms)


def from_ase(atoms, name: str | None = None) -> Structure3D:
    """A :class:`Structure3D` from ASE ``Atoms`` (the cell is kept when ``pbc`` is set on all three axes)."""
    if not _is_atoms(atoms):
        raise TypeError(f"expected ase.Atoms, got {type(atoms).__name__}")
    label = name or atoms.get_chemical_formula()
    pbc = np.asarray(atoms.pbc, dtype=bool)
    if pbc.any() and not pbc.all():
        raise InvalidMoleculeError(
            label, f"periodic along some axes only (pbc={pbc.tolist()})", hint="use pbc=True or pbc=False"
        )
    cell = np.array(atoms.cell.array, dtype=np.float64) if pbc.all() else None
    z, x = check_geometry(atoms.numbers, atoms.positions, source=label)
    return Structure3D(z, x, [], cell=cell, name=label)


def to_ase(structure):
    """ASE ``Atoms`` from anything :func:`simulation.openmm.to_structure` accepts or a pymatgen object."""
    from ase import Atoms

    try:
        s = from_pymatgen(structure)
    except TypeError:
        s = to_structure(structure)
    if s.cell is None:
        return Atoms(numbers=s.numbers, positions=s.positions)
    return Atoms(numbers=s.numbers, positions=s.positions, cell=s.cell, pbc=True)


# ---------------------------------------------------------------------------------------------- boxes


def density(structure: Structure3D) -> float:
    """Mass density in g/cm^3 of a structure with a cell."""
    from ase.data import atomic_masses

    if structure.cell is None:
        raise InvalidMoleculeError(structure.name, "no periodic cell, so no density")
    mass = float(atomic_masses[np.asarray(structure.numbers)].sum())
    return mass / abs(np.linalg.det(structure.cell)) * AMU_PER_A3_TO_G_PER_CM3


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q = rng.normal(size=4)
    a, b, c, d = q / np.linalg.norm(q)
    return np.array(
        [
            [a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c)],
            [2 * (b * c + a * d), a * a - b * b + c * c - d * d, 2 * (c * d - a * b)],
            [2 * (b * d - a * c), 2 * (c * d + a * b), a * a - b * b - c * c + d * d],
        ]
    )


def molecule_box(
    smiles: str,
    n: int,
    density: float = 1.0,
    *,
    seed: int = 0,
    min_distance: float = 1.9,
    max_attempts: int = 2000,
) -> Structure3D:
    """A cubic periodic box of ``n`` copies of ``smiles`` at ``density`` g/cm^3, packed at random.

    The molecule is embedded once (ETKDGv3 + MMFF94, hydrogens included); each copy gets a random rotation and
    a random centre in the box, and is kept only if every atom is at least ``min_distance`` Angstrom from every
    atom already placed (periodic images included). The result has the cell and all bonds (offset per copy),
    ready for :func:`simulation.md.run` or :func:`simulation.openmm.create_system`. Same ``seed``, same box.

    Raises :class:`~workbench.errors.InvalidMoleculeError` when the molecules do not fit (lower ``density``
    or ``min_distance``) and ``ValueError`` for non-positive ``n`` or ``density``.
    """
    from ase.data import atomic_masses

    from simulation.datasets import embed

    if n < 1 or density <= 0:
        raise ValueError(f"need n >= 1 molecules and a positive density (g/cm^3), got n={n}, density={density}")
    mol = embed(smiles, n_conformers=1, seed=seed)
    numbers = np.array([a.GetAtomicNum() for a in mol.GetAtoms()], dtype=np.int64)
    template = np.asarray(mol.GetConformer().GetPositions(), dtype=np.float64)
    template -= template.mean(axis=0)
    bonds = [(b.GetBeginAtomIdx(), b.GetEndAtomIdx()) for b in mol.GetBonds()]
    mass = float(atomic_masses[numbers].sum())  # amu per molecule
    length = (n * mass * AMU_PER_A3_TO_G_PER_CM3 / density) ** (1.0 / 3.0)
    cell = np.eye(3) * length
    rng = np.random.default_rng(seed)
    placed: list[np.ndarray] = []
    attempts = 0
    while len(placed) < n:
        attempts += 1
        if attempts > max_attempts:
            raise InvalidMoleculeError(
                smiles,
                f"could not pack {n} molecules into a {length:.2f} A box at {density} g/cm^3 "
                f"(placed {len(placed)} after {max_attempts} attempts)",
                hint="lower the density or min_distance, or use fewer molecules",
            )
        candidate = template @ _random_rotation(rng).T + rng.uniform(0.0, length, size=3)
        if placed:
            others = np.concatenate(placed)
            d = candidate[:, None, :] - others[None, :, :]
            d -= np.round(d / length) * length
            if np.sqrt((d**2).sum(-1)).min() < min_distance:
                continue
        placed.append(candidate)
    k = len(numbers)
    all_bonds = [(a + m * k, b + m * k) for m in range(n) for a, b in bonds]
    return Structure3D(
        numbers=np.tile(numbers, n),
        positions=np.concatenate(placed),
        bonds=all_bonds,
        cell=cell,
        name=f"{n} x {smiles} box",
    )
