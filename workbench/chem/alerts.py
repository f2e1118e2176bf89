"""Structural alerts (PAINS, Brenk, NIH) from RDKit's FilterCatalog, with an exact pre-screen.

RDKit spends roughly the same ~10 µs on every pattern it tries, matching or not, so the 765 patterns of
the three catalogs cost several milliseconds per molecule. Most patterns cannot match because the
molecule lacks atoms the pattern requires (e.g. three aromatic nitrogens and a sulfur). This module reads
each pattern's query, counts the atoms and bonds it definitely requires (element and aromaticity where the
pattern fixes them, bond orders between known elements), and tries only the patterns whose requirements
the molecule's own counts meet. The screen only
ever skips patterns that cannot match, so results are identical to the full catalog (tested on real
corpora, including RDKit's PAINS test set). A pattern whose query cannot be read is always tried.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import numpy as np
from rdkit import Chem
from rdkit.Chem import FilterCatalog

__all__ = [
    "AlertCatalog",
    "MoleculeArrays",
    "alert_catalog",
    "molecule_arrays",
    "molecule_features",
    "pattern_requirements",
]

_RDKIT_MOL_MAGIC = b"\xef\xbe\xad\xde"
_BOND_ORDERS = {1: Chem.BondType.SINGLE, 2: Chem.BondType.DOUBLE, 3: Chem.BondType.TRIPLE, 12: Chem.BondType.AROMATIC}
_ORDER_OF = {v: k for k, v in _BOND_ORDERS.items()}

# Features are counts a molecule must have for a pattern to match:
#   ("a", z, arom)   atoms of element z; arom is None (any), True (aromatic) or False (aliphatic)
#   ("b", o, z1, z2) bonds of order o between elements z1 <= z2; z = 0 means "any element"
#   ("s", options)   atoms matching any of a set of (z, arom) options (an OR of elements in a pattern);
#                    counted as the sum over options, which can only over-count (never skips a match)
# For a molecule each bond is counted once per feature it can serve, and a substructure match maps
# pattern atoms/bonds injectively onto molecule atoms/bonds, so a match implies every count is met.


@dataclass(frozen=True)
class MoleculeArrays:
    """A molecule reduced to the arrays the screen needs (computed once, shared by all catalogs)."""

    atom_keys: np.ndarray  # (atoms,) 3*z + 1 (aromatic) or 3*z + 2 (aliphatic)
    bond_order: np.ndarray  # (bonds,) 1, 2, 3 or 12 (aromatic); 0 for other bond types
    bond_zlo: np.ndarray  # (bonds,) smaller atomic number of the two ends
    bond_zhi: np.ndarray  # (bonds,) larger atomic number


def molecule_arrays(mol: Chem.Mol) -> MoleculeArrays:
    z = np.fromiter((a.GetAtomicNum() for a in mol.GetAtoms()), dtype=np.int64, count=mol.GetNumAtoms())
    arom = np.zeros(len(z), dtype=bool)
    arom[[a.GetIdx() for a in mol.GetAromaticAtoms()]] = True
    keys = 3 * np.minimum(z, 127) + np.where(arom, 1, 2)
    adjacency = Chem.GetAdjacencyMatrix(mol, useBO=True)
    rows, cols = np.nonzero(np.triu(adjacency))
    raw = adjacency[rows, cols]
    order = np.select([raw == 1.0, raw == 2.0, raw == 3.0, raw == 1.5], [1, 2, 3, 12], default=0)
    za, zb = z[rows], z[cols]
    return MoleculeArrays(keys, order, np.minimum(za, zb), np.maximum(za, zb))


def molecule_features(mol: Chem.Mol) -> dict[tuple, int]:
    """Counts of every atom and bond screening feature in a molecule (reference implementation)."""
    counts: dict[tuple, int] = {}
    elements = []
    for atom in mol.GetAtoms():
        z = atom.GetAtomicNum()
        elements.append(z)
        for key in (("a", z, None), ("a", z, atom.GetIsAromatic())):
            counts[key] = counts.get(key, 0) + 1
    for bond in mol.GetBonds():
        order = _ORDER_OF.get(bond.GetBondType())
        if order is None:
            continue
        za, zb = sorted((elements[bond.GetBeginAtomIdx()], elements[bond.GetEndAtomIdx()]))
        for key in {("b", order, 0, 0), ("b", order, za, zb), ("b", order, za, 0), ("b", order, zb, 0)}:
            counts[key] = counts.get(key, 0) + 1
    return counts


def _query_mol(entry) -> Chem.Mol | None:
    """The pattern of a FilterCatalog entry, read from its serialized form (an RDKit binary mol)."""
    try:
        blob = entry.Serialize()
        start = blob.find(_RDKIT_MOL_MAGIC)
        if start < 2:
            return None
        length_start = blob.rfind(b" ", 0, start - 1) + 1
        length = int(blob[length_start : start - 1])
        return Chem.Mol(blob[start : start + length])
    except Exception:  # an unreadable pattern is simply never screened out
        return None


def _atom_alternatives(description: str) -> frozenset | None:
    """For a query atom that is an OR of alternatives each requiring an element: the (element, aromaticity)
    options, one per alternative. ``None`` when any alternative requires no definite element."""
    lines = [ln for ln in description.splitlines() if ln.strip()]
    if not lines or lines[0].strip() != "AtomOr":
        return None
    options = set()
    stack = [(lines[0], 0)]
    i = 1
    # walk the OR tree: nested ORs are flattened; every other child must itself require an element
    while i < len(lines):
        line = lines[i]
        indent = len(line) - len(line.lstrip())
        body = line.strip()
        while stack and indent <= stack[-1][1]:
            stack.pop()
        parent_is_or = bool(stack) and stack[-1][0].strip() == "AtomOr"
        if not parent_is_or:
            i += 1
            continue
        if body == "AtomOr":
            stack.append((line, indent))
            i += 1
            continue
        j = i + 1
        while j < len(lines) and len(lines[j]) - len(lines[j].lstrip()) > indent:
            j += 1
        child = "\n".join(ln[indent:] for ln in lines[i:j])
        found = _atom_requirement(child)
        if found is None:
            return None
        options.add(found)
        i = j
    return frozenset(options) or None


def _atom_requirement(description: str) -> tuple[int, bool | None] | None:
    """(element, aromaticity) a query atom definitely requires, from RDKit's DescribeQuery() text."""
    lines = [ln for ln in description.splitlines() if ln.strip()]
    if not lines:
        return None
    top = lines[0].strip()
    if top.startswith(("AtomAtomicNum", "AtomType")):
        return _atom_leaf(top)
    if top == "AtomAnd":
        # direct children of the AND are indented by exactly two spaces
        found = [_atom_leaf(ln.strip()) for ln in lines[1:] if ln.startswith("  ") and not ln.startswith("   ")]
        found = [f for f in found if f is not None]
        specific = [f for f in found if f[1] is not None]
        return (specific or found or [None])[0]
    return None


def _atom_leaf(line: str) -> tuple[int, bool | None] | None:
    parts = line.split()
    if len(parts) < 4 or parts[2] != "=" or parts[3] != "val":
        return None  # negated or range queries require nothing definite
    try:
        value = int(parts[1])
    except ValueError:
        return None
    if parts[0] == "AtomAtomicNum":
        return (value, None) if value > 0 else None
    if parts[0] == "AtomType":
        aromatic = value >= 1000
        z = value - 1000 if aromatic else value
        return (z, aromatic) if z > 0 else None
    return None


def _bond_order(description: str) -> int | None:
    top = description.splitlines()[0].split() if description.strip() else []
    if len(top) >= 4 and top[0] == "BondOrder" and top[2] == "=" and top[3] == "val":
        order = int(top[1])
        return order if order in _BOND_ORDERS else None
    return None


def _split_top(text: str, sep: str) -> list[str]:
    """Split at ``sep`` characters outside parentheses and brackets."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        elif ch == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


_TEXT_ELEMENT = re.compile(r"^(?:#(\d+)|(Cl|Br|[BCNOSPFI])|(se|as|[cnosp]))$")


def _term_requirement(term: str) -> tuple[int, bool | None] | None:
    """Requirement of one SMARTS atom primitive: an element (``#7``, ``N``, ``n``) or ``$(...)``'s anchor."""
    term = term.strip()
    if term.startswith("$(") and term.endswith(")"):
        sub = Chem.MolFromSmarts(term[2:-1])
        if sub is None or sub.GetNumAtoms() == 0:
            return None
        return _atom_requirement(sub.GetAtomWithIdx(0).DescribeQuery())
    match = _TEXT_ELEMENT.match(term)
    if not match:
        return None
    if match.group(1):
        return (int(match.group(1)), None) if int(match.group(1)) > 0 else None
    if match.group(2):
        return (Chem.GetPeriodicTable().GetAtomicNumber(match.group(2)), False)
    return (Chem.GetPeriodicTable().GetAtomicNumber(match.group(3).capitalize()), True)


def _smarts_requirement(atom_smarts: str) -> tuple[str, object] | None:
    """From an atom's SMARTS text (used for recursive SMARTS, which DescribeQuery does not show):
    ``("one", (z, arom))`` for a definite requirement or ``("any", {options})`` for an OR of them."""
    text = atom_smarts.strip()
    if not (text.startswith("[") and text.endswith("]")):
        return None
    for and_term in _split_top(text[1:-1], ";"):  # every ';' term must hold: any one of them is a requirement
        alternatives = _split_top(and_term, ",")
        options = []
        for alternative in alternatives:
            found = None
            for piece in _split_top(alternative, "&"):  # every '&' piece holds: take a definite one
                if piece.startswith("!"):
                    continue
                found = found or _term_requirement(piece)
            if found is None:
                options = None
                break
            options.append(found)
        if not options:
            continue
        if len(set(options)) == 1:
            return ("one", options[0])
        return ("any", frozenset(options))
    return None


def pattern_requirements(query: Chem.Mol) -> dict[tuple, int]:
    """Feature counts a query definitely requires (see :func:`molecule_features`)."""
    req: dict[tuple, int] = {}
    descriptions = [a.DescribeQuery() for a in query.GetAtoms()]
    atoms = [_atom_requirement(d) for d in descriptions]
    for atom, found, description in zip(query.GetAtoms(), atoms, descriptions, strict=True):
        if found is not None:
            z, arom = found
            keys = [("a", z, None)] + ([("a", z, arom)] if arom is not None else [])
            for key in keys:
                req[key] = req.get(key, 0) + 1
        else:
            options = _atom_alternatives(description)
            if not options and "RecursiveStructure" in description:
                found = _smarts_requirement(atom.GetSmarts())
                if found is not None and found[0] == "one":
                    z, arom = found[1]
                    for key in [("a", z, None)] + ([("a", z, arom)] if arom is not None else []):
                        req[key] = req.get(key, 0) + 1
                    continue
                options = found[1] if found is not None else None
            if options:
                key = ("s", options)
                req[key] = req.get(key, 0) + 1
    for bond in query.GetBonds():
        order = _bond_order(bond.GetDescribeQuery() if hasattr(bond, "GetDescribeQuery") else bond.DescribeQuery())
        if order is None:
            continue
        za = atoms[bond.GetBeginAtomIdx()][0] if atoms[bond.GetBeginAtomIdx()] else 0
        zb = atoms[bond.GetEndAtomIdx()][0] if atoms[bond.GetEndAtomIdx()] else 0
        za, zb = sorted((za, zb))
        if za and zb:
            key = ("b", order, za, zb)
        elif za or zb:
            key = ("b", order, za or zb, 0)
        else:
            key = ("b", order, 0, 0)
        req[key] = req.get(key, 0) + 1
        if key != ("b", order, 0, 0):
            req[("b", order, 0, 0)] = req.get(("b", order, 0, 0), 0) + 1
    return req


@dataclass
class AlertCatalog:
    """One RDKit FilterCatalog with per-pattern requirement matrices for screening."""

    name: str
    entries: list
    atom_table: np.ndarray  # (atom features, 384) which atom keys each atom feature counts
    atom_required: np.ndarray  # (patterns, atom features)
    bond_spec: np.ndarray  # (bond features, 3): order, z1, z2 (0 = any)
    bond_required: np.ndarray  # (patterns, bond features)

    @classmethod
    def build(cls, name: str) -> AlertCatalog:
        params = FilterCatalog.FilterCatalogParams()
        params.AddCatalog(getattr(FilterCatalog.FilterCatalogParams.FilterCatalogs, name))
        catalog = FilterCatalog.FilterCatalog(params)
        entries = [catalog.GetEntryWithIdx(i) for i in range(catalog.GetNumEntries())]
        reqs = []
        for entry in entries:
            query = _query_mol(entry)
            reqs.append(pattern_requirements(query) if query is not None else {})
        atom_features = sorted({f for r in reqs for f in r if f[0] != "b"}, key=repr)
        bond_features = sorted({f for r in reqs for f in r if f[0] == "b"}, key=repr)
        atom_table = np.zeros((len(atom_features), 384), dtype=np.int32)
        for i, f in enumerate(atom_features):
            options = f[1] if f[0] == "s" else [(f[1], f[2])]
            for z, arom in options:
                if z >= 128:
                    continue
                for aromatic in (True, False):
                    if arom is None or arom == aromatic:
                        atom_table[i, 3 * z + (1 if aromatic else 2)] = 1
        bond_spec = np.array([f[1:] for f in bond_features], dtype=np.int64).reshape(-1, 3)
        atom_required = np.zeros((len(entries), len(atom_features)), dtype=np.int32)
        bond_required = np.zeros((len(entries), len(bond_features)), dtype=np.int32)
        a_col = {f: i for i, f in enumerate(atom_features)}
        b_col = {f: i for i, f in enumerate(bond_features)}
        for row, req in enumerate(reqs):
            for f, n in req.items():
                if f[0] == "b":
                    bond_required[row, b_col[f]] = n
                else:
                    atom_required[row, a_col[f]] = n
        return cls(name, entries, atom_table, atom_required, bond_spec, bond_required)

    def candidates(self, arrays: MoleculeArrays) -> np.ndarray:
        """Indices of patterns the molecule could match, given its screening arrays."""
        atom_have = self.atom_table[:, arrays.atom_keys].sum(axis=1)
        order, z1, z2 = self.bond_spec[:, :1], self.bond_spec[:, 1:2], self.bond_spec[:, 2:3]
        lo, hi = arrays.bond_zlo[None, :], arrays.bond_zhi[None, :]
        ends = np.where(z2 > 0, (lo == z1) & (hi == z2), np.where(z1 > 0, (lo == z1) | (hi == z1), True))
        bond_have = ((arrays.bond_order[None, :] == order) & ends).sum(axis=1)
        ok = (self.atom_required <= atom_have).all(axis=1) & (self.bond_required <= bond_have).all(axis=1)
        return np.flatnonzero(ok)

    def matches(self, mol: Chem.Mol, arrays: MoleculeArrays | None = None) -> list[tuple[str, list[int]]]:
        """(description, matched atom indices) for every pattern that matches ``mol``."""
        if arrays is None:
            arrays = molecule_arrays(mol)
        out = []
        for k in self.candidates(arrays):
            entry = self.entries[k]
            if entry.HasFilterMatch(mol):
                atoms = sorted({a for match in entry.GetFilterMatches(mol) for _, a in match.atomPairs})
                out.append((entry.GetDescription(), atoms))
        return out


@functools.cache
def alert_catalog(name: str) -> AlertCatalog:
    """The screened catalog for ``"PAINS"``, ``"BRENK"`` or ``"NIH"`` (built once per process)."""
    return AlertCatalog.build(name)
