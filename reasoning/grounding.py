"""RDKit-grounded running estimates: the numbers in a trace's build steps are computed, not sampled.

A trace builds its answer step by step (``scaffold <SMILES> gives mw 234 tpsa 54 ; add *=O gives ...``)
and the model decides what to add next from those running estimates. A compact model computes them
badly (on held-out specs its scaffold ``tpsa`` was off by about 23 on average), so its later choices
rest on wrong numbers. :class:`TraceGrounder` follows the trace as it is decoded: when a step's fragment
is complete (the token ``gives``), it builds the partial molecule with RDKit (the scaffold, then each
``*``-fragment bonded to the first scaffold atom with room for it), and returns the estimate tokens the
teacher traces would hold for that molecule, which the decoder then writes instead of sampling them.

A fragment that does not parse or cannot be attached is left to the model (no tokens are forced), so
grounding never blocks decoding.

>>> g = TraceGrounder.for_prompt("<spec> mw 100 to 300 ; tpsa 20 to 60 </spec>")
>>> for token in ["scaffold", "C", "1", "=", "C", "C", "=", "C", "C", "=", "C", "1", "gives"]:
...     forced = g.push(token)
>>> forced
['mw', '7', '8', 'tpsa', '0', ';']
>>> for token in ["add", "*", "O", "gives"]:
...     forced = g.push(token)
>>> forced
['mw', '9', '4', 'tpsa', '2', '0', ';']
"""

from __future__ import annotations

from rdkit import Chem

from reasoning.traces import _RUNNING_PROPERTIES, format_value, parse_spec
from workbench.chem.properties import compute as compute_property

__all__ = ["TraceGrounder", "running_properties", "attach", "forced_positions", "built_molecule"]


def running_properties(property_names) -> list[str]:
    """The properties a teacher trace reports after each build step, for a spec with these properties."""
    wanted = ["mw", *[n for n in property_names if n in _RUNNING_PROPERTIES]][:3]
    return [n for n in _RUNNING_PROPERTIES if n in set(wanted)]


def _parse(smiles: str) -> Chem.Mol | None:
    return Chem.MolFromSmiles(smiles) if smiles and len(smiles) <= 200 else None


def attach(partial: Chem.Mol, fragment: Chem.Mol, anchors: list[int]) -> Chem.Mol | None:
    """``fragment`` (one ``*`` dummy atom) bonded, in place of the dummy, to the first of ``anchors`` with enough
    hydrogens for the bond (a ``=O``/``=N`` goes to an S or P that can take it first); None when no anchor fits
    or the result does not sanitize."""
    placed = _attach(partial, fragment, anchors)
    return placed[0] if placed is not None else None


def _attach(partial: Chem.Mol, fragment: Chem.Mol, anchors: list[int]) -> tuple[Chem.Mol, int] | None:
    """:func:`attach`, also returning the anchor the fragment went to."""
    dummies = [a for a in fragment.GetAtoms() if a.GetAtomicNum() == 0]
    if len(dummies) != 1 or dummies[0].GetDegree() != 1:
        return None
    dummy = dummies[0]
    bond = dummy.GetBonds()[0]
    order = int(bond.GetBondTypeAsDouble()) if not bond.GetIsAromatic() else 0
    if order < 1:
        return None
    inner = bond.GetOtherAtomIdx(dummy.GetIdx())
    offset = partial.GetNumAtoms()
    # A doubly bonded O/N on a non-aromatic S or P raises its valence (thioether -> sulfoxide -> sulfone) and
    # takes no hydrogen: that is where the teacher's "=O" steps most often go, so such atoms come first.
    expandable = []
    if order == 2 and fragment.GetAtomWithIdx(inner).GetSymbol() in ("O", "N"):
        max_valence = {"S": 6, "P": 5}
        for i in anchors:
            atom = partial.GetAtomWithIdx(i)
            limit = max_valence.get(atom.GetSymbol())
            if limit is not None and not atom.GetIsAromatic() and atom.GetTotalValence() < limit:
                expandable.append(i)
    grown = set(expandable)
    # the expandable atoms first, as such; every other anchor after, once, taking hydrogens
    for anchor in [*expandable, *(i for i in anchors if i not in grown)]:
        atom = partial.GetAtomWithIdx(anchor)
        grows = anchor in grown
        if not grows and (atom.GetTotalNumHs() < order or (order > 1 and atom.GetIsAromatic())):
            continue
        rw = Chem.RWMol(Chem.CombineMols(partial, fragment))
        target = rw.GetAtomWithIdx(anchor)
        if not grows and target.GetNumExplicitHs() >= order:
            target.SetNumExplicitHs(target.GetNumExplicitHs() - order)
        rw.AddBond(anchor, offset + inner, bond.GetBondType())
        rw.RemoveAtom(offset + dummy.GetIdx())
        out = rw.GetMol()
        try:
            Chem.SanitizeMol(out)
        except Exception:  # noqa: BLE001 - RDKit raises several types; any failure means "try the next anchor"
            continue
        return out, anchor
    return None


class TraceGrounder:
    """Follows one trace token by token and says which estimate tokens to write after each ``gives``."""

    def __init__(self, running: list[str]):
        self.running = list(running)
        self.partial: Chem.Mol | None = None
        self.anchors: list[int] = []
        self.scaffold: Chem.Mol | None = None  # the build's recipe: its scaffold, then (fragment, anchor) steps
        self.steps: list[tuple[Chem.Mol, int]] = []
        self._head: str | None = None  # "scaffold" or "add" while a fragment is being written
        self._fragment: list[str] = []
        self.grounded = 0  # steps whose estimates were computed
        self.skipped = 0  # steps left to the model (fragment did not parse or attach)

    @classmethod
    def for_prompt(cls, prompt: str) -> TraceGrounder:
        """A grounder reporting the running properties the teacher uses for the prompt's spec."""
        try:
            names = list(parse_spec(prompt).properties)
        except Exception:  # noqa: BLE001 - an unparseable prompt just gets the default estimate (mw)
            names = []
        return cls(running_properties(names))

    def push(self, token: str) -> list[str]:
        """Take the next trace token; return the tokens to force next (empty: sample as usual)."""
        if token in ("scaffold", "add"):
            self._head, self._fragment = token, []
            return []
        if self._head is None:
            return []
        if token != "gives":
            self._fragment.append(token)
            return []
        head, text = self._head, "".join(self._fragment)
        self._head, self._fragment = None, []
        mol = self._build(head, text)
        if mol is None:
            self.skipped += 1
            return []
        self.grounded += 1
        forced: list[str] = []
        for name in self.running:
            forced.append(name)
            forced.extend(_characters(format_value(name, compute_property(name, mol))))
        forced.append(";")
        return forced

    def _build(self, head: str, text: str) -> Chem.Mol | None:
        fragment = _parse(text)
        if fragment is None:
            return None
        if head == "scaffold":
            if any(a.GetAtomicNum() == 0 for a in fragment.GetAtoms()):
                return None
            self.partial = self.scaffold = fragment
            self.steps = []
            ranks = list(Chem.CanonicalRankAtoms(fragment))
            self.anchors = sorted(range(fragment.GetNumAtoms()), key=lambda i: ranks[i])
            return fragment
        if self.partial is None:
            return None
        placed = _attach(self.partial, fragment, self.anchors)
        if placed is None:
            return None
        self.partial = placed[0]  # atoms keep their indices, so the scaffold anchors stay valid
        self.steps.append((fragment, placed[1]))
        return self.partial


def forced_positions(prompt: str, tokens: list[str]) -> list[bool]:
    """For a trace's tokens after its restated prefix, which ones a grounded decoder wrote (not sampled)."""
    grounder = TraceGrounder.for_prompt(prompt)
    forced, pending = [], []
    for token in tokens:
        was_forced = bool(pending) and token == pending[0]
        pending = pending[1:] if was_forced else []
        forced.append(was_forced)
        pending.extend(grounder.push(token))
    return forced


def built_molecule(prompt: str, tokens: list[str]) -> Chem.Mol | None:
    """The molecule a trace builds: its scaffold with every added fragment bonded on as the grounder bonds it
    (fragments that do not parse or attach are skipped); None when the trace names no usable scaffold.

    For a teacher trace this is its answer up to where the fragments sit, so the two share a molecular
    formula; a model's final SMILES need not be the molecule its trace built."""
    del prompt  # the build does not depend on which estimates the prompt's trace reports
    grounder = TraceGrounder([])  # no estimates to compute: only the molecule is wanted
    for token in tokens:
        grounder.push(token)
    return grounder.partial


def _characters(value: str) -> list[str]:
    """A formatted number as the tokenizer splits it: one token per character (digits, ``-``, ``.``)."""
    return list(value)
