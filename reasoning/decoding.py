"""RDKit-constrained decoding: at every step, mask the tokens that would make the SMILES prefix impossible
to complete into a valid molecule.

The model writes its answer in Kekulé SMILES over the organic subset (``C N O P S F Cl Br I``).
:class:`SmilesGrammarState` tracks, token by token:

- branch bookkeeping: ``(`` only after an atom, no empty branches, every ``)`` matched;
- ring-closure bookkeeping: open labels, their atom and bond order, no ring bond to the same atom or to
  an atom it is already bonded to;
- valence per atom, incrementally: every bond (and every open ring label) uses valence; no atom may
  exceed its maximum valence (C 4, N 3, O 2, S 6, P 5, halogens 1);
- aromaticity closure: aromatic rings are written as closed Kekulé rings, so every aromatic system RDKit
  perceives is closed and kekulizable; lowercase aromatic atoms and bracket atoms are masked;
- no linear (sp) atom inside a ring (the ``ring_strain`` rule of the chemistry core);
- the spec's ``elements``;
- the spec's size and ring bounds (:class:`SmilesBounds`): no atom beyond the ``heavy_atoms`` maximum or
  past the ``mw`` maximum in heavy-atom mass, no ring opened beyond the ``rings`` maximum (every ring
  closure adds one ring to the cyclomatic number; RDKit's symmetrized SSSR can count one more in rare
  bridged systems), and no end before the minimum atom count, ring count and ``mw`` (a soft rule:
  it yields to validity when nothing else can follow);
- the spec's ``scaffold`` (optionally, without one, the first ``require`` group the grammar can write, such
  as ``C(=O)N``: ``SmilesBounds.from_spec(spec, require_templates=True)``; it raised that group's pass rate
  from 0.28 to 0.72 but not all-constraint satisfaction on the benchmark, so it is off by default) as a
  template: the answer writes its Kekulé SMILES token by token
  and may open substituent branches wherever a scaffold atom has valence to spare beyond the scaffold
  bonds still to come (the branch may not touch the scaffold's open ring labels); after the last
  scaffold token it continues freely. So every answer contains the scaffold;
- completability: after a token is chosen, a short greedy completion (close rings, pop branches) must
  exist, otherwise the token is rejected and another is sampled; near the length limit that completion
  is written out, so decoding always ends, with a valid molecule.

Plain decoding (``constrained=False``) samples the same model with no mask, for comparison.

>>> state = SmilesGrammarState()
>>> for token in ["C", "1", "=", "C", "C", "=", "C", "C", "=", "C", "1"]:
...     assert state.allows(token), token
...     state.push(token)
>>> state.can_end(), state.allows("O"), state.allows(")")
(True, True, False)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from rdkit import Chem

from reasoning.model import KVCache, ReasoningLM
from reasoning.tokenizer import ReasoningTokenizer
from reasoning.tokenizer import smiles_tokens as smiles_tokens_of

__all__ = [
    "MAX_VALENCE",
    "SmilesBounds",
    "SmilesGrammarState",
    "GeneratedText",
    "generate",
    "generate_many",
    "prompt_width",
    "prompt_stream",
]

MAX_VALENCE: dict[str, int] = {"C": 4, "N": 3, "O": 2, "P": 5, "S": 6, "F": 1, "Cl": 1, "Br": 1, "I": 1}
_BOND_ORDER = {"-": 1, "=": 2, "#": 3}
_RING_LABELS = tuple("123456789")
_MAX_OPEN_RINGS = 4
_MAX_BRANCH_DEPTH = 6
_COMPLETION_BUDGET = 40  # tokens (plus what is left of a scaffold template) a greedy completion may take
_MASS = {symbol: Chem.GetPeriodicTable().GetAtomicWeight(symbol) for symbol in MAX_VALENCE}  # as RDKit's MolWt
_H_MASS = Chem.GetPeriodicTable().GetAtomicWeight("H")
_VALENCES = {"C": (4,), "N": (3,), "O": (2,), "P": (3, 5), "S": (2, 4, 6), "F": (1,), "Cl": (1,), "Br": (1,), "I": (1,)}


@dataclass(frozen=True)
class SmilesBounds:
    """Size and ring bounds the decoder enforces while it writes (taken from a spec by :meth:`from_spec`).

    >>> from workbench.chem import DesignSpec
    >>> b = SmilesBounds.from_spec(DesignSpec(properties={"heavy_atoms": [15, 25], "rings": [1, 2], "mw": [0, 350]}))
    >>> b.min_atoms, b.max_atoms, b.min_rings, b.max_rings, b.max_heavy_mass, b.scaffold
    (15, 25, 1, 2, 350.0, None)
    """

    min_atoms: int = 0
    max_atoms: int | None = None
    min_rings: int = 0
    max_rings: int | None = None
    max_heavy_mass: float | None = None
    min_mass: float = 0.0
    scaffold: tuple[str, ...] | None = None  # Kekulé SMILES tokens the answer is built around (the template)

    @classmethod
    def from_spec(cls, spec, require_templates: bool = False) -> SmilesBounds | None:
        """Bounds from a DesignSpec's ``heavy_atoms``, ``rings`` and ``mw`` ranges, and its scaffold (or
        first writable ``require`` group, when ``require_templates``) as the template; None when it has none."""
        props = spec.properties
        template = scaffold_template(spec.scaffold, spec.elements) if spec.scaffold else None
        for pattern in spec.require if template is None and require_templates else ():
            template = scaffold_template(pattern, spec.elements)  # a required group the grammar can write
            if template is not None:
                break
        if not any(name in props for name in ("heavy_atoms", "rings", "mw")) and template is None:
            return None
        atoms, rings = props.get("heavy_atoms"), props.get("rings")
        return cls(
            min_atoms=int(math.ceil(atoms[0])) if atoms else 0,
            max_atoms=int(math.floor(atoms[1])) if atoms else None,
            min_rings=int(math.ceil(rings[0])) if rings else 0,
            max_rings=int(math.floor(rings[1])) if rings else None,
            max_heavy_mass=float(props["mw"][1]) if "mw" in props else None,
            min_mass=float(props["mw"][0]) if "mw" in props else 0.0,
            scaffold=template,
        )


@dataclass(frozen=True)
class _TemplatePlan:
    reserve: tuple[tuple[int, ...], ...]  # [tokens written][template atom] -> valence later template bonds need
    atoms_left: tuple[int, ...]  # [tokens written] -> template atoms still to write
    mass_left: tuple[float, ...]  # [tokens written] -> their heavy-atom mass


_PLANS: dict[tuple[str, ...], _TemplatePlan] = {}


def _template_plan(template: tuple[str, ...]) -> _TemplatePlan:
    plan = _PLANS.get(template)
    if plan is None:
        state = SmilesGrammarState()
        used_after = []
        for token in template:
            state.push(token)
            used_after.append(list(state.used))
        final = state.used
        atoms = [i for i, t in enumerate(template) if t in MAX_VALENCE]
        reserve = [()] + [tuple(final[k] - used[k] for k in range(len(used))) for used in used_after]
        atoms_left = tuple(sum(1 for i in atoms if i >= p) for p in range(len(template) + 1))
        mass_left = tuple(sum(_MASS[template[i]] for i in atoms if i >= p) for p in range(len(template) + 1))
        plan = _PLANS[template] = _TemplatePlan(tuple(reserve), atoms_left, mass_left)
    return plan


def scaffold_template(scaffold: str, elements: Iterable[str] | None = None) -> tuple[str, ...] | None:
    """The grammar tokens of a scaffold in Kekulé SMILES, or None when the grammar cannot write it
    (bracket atoms, charges, elements outside ``elements``) or RDKit cannot parse it.

    >>> scaffold_template("c1ccc2[nH]ccc2c1")
    ('C', '1', '=', 'C', 'C', '=', 'C', '2', 'N', 'C', '=', 'C', 'C', '2', '=', 'C', '1')
    """
    from reasoning.tokenizer import smiles_tokens
    from reasoning.traces import kekule_smiles

    mol = Chem.MolFromSmiles(scaffold) or Chem.MolFromSmarts(scaffold)
    if mol is None:
        return None
    try:
        Chem.SanitizeMol(mol)
        tokens = tuple(smiles_tokens(kekule_smiles(mol)))
    except (ValueError, RuntimeError):
        return None
    allowed = set(elements) if elements is not None else None
    for token in tokens:
        if token in MAX_VALENCE:
            if allowed is not None and token not in allowed:
                return None
        elif token not in _BOND_ORDER and token not in ("(", ")") and token not in _RING_LABELS:
            return None
    return tokens or None


@dataclass
class SmilesGrammarState:
    """Incremental SMILES state for constrained decoding (see the module docstring for the rules).

    >>> s = SmilesGrammarState(elements={"C", "O"})
    >>> s.allows("N"), s.allows("C")
    (False, True)
    """

    elements: set[str] | None = None
    element: list[str] = field(default_factory=list)
    used: list[int] = field(default_factory=list)  # valence used (bonds + reserved ring bonds)
    doubles: list[int] = field(default_factory=list)
    triples: list[int] = field(default_factory=list)
    in_ring: list[bool] = field(default_factory=list)
    neighbors: list[set[int]] = field(default_factory=list)
    current: int | None = None
    branches: list[int] = field(default_factory=list)
    pending: int | None = None  # bond order written but not yet used
    open_rings: dict[str, tuple[int, int | None]] = field(default_factory=dict)  # label -> (atom, order)
    last: str = "start"  # "start" | "atom" | "ring" | "open" | "close" | "bond"
    before_bond: str = "start"  # what preceded the pending bond symbol
    n_tokens: int = 0
    n_linear: int = 0  # atoms that are linear (sp) so far
    bounds: SmilesBounds | None = None
    n_closed: int = 0  # ring closures written (each adds one ring)
    heavy_mass: float = 0.0
    tpos: int = 0  # scaffold template tokens written
    tatoms: list[int] = field(default_factory=list)  # atom index of each template atom written
    free_depth: int | None = None  # branch depth of an inserted substituent branch (None: on the template)
    free_labels: set[str] = field(default_factory=set)  # ring labels opened inside that branch
    # a completion known to work from this prefix: the last greedy completion found, minus the tokens of it
    # written since (a prefix that follows its own completion stays completable without a new search)
    tail: tuple[str, ...] | None = field(default=None, repr=False, compare=False)

    def copy(self) -> SmilesGrammarState:
        return SmilesGrammarState(
            self.elements,
            list(self.element),
            list(self.used),
            list(self.doubles),
            list(self.triples),
            list(self.in_ring),
            [set(n) for n in self.neighbors],
            self.current,
            list(self.branches),
            self.pending,
            dict(self.open_rings),
            self.last,
            self.before_bond,
            self.n_tokens,
            self.n_linear,
            self.bounds,
            self.n_closed,
            self.heavy_mass,
            self.tpos,
            list(self.tatoms),
            self.free_depth,
            set(self.free_labels),
            self.tail,
        )

    # ------------------------------------------------------------------ queries
    def remaining(self, atom: int) -> int:
        return MAX_VALENCE[self.element[atom]] - self.used[atom]

    def _is_sp(self, atom: int) -> bool:
        """Linear atoms as RDKit sees them: a triple bond, or a carbon with two double bonds (allene)."""
        return self.triples[atom] > 0 or (self.doubles[atom] >= 2 and self.element[atom] == "C")

    def _becomes_sp(self, atom: int, order: int) -> bool:
        """Whether one more bond of ``order`` makes ``atom`` linear."""
        if self._is_sp(atom) or order == 3:
            return True
        return order == 2 and self.doubles[atom] >= 1 and self.element[atom] == "C"

    def _path(self, start: int, goal: int) -> list[int]:
        """Shortest path of atoms from start to goal in the bonds written so far."""
        previous = {start: start}
        frontier = [start]
        while frontier and goal not in previous:
            nxt = []
            for a in frontier:
                for b in self.neighbors[a]:
                    if b not in previous:
                        previous[b] = a
                        nxt.append(b)
            frontier = nxt
        if goal not in previous:
            return []
        path = [goal]
        while path[-1] != start:
            path.append(previous[path[-1]])
        return path

    def can_end(self) -> bool:
        if self.template_left() or self.free_depth is not None:
            return False
        return bool(self.element) and not self.open_rings and not self.branches and self.pending is None

    # ------------------------------------------------------------------ scaffold template
    @property
    def template(self) -> tuple[str, ...] | None:
        return self.bounds.scaffold if self.bounds is not None else None

    def template_left(self) -> int:
        """Scaffold template tokens still to be written."""
        t = self.template
        return len(t) - self.tpos if t is not None else 0

    def _reserve(self, atom: int) -> int:
        """Valence of a template atom that later template bonds still need."""
        if not self.template_left() or atom not in self.tatoms:
            return 0
        return _template_plan(self.template).reserve[self.tpos][self.tatoms.index(atom)]

    def _fits_atom_budget(self, symbol: str) -> bool:
        """Whether one more substituent atom leaves room for the rest of the template within the bounds."""
        b = self.bounds
        plan = _template_plan(self.template)
        if b.max_atoms is not None and len(self.element) + plan.atoms_left[self.tpos] + 1 > b.max_atoms:
            return False
        mass = self.heavy_mass + plan.mass_left[self.tpos] + _MASS[symbol]
        return b.max_heavy_mass is None or mass <= b.max_heavy_mass

    def _can_insert(self) -> bool:
        """Whether a substituent branch may open here, before the next template token."""
        t = self.template
        nxt = t[self.tpos]
        if nxt in _RING_LABELS or nxt == "(" or self.current is None:
            return False
        if nxt in _BOND_ORDER and self.tpos + 1 < len(t) and t[self.tpos + 1] in _RING_LABELS:
            return False
        if self.last not in ("atom", "ring", "close"):
            return False
        fill = self._fill_atom() or "C"
        return self.remaining(self.current) - self._reserve(self.current) >= 1 and self._fits_atom_budget(fill)

    def _allows_in_branch(self, token: str) -> bool:
        """Extra rules inside an inserted substituent branch (then the ordinary grammar)."""
        return self._branch_rules_allow(token) and self._allows_base(token)

    def _branch_rules_allow(self, token: str) -> bool:
        if token in _RING_LABELS and token in self.open_rings and token not in self.free_labels:
            return False  # a template ring label: only the template closes it
        if token == ")" and len(self.branches) == self.free_depth and self.free_labels:
            return False  # the branch's own rings close inside it
        if token in MAX_VALENCE and not self._fits_atom_budget(token):
            return False
        if self.last == "open" and len(self.branches) == self.free_depth:  # the bond to the template atom
            order = _BOND_ORDER.get(token, 1)
            if self.remaining(self.current) - self._reserve(self.current) < order:
                return False
        return True

    def meets_minimums(self) -> bool:
        """Whether the atom, ring and mass minimums of the bounds are reached (ending earlier is discouraged)."""
        b = self.bounds
        if b is None:
            return True
        if len(self.element) < b.min_atoms or self.n_closed < b.min_rings:
            return False
        return b.min_mass <= 0 or self.mass() >= b.min_mass  # (the mass is never negative)

    def completable(self) -> bool:
        """Whether the prefix can end here or has a greedy completion (the test every accepted token passes)."""
        return self.can_end() or self.tail is not None or self.completion() is not None

    def stalls_below_minimum(self) -> bool:
        """Whether the prefix is below the bounds' minimums with nowhere left to attach another atom."""
        return not self.meets_minimums() and not self.can_grow()

    def can_grow(self) -> bool:
        """Whether another atom can still be attached somewhere (an open branch, ring or free valence)."""
        if self.branches or self.open_rings or self.pending is not None:
            return True
        return self.current is not None and self.remaining(self.current) >= 1

    def mass(self) -> float:
        """Molecular weight if the SMILES ended here: heavy atoms plus implicit hydrogens at default valence."""
        hydrogens = 0
        for symbol, used in zip(self.element, self.used, strict=True):
            valence = next((v for v in _VALENCES[symbol] if v >= used), used)
            hydrogens += valence - used
        return self.heavy_mass + _H_MASS * hydrogens

    def allows(self, token: str) -> bool:
        """Whether ``token`` keeps the prefix valid (not yet whether it stays completable)."""
        if self.template_left():
            if self.free_depth is not None:
                return self._allows_in_branch(token)
            if token == self.template[self.tpos]:
                return self._allows_base(token)
            return token == "(" and self._can_insert() and self._allows_base(token)
        return self._allows_base(token)

    def allowed_tokens(self) -> list[str]:
        """Every grammar token :meth:`allows`, in one pass: the checks shared by a class of tokens (atoms,
        bonds, ring labels not yet open) run once rather than once per token.

        >>> SmilesGrammarState(elements={"C", "O"}).allowed_tokens()
        ['C', 'O']
        """
        if self.template_left():
            nxt = self.template[self.tpos]
            if self.free_depth is not None:
                return [t for t in self._allowed_base() if self._branch_rules_allow(t)]
            out = [nxt] if self._allows_base(nxt) else []
            if nxt != "(" and self._can_insert() and self._allows_base("("):
                out.append("(")
            return out
        return self._allowed_base()

    def _allowed_base(self) -> list[str]:
        out = self._allowed_atoms()
        out += [t for t, order in _BOND_ORDER.items() if self._allows_bond(order)]
        if self._allows_open_branch():
            out.append("(")
        if self._allows_close_branch():
            out.append(")")
        if self._ring_position_ok():
            opening = self._allows_ring_open()  # the same answer for every label not yet open
            for label in _RING_LABELS:
                if self._allows_ring_close(label) if label in self.open_rings else opening:
                    out.append(label)
        return out

    def _allows_base(self, token: str) -> bool:
        if token in MAX_VALENCE:
            return self._allows_atom(token)
        if token in _BOND_ORDER:
            return self._allows_bond(_BOND_ORDER[token])
        if token == "(":
            return self._allows_open_branch()
        if token == ")":
            return self._allows_close_branch()
        if token in _RING_LABELS:
            return self._allows_ring(token)
        return False

    def _allows_open_branch(self) -> bool:
        return (
            self.last in ("atom", "ring", "close")
            and self.pending is None
            and len(self.branches) < _MAX_BRANCH_DEPTH
            and self.remaining(self.current) >= 1
        )

    def _allows_close_branch(self) -> bool:
        return bool(self.branches) and self.pending is None and self.last in ("atom", "ring", "close")

    def _allows_atom(self, symbol: str) -> bool:
        if self.elements is not None and symbol not in self.elements:
            return False
        return self._atom_fits_bounds(symbol) and self._allows_any_atom(MAX_VALENCE[symbol])

    def _allowed_atoms(self) -> list[str]:
        b = self.bounds
        if b is not None and b.max_atoms is not None and len(self.element) >= b.max_atoms:
            return []
        order = self.pending or 1
        if not self._allows_any_atom(order):  # the rules that do not depend on the element fail
            return []
        return [
            s
            for s, valence in MAX_VALENCE.items()
            if (self.elements is None or s in self.elements) and valence >= order and self._atom_fits_bounds(s)
        ]

    def _atom_fits_bounds(self, symbol: str) -> bool:
        b = self.bounds
        if b is not None:
            if b.max_atoms is not None and len(self.element) >= b.max_atoms:
                return False
            if b.max_heavy_mass is not None and self.heavy_mass + _MASS[symbol] > b.max_heavy_mass:
                return False
        return True

    def _allows_any_atom(self, max_valence: int) -> bool:
        """Whether an atom of this maximum valence may follow (the element's own rules aside)."""
        if self.current is None:
            return not self.element  # only the first atom has no predecessor
        order = self.pending or 1
        if max_valence < order or self.remaining(self.current) < order:
            return False
        if self._becomes_sp(self.current, order):
            return not self.in_ring[self.current]  # a linear atom may not sit in a ring
        return True

    def _allows_bond(self, order: int) -> bool:
        if self.current is None or self.pending is not None or self.last not in ("atom", "ring", "close", "open"):
            return False
        if self.remaining(self.current) < order:
            return False
        if self._becomes_sp(self.current, order):
            return not self.in_ring[self.current]
        return True

    def _allows_ring(self, label: str) -> bool:
        if not self._ring_position_ok():
            return False
        if label in self.open_rings:
            return self._allows_ring_close(label)
        return self._allows_ring_open()

    def _ring_position_ok(self) -> bool:
        if self.current is None or self.last not in ("atom", "ring", "bond"):
            return False
        return self.last != "bond" or self.before_bond in ("atom", "ring")  # "(=1" and ")=1" are not SMILES

    def _allows_ring_close(self, label: str) -> bool:
        cur = self.current
        partner, opened_order = self.open_rings[label]
        if partner == cur or partner in self.neighbors[cur]:
            return False
        if self.pending is not None and opened_order is not None and self.pending != opened_order:
            return False
        order = self.pending or opened_order or 1
        if order == 3:
            return False
        # the partner reserved 1 (or the opened order); a higher order set now needs more capacity there
        extra_partner = order - (opened_order or 1)
        if self.remaining(cur) < order or self.remaining(partner) < extra_partner:
            return False
        if self._becomes_sp(cur, order) or (opened_order is None and self._becomes_sp(partner, order)):
            return False
        if not self.n_linear:
            return True
        return not any(self._is_sp(a) for a in self._path(partner, cur))

    def _allows_ring_open(self) -> bool:
        """Whether a new ring label (any one not yet open) may be written here."""
        if len(self.open_rings) >= _MAX_OPEN_RINGS:
            return False
        b = self.bounds
        if b is not None and b.max_rings is not None and self.n_closed + len(self.open_rings) >= b.max_rings:
            return False
        order = self.pending or 1
        if order == 3:
            return False
        if self._becomes_sp(self.current, order):
            return False
        return self.remaining(self.current) >= order

    # ------------------------------------------------------------------ transitions
    def push(self, token: str) -> None:
        """Apply a token (call :meth:`allows` first)."""
        # greedy completion is deterministic: after its first token, the rest of it is the completion
        self.tail = self.tail[1:] if self.tail and self.tail[0] == token else None
        on_template = self.template_left() > 0 and self.free_depth is None
        advance = on_template and token == self.template[self.tpos]
        was_open = token in self.open_rings
        self._push_base(token)
        if advance:
            if token in MAX_VALENCE:
                self.tatoms.append(len(self.element) - 1)
            self.tpos += 1
        elif on_template and token == "(":
            self.free_depth = len(self.branches)
        elif self.free_depth is not None:
            if token in _RING_LABELS:
                (self.free_labels.discard if was_open else self.free_labels.add)(token)
            elif token == ")" and len(self.branches) < self.free_depth:
                self.free_depth = None

    def _push_base(self, token: str) -> None:
        self.n_tokens += 1
        if token in MAX_VALENCE:
            idx = len(self.element)
            self.element.append(token)
            self.used.append(0)
            self.doubles.append(0)
            self.triples.append(0)
            self.in_ring.append(False)
            self.neighbors.append(set())
            self.heavy_mass += _MASS[token]
            if self.current is not None:
                self._bond(self.current, idx, self.pending or 1)
            self.current = idx
            self.pending = None
            self.last = "atom"
        elif token in _BOND_ORDER:
            self.pending = _BOND_ORDER[token]
            self.before_bond = self.last
            self.last = "bond"
        elif token == "(":
            self.branches.append(self.current)
            self.last = "open"
        elif token == ")":
            self.current = self.branches.pop()
            self.last = "close"
        elif token in _RING_LABELS:
            cur = self.current
            if token in self.open_rings:
                partner, opened_order = self.open_rings.pop(token)
                order = self.pending or opened_order or 1
                self.used[partner] -= opened_order or 1  # release the reservation, then bond for real
                if opened_order == 2:
                    self.doubles[partner] -= 1
                for atom in self._path(partner, cur):
                    self.in_ring[atom] = True
                self._bond(partner, cur, order)
                self.n_closed += 1
            else:
                self.open_rings[token] = (cur, self.pending)
                self.used[cur] += self.pending or 1
                if self.pending == 2:
                    self.doubles[cur] += 1
            self.pending = None
            self.last = "ring"
        else:
            raise ValueError(f"token {token!r} is not part of the constrained SMILES grammar")

    def _bond(self, a: int, b: int, order: int) -> None:
        self.n_linear -= self._is_sp(a) + self._is_sp(b)
        self.used[a] += order
        self.used[b] += order
        self.neighbors[a].add(b)
        self.neighbors[b].add(a)
        if order == 2:
            self.doubles[a] += 1
            self.doubles[b] += 1
        elif order == 3:
            self.triples[a] += 1
            self.triples[b] += 1
        self.n_linear += self._is_sp(a) + self._is_sp(b)

    # ------------------------------------------------------------------ completion
    def completion(self, budget: int = _COMPLETION_BUDGET) -> list[str] | None:
        """A short token sequence that closes every ring and branch (and writes the rest of a scaffold
        template), or None if the greedy search finds none."""
        limit = budget + self.template_left()
        for prefer_pop in (False, True):
            result = self._greedy_completion(limit, prefer_pop)
            if result is not None:
                if budget <= _COMPLETION_BUDGET:  # then it is also what the default budget finds
                    self.tail = tuple(result)
                return result
        return None

    def _fill_atom(self) -> str | None:
        candidates = [s for s in ("C", "N", "S", "P", "O") if self.elements is None or s in self.elements]
        return candidates[0] if candidates else None

    def _greedy_completion(self, budget: int, prefer_pop: bool) -> list[str] | None:
        state = self.copy()
        out: list[str] = []
        fill = self._fill_atom()
        for _ in range(budget):
            if state.can_end():
                return out
            options: list[str] = []
            open_here = state.free_labels if state.free_depth is not None else state.open_rings
            if state.template_left() and state.free_depth is None:
                options = [state.template[state.tpos]]
            elif state.pending is not None or state.current is None:
                options = [fill] if fill else []
            else:
                closable = [lab for lab in open_here if state.allows(lab)]
                if closable:
                    options = [closable[0]]
                else:
                    add = [fill] if fill and open_here and state.allows(fill) else []
                    pop = [")"] if state.allows(")") else []
                    options = pop + add if prefer_pop or not open_here else add + pop
            options = [t for t in options if t is not None and state.allows(t)]
            if not options:
                return None
            state.push(options[0])
            out.append(options[0])
        return out if state.can_end() else None


def built_answer(
    prompt: str, trace_tokens: Sequence[str], elements: Iterable[str] | None = None, bounds: SmilesBounds | None = None
) -> str | None:
    """The Kekulé SMILES of the molecule ``trace_tokens`` build for ``prompt``
    (:func:`~reasoning.grounding.built_molecule`), or None when the trace builds nothing, the molecule fails
    the chemistry rules (:func:`workbench.chem.validate`), or it breaks ``elements`` or ``bounds`` (atoms,
    rings, mass, scaffold): a decoder answering with the build falls back to decoding in those cases.

    >>> built_answer("<spec> mw 50 to 200 </spec>", "; scaffold C1=CC=CC=C1 gives ; add *O gives ; check".split())
    'OC1=CC=CC=C1'
    >>> chlorobenzene = "; scaffold C1=CC=CC=C1 gives ; add *Cl gives".split()
    >>> built_answer("<spec> </spec>", chlorobenzene, elements=["C", "O"]) is None
    True
    """
    from reasoning.grounding import built_molecule

    return answer_from(built_molecule(prompt, list(trace_tokens)), elements, bounds)


def answer_from(mol: Chem.Mol | None, elements: Iterable[str] | None, bounds: SmilesBounds | None) -> str | None:
    """:func:`built_answer` for a molecule already built (e.g. a decoder's running build)."""
    from rdkit.Chem import Descriptors, rdMolDescriptors

    from reasoning.traces import kekule_smiles
    from workbench.chem import validate

    if mol is None or mol.GetNumAtoms() == 0 or len(Chem.GetMolFrags(mol)) != 1:
        return None
    if elements is not None and any(a.GetSymbol() not in set(elements) for a in mol.GetAtoms()):
        return None
    if bounds is not None:
        atoms, rings, mass = mol.GetNumHeavyAtoms(), rdMolDescriptors.CalcNumRings(mol), Descriptors.MolWt(mol)
        if atoms < bounds.min_atoms or (bounds.max_atoms is not None and atoms > bounds.max_atoms):
            return None
        if rings < bounds.min_rings or (bounds.max_rings is not None and rings > bounds.max_rings):
            return None
        if mass < bounds.min_mass or (bounds.max_heavy_mass is not None and mass > bounds.max_heavy_mass):
            return None
        if bounds.scaffold is not None:
            template = Chem.MolFromSmiles("".join(bounds.scaffold))
            if template is not None and not mol.HasSubstructMatch(template):
                return None
    try:
        smiles = kekule_smiles(mol)
    except (ValueError, RuntimeError):
        return None
    report = validate(smiles)
    return smiles if report.molecule is not None and report.ok else None


# ---------------------------------------------------------------------------------------------- sampling
@dataclass
class GeneratedText:
    """One sampled completion: the reasoning text, the SMILES text, whether it was forced to finish, and
    whether the SMILES was assembled from the trace's build steps instead of decoded."""

    trace: str
    smiles: str
    forced: bool = False
    tokens: int = 0
    built: bool = False  # the SMILES is the molecule the trace built (``answer_from_build``), not decoded
    placed: bool = False  # ... with its fragments moved off their first anchors to meet the spec (``place_by_spec``)


def _sample(probs: torch.Tensor, generator: torch.Generator) -> int:
    """A token id drawn with probability ``probs[i] / probs.sum()``: ``argmax(probs / q)`` with ``q ~ Exp(1)``
    (an exponential race). It is how ``torch.multinomial(probs, 1)`` samples, with the same draws from
    ``generator`` and the same answer (tested), without its argument checks."""
    q = torch.empty(probs.shape).exponential_(1, generator=generator)
    return int((probs.numpy() / q.numpy()).argmax())


def _filter_probs(logits: torch.Tensor, temperature: float, top_p: float) -> torch.Tensor:
    if temperature <= 0:
        probs = torch.zeros_like(logits)
        probs[int(torch.argmax(logits))] = 1.0
        return probs
    probs = torch.softmax(logits / temperature, dim=-1)
    if top_p < 1.0:
        sorted_probs, order = torch.sort(probs, descending=True)
        keep = torch.cumsum(sorted_probs, dim=-1) - sorted_probs < top_p
        filtered = torch.zeros_like(probs)
        filtered[order[keep]] = sorted_probs[keep]
        probs = filtered
    return probs


def _filter_probs_rows(logits: torch.Tensor, temperature: float, top_p: float) -> torch.Tensor:
    """:func:`_filter_probs` of every row of ``logits: (rows, vocab)`` in one call (the same numbers row by row)."""
    if temperature <= 0:
        probs = torch.zeros_like(logits)
        probs[torch.arange(len(logits)), logits.argmax(dim=-1)] = 1.0
        return probs
    probs = torch.softmax(logits / temperature, dim=-1)
    if top_p < 1.0:
        sorted_probs, order = torch.sort(probs, dim=-1, descending=True)
        keep = torch.cumsum(sorted_probs, dim=-1) - sorted_probs < top_p
        probs = torch.zeros_like(probs).scatter_(-1, order, torch.where(keep, sorted_probs, 0.0))
    return probs


class _Vocab:
    """Token ids grouped for the grammar (computed once per tokenizer)."""

    def __init__(self, tokenizer: ReasoningTokenizer):
        self.tokenizer = tokenizer
        self.grammar_ids = {
            t: i
            for t, i in tokenizer.index.items()
            if t in MAX_VALENCE or t in _BOND_ORDER or t in ("(", ")") or t in _RING_LABELS
        }
        self.trace_banned = [
            tokenizer.pad_id,
            tokenizer.bos_id,
            tokenizer.eos_id,
            tokenizer.smiles_end_id,
            tokenizer.unk_id,
        ]
        # the tokens that end a trace's build steps: its check step, the end of the reasoning, the answer
        self.build_end = [tokenizer.index[t] for t in ("check", "</think>") if t in tokenizer.index]
        self.build_end.append(tokenizer.smiles_start_id)


_VOCAB_CACHE: dict[int, _Vocab] = {}


def _vocab(tokenizer: ReasoningTokenizer) -> _Vocab:
    key = id(tokenizer)
    if key not in _VOCAB_CACHE:
        _VOCAB_CACHE[key] = _Vocab(tokenizer)
    return _VOCAB_CACHE[key]


def prompt_stream(seed: int, index: int) -> torch.Generator:
    """The random stream prompt ``index`` of a batch samples from, for ``seed``: ``manual_seed(seed)`` for
    the first prompt (what a single prompt has always sampled from), and for the others a stream derived
    from ``(seed, index)`` with a SeedSequence, so nearby seeds and indices give unrelated streams.

    >>> a, b = prompt_stream(7, 0), prompt_stream(7, 1)
    >>> torch.equal(a.get_state(), torch.Generator().manual_seed(7).get_state())
    True
    >>> bool(torch.rand(1, generator=a) != torch.rand(1, generator=b))
    True
    """
    if index == 0:
        return torch.Generator().manual_seed(int(seed))
    state = np.random.SeedSequence([int(seed) % 2**64, int(index)]).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(state))


def _encode_prompts(
    tokenizer: ReasoningTokenizer, prompts: Sequence[str], trace_prefixes: Sequence[str] | None
) -> tuple[list[list[int]], list[list[int]]]:
    """Each prompt's trace-prefix ids, and its ids as fed to the model (BOS, prompt, trace prefix)."""
    prefixes = list(trace_prefixes) if trace_prefixes is not None else [""] * len(prompts)
    if len(prefixes) != len(prompts):
        raise ValueError(f"{len(prefixes)} trace prefixes for {len(prompts)} prompts")
    if not prompts:
        raise ValueError("no prompts given")
    prefix_ids = [tokenizer.encode(t) if t else [] for t in prefixes]
    encoded = [tokenizer.encode(p, bos=True) + extra for p, extra in zip(prompts, prefix_ids, strict=True)]
    return prefix_ids, encoded


def prompt_width(
    tokenizer: ReasoningTokenizer, prompts: Sequence[str], trace_prefixes: Sequence[str] | None = None
) -> int:
    """Tokens of the longest prompt (with BOS and its trace prefix): the width a batch of ``prompts`` is
    padded to by :func:`generate_many`."""
    return max(len(ids) for ids in _encode_prompts(tokenizer, prompts, trace_prefixes)[1])


def generate(
    model: ReasoningLM,
    tokenizer: ReasoningTokenizer,
    prompt: str,
    n: int,
    *,
    constrained: bool = True,
    elements: Iterable[str] | None = None,
    temperature: float = 1.0,
    top_p: float = 0.95,
    max_trace_tokens: int = 260,
    max_smiles_tokens: int = 80,
    seed: int = 0,
    trace_prefix: str = "",
    bounds: SmilesBounds | None = None,
    ground_estimates: bool = False,
    answer_from_build: bool = False,
    place_by_spec: bool = False,
) -> list[GeneratedText]:
    """Sample ``n`` completions (reasoning trace + SMILES) of ``prompt`` with a KV cache.

    With ``constrained=True`` the SMILES part follows :class:`SmilesGrammarState` (always a valid
    molecule); otherwise it is sampled freely and may not parse. ``trace_prefix`` is text the trace
    starts with, written for the model rather than sampled (e.g. the restated constraints). ``bounds``
    adds the spec's size and ring limits to the constraints.

    >>> from reasoning.model import ReasoningConfig
    >>> tok = ReasoningTokenizer.build(["C1=CC=CC=C1"])
    >>> lm = ReasoningLM(ReasoningConfig(vocab_size=len(tok), d_model=32, n_layers=1, n_heads=2, max_len=400))
    >>> out = generate(lm, tok, "<spec> </spec>", 2, seed=1)
    >>> len(out)
    2
    """
    return generate_many(
        model,
        tokenizer,
        [prompt],
        n,
        constrained=constrained,
        elements=[elements],
        temperature=temperature,
        top_p=top_p,
        max_trace_tokens=max_trace_tokens,
        max_smiles_tokens=max_smiles_tokens,
        seed=seed,
        trace_prefixes=[trace_prefix],
        bounds=[bounds],
        ground_estimates=ground_estimates,
        answer_from_build=answer_from_build,
        place_by_spec=place_by_spec,
    )[0]


@torch.inference_mode()
def generate_many(
    model: ReasoningLM,
    tokenizer: ReasoningTokenizer,
    prompts: Sequence[str],
    n: int,
    *,
    constrained: bool = True,
    elements: Sequence[Iterable[str] | None] | None = None,
    temperature: float = 1.0,
    top_p: float = 0.95,
    max_trace_tokens: int = 260,
    max_smiles_tokens: int = 80,
    seed: int = 0,
    trace_prefixes: Sequence[str] | None = None,
    bounds: Sequence[SmilesBounds | None] | None = None,
    width: int | None = None,
    first_prompt: int = 0,
    ground_estimates: bool = False,
    answer_from_build: bool = False,
    place_by_spec: bool = False,
) -> list[list[GeneratedText]]:
    """``n`` completions for each of several prompts in one batch (prompts are left-padded and the
    padding is masked out of attention; rotary positions make the shift harmless in exact arithmetic).

    ``elements`` gives each prompt's allowed elements (or None). ``trace_prefixes`` gives each prompt's
    forced start of the trace (fed in one forward pass with the prompt and counted in the trace), and
    ``bounds`` each prompt's :class:`SmilesBounds` (or None).
    Returns one list per prompt.

    Every prompt samples from its own random stream, :func:`prompt_stream` of ``(seed, index)``, and
    draws from it as if it were decoded alone, so its completions do not depend on which other prompts
    share the batch (a single prompt samples as it always has), and its length limits come from its own
    length. They depend on the batch's ``width`` (:func:`prompt_width` of all the prompts, by default)
    only at rounding level: the padding shifts the rotary positions. To decode a
    contiguous part of a larger batch exactly as the whole batch would, pass the whole batch's ``width``
    and the index of the part's first prompt as ``first_prompt``.

    With ``ground_estimates`` the running estimates of the trace's build steps (the numbers after each
    ``gives``) are computed with RDKit from the partial molecule and written for the model
    (:class:`~reasoning.grounding.TraceGrounder`) instead of sampled.

    With ``answer_from_build`` (and ``constrained``; plain decoding stays the model's own) the answer is the
    molecule the trace built (:func:`~reasoning.grounding.built_molecule`: its scaffold with every added
    fragment bonded on), written by RDKit as soon as the trace ends, when it is a valid molecule within the
    row's constraints (elements, ``bounds``: size, rings, mass, scaffold); otherwise the SMILES is decoded as
    usual. The answer then follows the reasoning instead of being a separate guess (``GeneratedText.built``
    says which it was). With ``place_by_spec`` as well, RDKit chooses where the fragments sit on the scaffold:
    the placement meeting the most of the prompt's spec (:func:`~reasoning.placement.best_placement`) instead
    of the grounder's first anchors (``GeneratedText.placed`` says when that moved a fragment).

    Each step masks and top-p filters the distributions of all constrained rows together, then samples
    them row by row; the tokens and random draws are those of :func:`_next_smiles_token` applied to
    one row at a time with its prompt's stream.
    """
    model.eval()
    vocab = _vocab(tokenizer)
    prefix_ids, encoded = _encode_prompts(tokenizer, prompts, trace_prefixes)
    longest = max(len(ids) for ids in encoded)
    if width is None:
        width = longest
    elif width < longest:
        raise ValueError(f"width {width} is narrower than the longest prompt ({longest} tokens)")
    generators = [prompt_stream(seed, first_prompt + i) for i in range(len(prompts))]
    # Each prompt's length limits come from its own length, as if it were decoded alone: the left padding
    # of a shorter prompt takes cache positions, not room from its completion (rotary attention sees only
    # relative positions, so the cache may run past max_len by the padding).
    trace_limits, smiles_limits = [], []
    for prompt_ids in encoded:
        budget = model.config.max_len - len(prompt_ids) - 2
        if budget < 8:
            raise ValueError(f"prompt of {len(prompt_ids)} tokens leaves no room in max_len {model.config.max_len}")
        smiles_limits.append(min(max_smiles_tokens, budget // 2))
        trace_limits.append(min(max_trace_tokens, budget - smiles_limits[-1] - 2))
    capacity = model.config.max_len + width - min(len(ids) for ids in encoded)
    elements = list(elements) if elements is not None else [None] * len(prompts)
    n_prompts = len(prompts)
    rows_of_prompt = torch.arange(n_prompts).repeat_interleave(n)

    ids = torch.full((n_prompts, width), tokenizer.pad_id, dtype=torch.long)
    key_valid = torch.zeros((n_prompts, capacity), dtype=torch.bool)
    for i, prompt_ids in enumerate(encoded):
        ids[i, width - len(prompt_ids) :] = torch.tensor(prompt_ids)
        key_valid[i, width - len(prompt_ids) :] = True  # positions after the prompt are always real
    padded = any(len(p) < width for p in encoded)
    cache = KVCache(model.config.n_layers, capacity)
    mask = None
    if padded:
        causal = torch.ones(width, width, dtype=torch.bool).tril()
        mask = (causal & key_valid[:, None, None, :width]) | torch.eye(width, dtype=torch.bool)
    logits = model(ids, cache=cache, attn_mask=mask)[:, -1, :]
    # the n rows of a prompt share its keys (read once per step for all of them); their own tokens follow
    cache.share_prefix(rows_of_prompt, key_valid[:, :width] if padded else None)
    logits = logits[rows_of_prompt]
    n_rows = n * n_prompts
    n_prompt_rows = n
    n = n_rows
    bounds = list(bounds) if bounds is not None else [None] * n_prompts
    states = [
        SmilesGrammarState(
            elements=set(elements[row // n_prompt_rows]) if elements[row // n_prompt_rows] else None,
            bounds=bounds[row // n_prompt_rows],
        )
        for row in range(n)
    ]

    trace_ids: list[list[int]] = [list(prefix_ids[row // n_prompt_rows]) for row in range(n)]
    smiles_tokens: list[list[str]] = [[] for _ in range(n)]
    in_smiles = [False] * n
    done = [False] * n
    forced = [False] * n
    built = [False] * n
    forced_queue: list[list[str]] = [[] for _ in range(n)]
    trace_queue: list[list[int]] = [[] for _ in range(n)]  # trace tokens to write instead of sampling
    grounders = None
    if ground_estimates:
        from reasoning.grounding import TraceGrounder

        grounders = [TraceGrounder.for_prompt(prompts[row // n_prompt_rows]) for row in range(n)]
    builders = None  # each row's build so far, when the answer is to be the build
    if answer_from_build and constrained:
        from reasoning.grounding import TraceGrounder

        builders = grounders if grounders is not None else [TraceGrounder([]) for _ in range(n)]
        small = [_BuildSize() for _ in range(n)]
        scores = [_spec_score(prompt) if place_by_spec else None for prompt in prompts]
    placed = [False] * n

    active = list(range(n))  # the rows still in the batch, in batch order
    # each prompt's rows that draw sampling noise each step: the rows it would still have in the batch if
    # it were decoded alone (the batch drops finished rows on its own schedule, which other prompts move)
    drawing = [list(range(i * n_prompt_rows, (i + 1) * n_prompt_rows)) for i in range(n_prompts)]
    for _ in range(max(t + m for t, m in zip(trace_limits, smiles_limits, strict=True)) + 2):
        if all(done):
            break
        smiles_rows = [in_smiles[row] for row in active]
        needed = [not done[row] and not (constrained and in_smiles[row]) for row in active]
        draws = None
        if temperature > 0:
            needed_rows = [row for row, need in zip(active, needed, strict=True) if need]
            draws = _stream_draws(generators, drawing, done, needed_rows, logits.shape[-1])
        building = None
        if builders is not None:
            building = [
                need and small[row].below(builders[row], bounds[row // n_prompt_rows])
                for row, need in zip(active, needed, strict=True)
            ]
        free = _sample_rows(logits.float(), vocab, smiles_rows, needed, temperature, top_p, None, draws, building)
        next_ids = []
        to_sample: list[tuple[int, int]] = []  # (batch position, row) of constrained rows that sample a token
        for pos, row in enumerate(active):
            if done[row]:
                next_ids.append(tokenizer.pad_id)
                continue
            if not in_smiles[row]:
                written = len(trace_ids[row]) - len(prefix_ids[row // n_prompt_rows])
                if written >= trace_limits[row // n_prompt_rows]:
                    token_id = tokenizer.smiles_start_id
                elif trace_queue[row]:
                    token_id = trace_queue[row].pop(0)
                else:
                    token_id = free[pos]
                next_ids.append(token_id)
                if token_id == tokenizer.smiles_start_id:
                    in_smiles[row] = True
                    if builders is not None:
                        # the running build is the trace's build (the restated prefix builds nothing)
                        answer, placed[row] = _built_answer(
                            builders[row],
                            scores[row // n_prompt_rows],
                            states[row].elements,
                            bounds[row // n_prompt_rows],
                        )
                        if answer is not None:
                            smiles_tokens[row] = smiles_tokens_of(answer)
                            built[row] = done[row] = True
                else:
                    trace_ids[row].append(token_id)
                    if grounders is not None:
                        trace_queue[row].extend(_token_ids(tokenizer, grounders[row].push(tokenizer.tokens[token_id])))
                    elif builders is not None:
                        builders[row].push(tokenizer.tokens[token_id])
                continue
            if not constrained:
                token_id = free[pos]
                next_ids.append(token_id)
                if token_id in (tokenizer.smiles_end_id, tokenizer.eos_id):
                    done[row] = True
                    continue
                smiles_tokens[row].append(tokenizer.tokens[token_id])
                if len(smiles_tokens[row]) >= smiles_limits[row // n_prompt_rows]:
                    done[row] = True
                continue
            token = _forced_smiles_token(states[row], forced_queue[row], smiles_limits[row // n_prompt_rows])
            if token is _SAMPLE:
                to_sample.append((pos, row))
                next_ids.append(tokenizer.pad_id)  # filled in below
                continue
            next_ids.append(_record_smiles_token(token, row, tokenizer, smiles_tokens, forced_queue, forced, done))
        if to_sample:  # one masked top-p distribution per row, computed together, then sampled row by row
            rows_probs, allowed, finite = _constrained_probs(
                logits[[pos for pos, _ in to_sample]], vocab, [states[row] for _, row in to_sample], temperature, top_p
            )
            for (pos, row), probs, ids, ok in zip(to_sample, rows_probs, allowed, finite, strict=True):
                generator = generators[row // n_prompt_rows]
                token = _pick_smiles_token(probs, len(ids), vocab, states[row], forced_queue[row], generator, ok)
                next_ids[pos] = _record_smiles_token(token, row, tokenizer, smiles_tokens, forced_queue, forced, done)
        if all(done) or cache.length + 1 > capacity:
            break
        keep = [pos for pos, row in enumerate(active) if not done[row]]
        drawing = [_drop_finished(rows, done) for rows in drawing]
        if _worth_dropping(len(active), len(active) - len(keep)):  # drop finished rows (copying the cache once)
            index = torch.tensor(keep)
            cache.select(index)
            active = [active[pos] for pos in keep]
            next_ids = [next_ids[pos] for pos in keep]
        logits = model(torch.tensor(next_ids).unsqueeze(1), cache=cache)[:, -1, :]

    results = [
        GeneratedText(
            tokenizer.decode(trace_ids[row]),
            "".join(smiles_tokens[row]),
            forced[row],
            len(trace_ids[row]) + len(smiles_tokens[row]),
            built[row],
            placed[row],
        )
        for row in range(n)
    ]
    return [results[i * n_prompt_rows : (i + 1) * n_prompt_rows] for i in range(n_prompts)]


def _spec_score(prompt: str):
    """The placement score of the prompt's spec; None when the prompt holds no spec (nothing is placed)."""
    from reasoning.placement import SpecScore
    from reasoning.traces import parse_spec

    try:
        return SpecScore(parse_spec(prompt))
    except Exception:  # noqa: BLE001 - a prompt without a parseable spec keeps the grounder's placement
        return None


def _built_answer(builder, score, elements, bounds: SmilesBounds | None) -> tuple[str | None, bool]:
    """The answer a row's build gives (None: decode instead), and whether its fragments were moved to meet the
    spec ``score`` counts (when given)."""
    if score is not None:
        from reasoning.placement import best_placement

        mol = best_placement(builder, score)
        if mol is not builder.partial:
            answer = answer_from(mol, elements, bounds)
            if answer is not None:
                return answer, True
    return answer_from(builder.partial, elements, bounds), False


class _BuildSize:
    """Whether a row's build is still below its bounds' minimum size or mass (cached per partial molecule)."""

    _MAX_SKIPPED = 2  # after this many build steps that did not attach, the trace may end (and fall back)

    def __init__(self):
        self._seen: object = None
        self._below = False

    def below(self, builder, bounds: SmilesBounds | None) -> bool:
        partial = builder.partial
        if bounds is None or partial is None or builder.skipped >= self._MAX_SKIPPED:
            return False
        if partial is not self._seen:
            from rdkit.Chem import Descriptors

            self._seen = partial
            self._below = partial.GetNumHeavyAtoms() < bounds.min_atoms or (
                bounds.min_mass > 0 and Descriptors.MolWt(partial) < bounds.min_mass
            )
        return self._below


def _token_ids(tokenizer: ReasoningTokenizer, tokens: list[str]) -> list[int]:
    """Ids of ``tokens``; none at all if any is missing from the vocabulary (then nothing is forced)."""
    ids = [tokenizer.index.get(t) for t in tokens]
    return [] if any(i is None for i in ids) else ids


def _sample_rows(
    logits: torch.Tensor,
    vocab: _Vocab,
    in_smiles: Sequence[bool],
    needed: Sequence[bool],
    temperature: float,
    top_p: float,
    generator: torch.Generator | None,
    draws: torch.Tensor | None = None,
    building: Sequence[bool] | None = None,
) -> list[int | None]:
    """One unconstrained sample per row (special tokens banned inside the trace), for the ``needed`` rows
    (None for the others). ``draws`` are the exponential draws of the needed rows, in order (one row of
    ``logits``' width each); without them the draws of every row are taken from ``generator``, so which
    rows are needed does not change the samples. The trace of a ``building`` row may not end its build
    steps yet (no ``check``, ``</think>`` or ``<smiles>``)."""
    rows = [i for i, need in enumerate(needed) if need]
    out: list[int | None] = [None] * len(needed)
    if temperature > 0:
        if draws is None:
            draws = torch.empty(logits.shape).exponential_(1, generator=generator)[rows]  # the draws of every row
        elif draws.shape != (len(rows), logits.shape[-1]):
            raise ValueError(f"draws of shape {tuple(draws.shape)} for {len(rows)} needed rows")
    if not rows:
        return out
    logits = logits[rows]
    trace_rows = [k for k, i in enumerate(rows) if not in_smiles[i]]
    if trace_rows:
        banned = torch.tensor(vocab.trace_banned).unsqueeze(0)
        logits[torch.tensor(trace_rows).unsqueeze(1), banned] = float("-inf")
    growing = [k for k, i in enumerate(rows) if building is not None and building[i] and not in_smiles[i]]
    if growing:
        ends = torch.tensor(vocab.build_end).unsqueeze(0)
        logits[torch.tensor(growing).unsqueeze(1), ends] = float("-inf")
    if temperature <= 0:
        picks = logits.argmax(dim=-1).tolist()
    else:
        probs = torch.softmax(logits / temperature, dim=-1)
        if top_p < 1.0:
            sorted_probs, order = torch.sort(probs, dim=-1, descending=True)
            keep = torch.cumsum(sorted_probs, dim=-1) - sorted_probs < top_p
            sorted_probs = sorted_probs * keep
            probs = torch.zeros_like(probs).scatter_(-1, order, sorted_probs)
        picks = (probs.numpy() / draws.numpy()).argmax(axis=-1).tolist()  # each row's exponential race
    for i, token in zip(rows, picks, strict=True):
        out[i] = token
    return out


def _worth_dropping(n_rows: int, n_finished: int) -> bool:
    """Whether enough of a batch's rows have finished to drop them (one copy of the cache)."""
    return n_finished >= max(4, n_rows // 8)


def _drop_finished(rows: list[int], done: Sequence[bool]) -> list[int]:
    """``rows`` without the finished ones when a batch of them would drop them now, else ``rows``."""
    keep = [row for row in rows if not done[row]]
    return keep if _worth_dropping(len(rows), len(rows) - len(keep)) else rows


def _stream_draws(
    generators: Sequence[torch.Generator],
    drawing: Sequence[list[int]],
    done: Sequence[bool],
    needed_rows: Sequence[int],
    width: int,
) -> torch.Tensor:
    """The exponential draws ``(len(needed_rows), width)`` of one step: every prompt with a row still going
    draws one row of noise for each of its ``drawing`` rows from its own stream (as the whole batch of a
    prompt decoded alone does), and each needed row takes its own."""
    blocks, where = [], {}
    for rows, generator in zip(drawing, generators, strict=True):
        if rows and not all(done[row] for row in rows):
            offset = len(where)
            where.update((row, offset + k) for k, row in enumerate(rows))
            blocks.append(torch.empty(len(rows), width).exponential_(1, generator=generator))
    if not blocks:
        return torch.empty(0, width)
    return torch.cat(blocks)[[where[row] for row in needed_rows]]


_SAMPLE = object()  # _forced_smiles_token's answer when the token has to be sampled


def _forced_smiles_token(state: SmilesGrammarState, forced_queue: list[str], max_smiles_tokens: int):
    """The next token when it is not sampled (queued completion, or the completion written out near the
    length limit; None for ``</smiles>``), else ``_SAMPLE``."""
    if forced_queue:
        token = forced_queue.pop(0)
        state.push(token)
        return token
    worst_completion = 3 * len(state.open_rings) + len(state.branches) + 2 + state.template_left()
    if state.element and state.n_tokens + worst_completion + 3 >= max_smiles_tokens:
        completion = state.completion()
        if not completion:  # nothing left to close (or, defensively, no completion found): end here
            return None
        forced_queue.extend(completion[1:])
        state.push(completion[0])
        return completion[0]
    return _SAMPLE


def _record_smiles_token(token, row, tokenizer, smiles_tokens, forced_queue, forced, done) -> int:
    """Book a chosen SMILES token (None: ``</smiles>``) for ``row``; returns the id fed to the model."""
    if token is None:
        done[row] = True
        return tokenizer.smiles_end_id
    if forced_queue[row]:
        forced[row] = True
    smiles_tokens[row].append(token)
    return tokenizer.index.get(token, tokenizer.unk_id)


def _end_allowed(state: SmilesGrammarState, any_allowed: bool) -> bool:
    return state.can_end() and (state.meets_minimums() or not any_allowed)


def _constrained_probs(
    logits: torch.Tensor,
    vocab: _Vocab,
    states: Sequence[SmilesGrammarState],
    temperature: float,
    top_p: float,
) -> tuple[list[torch.Tensor], list[list[int]], list[bool]]:
    """For each row, the masked top-p distribution :func:`_next_smiles_token` samples from (the same
    numbers), the allowed grammar token ids, and whether the distribution is known to be finite; all
    rows' softmax and top-p run in one batch."""
    ids = vocab.grammar_ids
    allowed = [[ids[t] for t in state.allowed_tokens() if t in ids] for state in states]
    width, end = logits.shape[-1], vocab.tokenizer.smiles_end_id
    open_ids = [i * width + t for i, row_ids in enumerate(allowed) for t in row_ids]  # flat (row, token)
    open_ids += [
        i * width + end
        for i, (s, row_ids) in enumerate(zip(states, allowed, strict=True))
        if _end_allowed(s, bool(row_ids))
    ]
    mask = torch.full(logits.shape, float("-inf"))
    mask.view(-1)[open_ids] = 0.0
    masked = logits.float() + mask
    probs = _filter_probs_rows(masked, temperature, top_p)
    usable = (torch.isfinite(probs).all(dim=-1) & (probs.sum(dim=-1) > 0)).tolist()
    rows = [row.clone() for row in probs.unbind(0)]
    for i in [i for i, ok in enumerate(usable) if not ok]:  # top-p removed every allowed token
        rows[i] = _filter_probs(masked[i], max(temperature, 1e-3), 1.0)
    return rows, allowed, usable


def _pick_smiles_token(
    probs: torch.Tensor,
    n_allowed: int,
    vocab: _Vocab,
    state: SmilesGrammarState,
    forced_queue: list[str],
    generator: torch.Generator,
    finite: bool = False,
) -> str | None:
    """Sample from ``probs`` (the masked distribution; changed in place) until a token keeps the prefix
    completable and above the spec's minimums; push it on ``state``. None is ``</smiles>``. ``finite``
    says the caller has checked that every entry of ``probs`` is finite."""
    tokenizer = vocab.tokenizer
    if finite or torch.isfinite(probs).all():  # zeroing rejected tokens below keeps it finite
        for _ in range(n_allowed + 1):
            total = float(probs.sum())
            if total <= 0:
                break
            token_id = _sample(probs / total, generator)
            if token_id == tokenizer.smiles_end_id:
                return None
            token = tokenizer.tokens[token_id]
            trial = state.copy()
            trial.push(token)
            if trial.stalls_below_minimum():
                probs[token_id] = 0.0  # a dead end below the spec's minimum size: try another token first
                continue
            if trial.completable():
                state.push(token)
                state.tail = trial.tail  # the state is the trial now; keep the completion it found
                return token
            probs[token_id] = 0.0
    # every allowed token leads to a dead end: finish with the greedy completion of the current prefix
    completion = state.completion() or []
    if not completion:
        return None
    forced_queue.extend(completion[1:])
    state.push(completion[0])
    return completion[0]


def _next_smiles_token(
    logits: torch.Tensor,
    vocab: _Vocab,
    state: SmilesGrammarState,
    forced_queue: list[str],
    max_smiles_tokens: int,
    temperature: float,
    top_p: float,
    generator: torch.Generator,
) -> str | None:
    """The next SMILES token of one row as a string, or None for ``</smiles>``, step by step: the
    reference for the batched path of :func:`generate_many` (which gives the same tokens and draws)."""
    token = _forced_smiles_token(state, forced_queue, max_smiles_tokens)
    if token is not _SAMPLE:
        return token
    allowed = {i: t for t, i in vocab.grammar_ids.items() if state.allows(t)}
    mask = torch.full_like(logits, float("-inf"))
    if allowed:
        mask[list(allowed)] = 0.0
    if _end_allowed(state, bool(allowed)):
        mask[vocab.tokenizer.smiles_end_id] = 0.0
    probs = _filter_probs(logits + mask, temperature, top_p)
    if float(probs.sum()) <= 0 or not torch.isfinite(probs).all():  # top-p removed every allowed token
        probs = _filter_probs(logits + mask, max(temperature, 1e-3), 1.0)
    return _pick_smiles_token(probs, len(allowed), vocab, state, forced_queue, generator)
