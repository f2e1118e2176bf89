"""Spec-guided placement: where a trace's fragments sit on its scaffold, chosen by RDKit to meet the spec.

A trace builds its answer from a scaffold and ``*``-fragments (``scaffold c1ccncc1 gives ... ; add *C(C)=O
gives ...``). It names *which* fragments, not *where* they go: :class:`~reasoning.grounding.TraceGrounder`
bonds each one to the first scaffold atom with room for it. Where a fragment sits changes rotatable bonds,
polar surface, logP, donors and acceptors, and whether a required group such as ``C(=O)N`` forms at all, so
the first-anchor rule alone often misses a spec the same atoms could meet.

:func:`best_placement` moves fragments between the scaffold's atoms (one at a time, keeping every move that
meets more of the spec, up to a budget of placements tried) and returns the placement meeting the most
constraints; the first-anchor build when none does better. The model still chooses the scaffold and every
fragment; only their positions are searched. Nothing is searched when the build already meets the spec or
fails a constraint no placement changes (heavy atoms, rings, aromatic rings, charge, elements).
The trace itself is not rewritten: its running estimates (grounded or sampled) describe the first-anchor
build, so position-dependent ones (tpsa, clogp, rotb, ...) can differ from the placed answer's values.

>>> from workbench.chem import DesignSpec
>>> from reasoning.grounding import TraceGrounder
>>> g = TraceGrounder([])
>>> for token in "scaffold C1CCNCC1 gives ; add *C(C)=O gives".split():
...     _ = g.push(token)
>>> Chem.MolToSmiles(g.partial)  # first anchor: a ring carbon, a ketone
'CC(=O)C1CCNCC1'
>>> Chem.MolToSmiles(best_placement(g, SpecScore(DesignSpec(require=["C(=O)N"]))))  # on the N: an amide
'CC(=O)N1CCCCC1'
"""

from __future__ import annotations

from collections.abc import Callable

from rdkit import Chem

from reasoning.grounding import TraceGrounder, _attach
from workbench.chem.properties import compute as compute_property

__all__ = ["SpecScore", "best_placement", "PLACEMENT_BUDGET"]

PLACEMENT_BUDGET = 24  # placements scored per build, at most (each ~1 ms)

# no placement changes these: every placement has the same atoms, rings and charges
_FIXED = frozenset({"heavy_atoms", "rings", "aromatic_rings", "charge", "formula"})
# scored last, since they cost the most (Crippen logP ~1 ms; QED and SA each more than all the others together)
_COSTLY = ("clogp", "qed", "sa")


class SpecScore:
    """How many of a spec's constraints a molecule meets, as :meth:`DesignSpec.check
    <workbench.chem.spec.DesignSpec.check>` judges them, computed on the RDKit molecule directly (cheap
    checks first, so a placement that cannot beat the best so far is dropped early)."""

    def __init__(self, spec):
        self.fixed: list[Callable[[Chem.Mol], bool]] = []
        checks: list[Callable[[Chem.Mol], bool]] = []
        costly: list[Callable[[Chem.Mol], bool]] = []
        for name, (lo, hi) in spec.properties.items():
            check = _in_range(name, lo, hi)
            (self.fixed if name in _FIXED else costly if name in _COSTLY else checks).append(check)
        costly.sort(key=lambda check: _COSTLY.index(check.name))
        for pattern in spec.require:
            checks.insert(0, _matches(pattern, True))
        for pattern in spec.forbid:
            checks.insert(0, _matches(pattern, False))
        if spec.scaffold is not None:
            template = Chem.MolFromSmiles(spec.scaffold) or Chem.MolFromSmarts(spec.scaffold)
            checks.insert(0, lambda mol, t=template: t is not None and mol.HasSubstructMatch(t))
        if spec.elements is not None:
            allowed = set(spec.elements)
            self.fixed.append(lambda mol: all(a.GetSymbol() in allowed for a in mol.GetAtoms()))
        self.checks = checks + costly

    @property
    def total(self) -> int:
        """The number of constraints a placement can change."""
        return len(self.checks)

    def feasible(self, mol: Chem.Mol) -> bool:
        """Whether ``mol`` meets every constraint no placement changes (else no placement can meet the spec)."""
        return all(check(mol) for check in self.fixed)

    def score(self, mol: Chem.Mol, beat: int = -1) -> int:
        """The number of placement-dependent constraints ``mol`` meets; -1 as soon as it cannot exceed ``beat``."""
        met, left = 0, len(self.checks)
        for check in self.checks:
            left -= 1
            if check(mol):
                met += 1
            elif met + left <= beat:
                return -1
        return met


def best_placement(grounder: TraceGrounder, score: SpecScore, budget: int = PLACEMENT_BUDGET) -> Chem.Mol | None:
    """The grounder's build with its fragments moved among the scaffold's atoms to meet the most of the spec
    ``score`` counts (the build itself when it meets the spec, cannot, or no placement does better); None
    when the grounder built nothing."""
    mol = grounder.partial
    if mol is None or grounder.scaffold is None or not grounder.steps or not score.feasible(mol):
        return mol
    best = score.score(mol)
    if best == score.total:
        return mol
    fragments = [fragment for fragment, _ in grounder.steps]
    sites = [anchor for _, anchor in grounder.steps]
    seen = {Chem.MolToSmiles(mol)}
    tried, attempts = 0, 0
    improved = True
    while improved:
        improved = False
        for i in range(len(fragments)):
            for anchor in grounder.anchors:
                if anchor == sites[i]:
                    continue
                attempts += 1
                if attempts > 8 * budget:  # scaffolds where few atoms take the fragment: stop rebuilding
                    return mol
                trial = [*sites[:i], anchor, *sites[i + 1 :]]
                candidate = _rebuild(grounder.scaffold, fragments, trial)
                if candidate is None:
                    continue
                key = Chem.MolToSmiles(candidate)
                if key in seen:  # the same molecule by symmetry
                    continue
                seen.add(key)
                tried += 1
                met = score.score(candidate, beat=best)
                if met > best:
                    mol, best, sites, improved = candidate, met, trial, True
                    if best == score.total:
                        return mol
                if tried >= budget:
                    return mol
    return mol


def _rebuild(scaffold: Chem.Mol, fragments: list[Chem.Mol], sites: list[int]) -> Chem.Mol | None:
    """The scaffold with fragment ``i`` bonded at ``sites[i]``; None when one of them does not fit there."""
    mol = scaffold
    for fragment, site in zip(fragments, sites, strict=True):
        placed = _attach(mol, fragment, [site])
        if placed is None:
            return None
        mol = placed[0]
    return mol


def _in_range(name: str, lo: float, hi: float) -> Callable[[Chem.Mol], bool]:
    def check(mol: Chem.Mol) -> bool:
        return bool(lo <= compute_property(name, mol) <= hi)

    check.name = name
    return check


_QUERIES: dict[str, Chem.Mol | None] = {}


def _matches(pattern: str, wanted: bool) -> Callable[[Chem.Mol], bool]:
    if pattern not in _QUERIES:
        _QUERIES[pattern] = Chem.MolFromSmarts(pattern)
    query = _QUERIES[pattern]
    return lambda mol: query is not None and mol.HasSubstructMatch(query) == wanted
