"""`Molecule`: an immutable wrapper over an RDKit molecule whose identity is its canonical SMILES.

>>> from workbench.chem import Molecule
>>> m = Molecule.from_smiles("OCC")
>>> m.smiles, round(m.mw, 2), m.hbd
('CCO', 46.07, 1)
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np
from rdkit import Chem, RDLogger
from rdkit.Chem import rdDetermineBonds

from workbench.chem import properties as _props
from workbench.errors import ConformerError, InvalidMoleculeError

if TYPE_CHECKING:  # pragma: no cover
    import pymatgen.core

__all__ = ["Molecule", "describe_problems"]

RDLogger.DisableLog("rdApp.*")  # problems are reported through exceptions and ValidationReports instead


def describe_problems(mol: Chem.Mol) -> list[tuple[str, str, tuple[int, ...]]]:
    """Explain why an unsanitized RDKit molecule fails sanitization.

    Returns (kind, message, atom indices) triples, empty when the molecule sanitizes.
    """
    out = []
    for problem in Chem.DetectChemistryProblems(mol):
        kind = problem.GetType()
        if hasattr(problem, "GetAtomIndices"):
            atoms = tuple(problem.GetAtomIndices())
        elif hasattr(problem, "GetAtomIdx"):
            atoms = (problem.GetAtomIdx(),)
        else:  # pragma: no cover - RDKit adds new kinds from time to time
            atoms = ()
        out.append((kind, problem.Message(), atoms))
    return out


def smiles_syntax_problem(text: str) -> str | None:
    """A plain-language reason for the commonest SMILES syntax errors, or None if none is obvious."""
    if text.count("(") != text.count(")"):
        return f"unbalanced parentheses ({text.count('(')} '(' vs {text.count(')')} ')')"
    if text.count("[") != text.count("]"):
        return f"unbalanced brackets ({text.count('[')} '[' vs {text.count(']')} ']')"
    outside = re.sub(r"\[[^\]]*\]", "", text)
    labels = re.findall(r"%\d\d|\d", outside)
    open_rings = sorted({lab for lab in labels if labels.count(lab) % 2})
    if open_rings:
        return f"unclosed ring bond {', '.join(open_rings)}"
    for symbol in re.findall(r"\[(?:\d+)?([A-Z][a-z]?|[a-z]{1,2})", text):
        if symbol.capitalize() not in _ELEMENT_SYMBOLS and symbol not in ("se", "as", "te"):
            return f"unknown element symbol {symbol!r}"
    return None


_ELEMENT_SYMBOLS = {Chem.GetPeriodicTable().GetElementSymbol(z) for z in range(1, 119)}


def _parse_reason(mol: Chem.Mol | None, what: str, text: str = "") -> str:
    if mol is None:
        hint = smiles_syntax_problem(text) if what == "SMILES" and text else None
        return f"not a parseable {what}" + (f": {hint}" if hint else "")
    problems = describe_problems(mol)
    if problems:
        return "; ".join(msg for _, msg, _ in problems)
    return f"RDKit could not sanitize this {what}"


class Molecule:
    """An immutable molecule. Two Molecules are equal when their canonical isomeric SMILES are equal.

    Construct with :meth:`from_smiles`, :meth:`from_molblock`, :meth:`from_sdf`, :meth:`from_xyz`,
    :meth:`from_pymatgen` or :meth:`from_rdkit`; ``Molecule("CCO")`` is short for ``from_smiles``.
    Properties (``mw``, ``clogp``, ``qed``, ``sa`` ... see :data:`workbench.chem.properties.PROPERTIES`)
    are computed on first use and cached. ``meta`` carries annotations (name, source, reports) that do
    not change identity.
    """

    __slots__ = ("_mol", "_smiles", "_meta", "_cache", "_graph")

    def __init__(self, source: str | Chem.Mol | Molecule, *, meta: Mapping[str, Any] | None = None, **extra: Any):
        if extra:
            meta = {**(meta or {}), **extra}
        if isinstance(source, Molecule):
            mol, smiles = source._mol, source._smiles
            meta = {**source._meta, **(meta or {})}
        elif isinstance(source, Chem.Mol):
            mol = _sanitized_copy(source, "RDKit molecule")
            smiles = None
        elif isinstance(source, str):
            mol = _mol_from_smiles(source)
            smiles = None
        else:
            raise TypeError(f"Molecule() takes a SMILES string or an RDKit Mol, not {type(source).__name__}")
        object.__setattr__(self, "_mol", mol)
        object.__setattr__(self, "_smiles", smiles)  # computed on first use when None
        object.__setattr__(self, "_meta", MappingProxyType(dict(meta or {})))
        object.__setattr__(self, "_cache", {})
        object.__setattr__(self, "_graph", None)

    @classmethod
    def _wrap_sanitized(cls, mol: Chem.Mol, meta: Mapping[str, Any] | None = None) -> Molecule:
        """Wrap a freshly sanitized RDKit molecule that nobody else holds (no copy, no re-sanitization)."""
        new = cls.__new__(cls)
        object.__setattr__(new, "_mol", mol)
        object.__setattr__(new, "_smiles", None)
        object.__setattr__(new, "_meta", MappingProxyType(dict(meta or {})))
        object.__setattr__(new, "_cache", {})
        object.__setattr__(new, "_graph", None)
        return new

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_smiles(cls, smiles: str, **meta: Any) -> Molecule:
        """Parse and sanitize a SMILES string; raises InvalidMoleculeError with the reason."""
        return cls(_mol_from_smiles(smiles), meta=meta or None)

    @classmethod
    def from_rdkit(cls, mol: Chem.Mol, **meta: Any) -> Molecule:
        """Wrap (a sanitized copy of) an RDKit molecule; coordinates and explicit Hs are kept."""
        return cls(mol, meta=meta or None)

    @classmethod
    def from_molblock(cls, block: str, **meta: Any) -> Molecule:
        """Read an MDL Molfile block, keeping hydrogens and coordinates."""
        if not isinstance(block, str) or not block.strip():
            raise InvalidMoleculeError(block, "empty molblock")
        raw = Chem.MolFromMolBlock(block, sanitize=False, removeHs=False)
        if raw is None:
            raise InvalidMoleculeError(_first_line(block), "not a parseable molblock")
        mol = _sanitized_copy(raw, _first_line(block) or "molblock")
        _check_coordinates(mol, _first_line(block) or "molblock")
        name = raw.GetProp("_Name") if raw.HasProp("_Name") else ""
        if name and "name" not in meta:
            meta["name"] = name
        return cls(mol, meta=meta or None)

    @classmethod
    def from_sdf(cls, path: str, **meta: Any) -> Molecule:
        """Read the first record of an SDF file (see :func:`workbench.chem.io.read_sdf` for many)."""
        with open(path) as fh:
            text = fh.read()
        block = text.split("$$$$")[0]
        return cls.from_molblock(block, **meta)

    @classmethod
    def from_xyz(cls, xyz: str, charge: int = 0, **meta: Any) -> Molecule:
        """Read an XYZ block (or file path) and perceive bonds with RDKit's rdDetermineBonds.

        ``charge`` is the molecule's total charge; bond orders are assigned to match it.
        """
        text = _read_text_or_path(xyz)
        n_atoms, title = _check_xyz(text)
        raw = Chem.MolFromXYZBlock(text)
        if raw is None:
            raise InvalidMoleculeError(title or "xyz", "not a parseable XYZ block (check element symbols)")
        if raw.GetNumAtoms() != n_atoms:
            raise InvalidMoleculeError(title or "xyz", f"header says {n_atoms} atoms, read {raw.GetNumAtoms()}")
        _check_coordinates(raw, title or "xyz")
        try:
            rdDetermineBonds.DetermineBonds(raw, charge=int(charge))
        except Exception as exc:  # RDKit raises ValueError/RuntimeError for impossible charge states
            raise InvalidMoleculeError(
                title or "xyz",
                f"could not assign bonds with total charge {charge}: {exc}",
                hint="check the charge argument and that the geometry is a single sensible molecule",
            ) from None
        mol = _sanitized_copy(raw, title or "xyz")
        if title and "name" not in meta:
            meta["name"] = title
        return cls(mol, meta=meta or None)

    @classmethod
    def from_pymatgen(cls, molecule: pymatgen.core.Molecule, **meta: Any) -> Molecule:
        """Convert a pymatgen ``Molecule`` (its charge is used for bond perception)."""
        lines = [str(len(molecule)), ""]
        for site in molecule:
            x, y, z = site.coords
            lines.append(f"{site.specie.symbol} {x:.8f} {y:.8f} {z:.8f}")
        return cls.from_xyz("\n".join(lines) + "\n", charge=int(round(molecule.charge)), **meta)

    # ------------------------------------------------------------------ identity
    @property
    def smiles(self) -> str:
        """Canonical isomeric SMILES: the identity of this molecule."""
        if self._smiles is None:
            object.__setattr__(self, "_smiles", _identity(self._mol))
        return self._smiles

    @property
    def meta(self) -> Mapping[str, Any]:
        """Read-only annotations (name, source, reports...). They do not affect identity."""
        return self._meta

    @property
    def name(self) -> str:
        return str(self._meta.get("name", ""))

    def with_meta(self, **meta: Any) -> Molecule:
        """A copy with annotations added or replaced (the RDKit molecule is shared, not copied)."""
        new = Molecule.__new__(Molecule)
        object.__setattr__(new, "_mol", self._mol)
        object.__setattr__(new, "_smiles", self._smiles)
        object.__setattr__(new, "_meta", MappingProxyType({**self._meta, **meta}))
        object.__setattr__(new, "_cache", self._cache)  # same structure, same properties
        object.__setattr__(new, "_graph", self._graph)
        return new

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Molecule):
            return self.smiles == other.smiles
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.smiles)

    def __setattr__(self, key: str, value: Any) -> None:
        raise AttributeError("Molecule is immutable; use with_meta() or with_positions() for a modified copy")

    def __delattr__(self, key: str) -> None:
        raise AttributeError("Molecule is immutable")

    def __reduce__(self):
        """Picklable for process pools and Dask.

        RDKit's binary form with conformers (double-precision coordinates) and atom properties, plus the
        canonical SMILES and the property cache: ~10x faster than a molblock round trip, and exact.
        """
        options = Chem.PropertyPickleOptions.AllProps | Chem.PropertyPickleOptions.CoordsAsDouble
        binary = self._mol.ToBinary(options)
        return (_rebuild_binary, (binary, dict(self._meta), self._smiles, dict(self._cache)))

    def __repr__(self) -> str:
        return f"Molecule({self.smiles!r})"

    def __str__(self) -> str:
        return self.smiles

    # ------------------------------------------------------------------ structure
    def to_rdkit(self) -> Chem.Mol:
        """A copy of the underlying RDKit molecule (safe to modify)."""
        return Chem.Mol(self._mol)

    @property
    def graph(self) -> Chem.Mol:
        """The heavy-atom graph (hydrogens implicit) used for properties and rules. Do not modify."""
        if self._graph is None:
            graph = Chem.RemoveHs(self._mol, sanitize=True) if _has_explicit_h(self._mol) else self._mol
            object.__setattr__(self, "_graph", graph)
        return self._graph

    @property
    def num_atoms(self) -> int:
        """Number of atoms in the stored structure (explicit hydrogens included if present)."""
        return self._mol.GetNumAtoms()

    @property
    def has_3d(self) -> bool:
        """True when the molecule carries 3D coordinates."""
        return self._mol.GetNumConformers() > 0 and self._mol.GetConformer().Is3D()

    @property
    def symbols(self) -> list[str]:
        return [a.GetSymbol() for a in self._mol.GetAtoms()]

    @property
    def atomic_numbers(self) -> np.ndarray:
        return np.array([a.GetAtomicNum() for a in self._mol.GetAtoms()], dtype=np.int64)

    @property
    def positions(self) -> np.ndarray:
        """Coordinates in Å, shape (atoms, 3); raises ConformerError when there are none."""
        self._require_3d()
        return np.array(self._mol.GetConformer().GetPositions(), dtype=np.float64)

    def _require_3d(self) -> None:
        if not self.has_3d:
            raise ConformerError(self.smiles, "this molecule has no 3D coordinates; use chem.conformers.embed(mol)")

    def with_positions(self, positions: np.ndarray) -> Molecule:
        """A copy with new 3D coordinates (Å) for the stored atoms."""
        pos = np.asarray(positions, dtype=np.float64)
        if pos.shape != (self._mol.GetNumAtoms(), 3):
            raise ValueError(f"positions must have shape ({self._mol.GetNumAtoms()}, 3), got {pos.shape}")
        if not np.isfinite(pos).all():
            raise InvalidMoleculeError(self.smiles, "positions contain NaN or infinite values")
        mol = Chem.Mol(self._mol)
        mol.RemoveAllConformers()
        conf = Chem.Conformer(mol.GetNumAtoms())
        for i, (x, y, z) in enumerate(pos):
            conf.SetAtomPosition(i, (float(x), float(y), float(z)))
        conf.Set3D(True)
        mol.AddConformer(conf, assignId=True)
        return Molecule(mol, meta=self._meta)

    # ------------------------------------------------------------------ properties
    def prop(self, name: str) -> float | int | str:
        """One property by name, computed once and cached."""
        cache = self._cache
        if name not in cache:
            group = _props.GROUPS.get(name)
            if group is not None:
                cache.update(group(self.graph, known=cache))
            else:
                cache[name] = _props.compute(name, self.graph)
        return cache[name]

    def properties(self, names: list[str] | tuple[str, ...] | None = None) -> dict[str, float | int | str]:
        """A dict of properties (all registered ones by default)."""
        return {n: self.prop(n) for n in (names or _props.PROPERTIES)}

    def validate(self, rules: Any = None):
        """Shortcut for :func:`workbench.chem.validate` on this molecule."""
        from workbench.chem.rules import validate

        return validate(self, rules) if rules is not None else validate(self)

    # ------------------------------------------------------------------ output
    def to_smiles(self, isomeric: bool = True) -> str:
        return self.smiles if isomeric else Chem.MolToSmiles(self.graph, isomericSmiles=False)

    def to_molblock(self) -> str:
        mol = self._mol
        if self.name:
            mol = Chem.Mol(mol)
            mol.SetProp("_Name", self.name)
        return Chem.MolToMolBlock(mol)

    def to_xyz(self) -> str:
        """XYZ block (requires 3D coordinates)."""
        self._require_3d()
        return Chem.MolToXYZBlock(self._mol)

    def to_pdb(self) -> str:
        """PDB block (requires 3D coordinates)."""
        self._require_3d()
        return Chem.MolToPDBBlock(self._mol)

    def to_pymatgen(self) -> pymatgen.core.Molecule:
        """A pymatgen ``Molecule`` with the 3D coordinates and net charge (requires 3D coordinates)."""
        from pymatgen.core import Molecule as PmgMolecule

        return PmgMolecule(self.symbols, self.positions, charge=int(self.charge))

    def to_svg(self, size: tuple[int, int] = (250, 200), highlight: list[int] | None = None) -> str:
        from workbench.chem.depict import to_svg

        return to_svg(self, size=size, highlight=highlight)

    def _repr_html_(self) -> str:
        from workbench.chem.depict import molecule_card

        return molecule_card(self)


# Expose every registered property as a read-only attribute: m.mw, m.qed, m.sa, ...
def _make_property(name: str, doc: str) -> property:
    return property(lambda self: self.prop(name), doc=doc)


for _name, _p in _props.PROPERTIES.items():
    setattr(Molecule, _name, _make_property(_name, _p.label + (f" [{_p.unit}]" if _p.unit else "")))


# ---------------------------------------------------------------------- helpers
def _rebuild_binary(binary: bytes, meta: dict, smiles: str | None, cache: dict) -> Molecule:
    new = Molecule._wrap_sanitized(Chem.Mol(binary), meta)
    object.__setattr__(new, "_smiles", smiles)
    new._cache.update(cache)
    return new


def _rebuild(block: str, meta: dict, has_3d: bool) -> Molecule:  # pickles written by older versions
    mol = Chem.MolFromMolBlock(block, sanitize=True, removeHs=False)
    if not has_3d:
        mol.RemoveAllConformers()
    return Molecule(mol, meta=meta)


def _identity(mol: Chem.Mol) -> str:
    graph = Chem.RemoveHs(mol) if _has_explicit_h(mol) else mol
    return Chem.MolToSmiles(graph)


def _has_explicit_h(mol: Chem.Mol) -> bool:
    return any(a.GetAtomicNum() == 1 for a in mol.GetAtoms())


def _first_line(block: str) -> str:
    return block.split("\n", 1)[0].strip() if isinstance(block, str) else ""


def _read_text_or_path(value: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidMoleculeError(value, "empty input")
    if "\n" not in value.strip():
        try:
            with open(value) as fh:
                return fh.read()
        except (OSError, ValueError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            raise InvalidMoleculeError(value, f"not an XYZ block and not a readable file ({reason})") from None
    return value


def _check_xyz(text: str) -> tuple[int, str]:
    lines = text.strip("\n").split("\n")
    try:
        n_atoms = int(lines[0].split()[0])
    except (ValueError, IndexError):
        raise InvalidMoleculeError(lines[0][:40], "XYZ must start with the atom count") from None
    title = lines[1].strip() if len(lines) > 1 else ""
    body = [ln for ln in lines[2:] if ln.strip()]
    if len(body) != n_atoms:
        raise InvalidMoleculeError(
            title or "xyz", f"XYZ header says {n_atoms} atoms but {len(body)} coordinate lines follow"
        )
    for i, ln in enumerate(body):
        parts = ln.split()
        if len(parts) < 4:
            raise InvalidMoleculeError(title or "xyz", f"coordinate line {i + 3} needs an element and x y z")
        try:
            coords = [float(v) for v in parts[1:4]]
        except ValueError:
            raise InvalidMoleculeError(title or "xyz", f"coordinate line {i + 3} has a non-numeric value") from None
        if not all(math.isfinite(c) for c in coords):
            raise InvalidMoleculeError(title or "xyz", f"atom {i} has NaN or infinite coordinates")
    return n_atoms, title


def _check_coordinates(mol: Chem.Mol, source: str) -> None:
    if mol.GetNumConformers():
        pos = mol.GetConformer().GetPositions()
        if not np.isfinite(pos).all():
            raise InvalidMoleculeError(source, "coordinates contain NaN or infinite values")


def _mol_from_smiles(smiles: str) -> Chem.Mol:
    if not isinstance(smiles, str):
        raise InvalidMoleculeError(smiles, f"expected a SMILES string, got {type(smiles).__name__}")
    text = smiles.strip()
    if not text:
        raise InvalidMoleculeError(smiles, "empty SMILES")
    if any(c.isspace() for c in text):
        raise InvalidMoleculeError(smiles, "SMILES contains whitespace; pass one molecule at a time")
    mol = Chem.MolFromSmiles(text)
    if mol is None:
        raw = Chem.MolFromSmiles(text, sanitize=False)
        raise InvalidMoleculeError(smiles, _parse_reason(raw, "SMILES", text))
    return mol


def _sanitized_copy(mol: Chem.Mol, source: str) -> Chem.Mol:
    copy = Chem.Mol(mol)
    try:
        Chem.SanitizeMol(copy)
    except Exception:
        raise InvalidMoleculeError(source, _parse_reason(Chem.Mol(mol), "molecule")) from None
    return copy
