"""Chemistry rules and the validator every engine uses.

``validate(mol)`` runs a :class:`RuleSet` and returns a :class:`ValidationReport` of findings, each with a
rule id, a severity, a message and the atoms involved. ``report.ok`` is true when no finding is an error.

>>> from workbench.chem import validate
>>> validate("c1ccccc1C(=O)O").ok
True
>>> [f.rule for f in validate("C1=CC=CC=C1C(F)(F)(F)(F)").errors]
['valence']
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from html import escape
from typing import Any, ClassVar, Literal

from rdkit import Chem
from rdkit.Chem import Descriptors

from workbench.chem._yaml import is_element_symbol, load_yaml
from workbench.chem.alerts import alert_catalog, molecule_arrays
from workbench.chem.molecule import Molecule, describe_problems, smiles_syntax_problem
from workbench.errors import SpecError

__all__ = [
    "Finding",
    "ValidationReport",
    "Rule",
    "RuleSet",
    "RULES",
    "DEFAULT_RULES",
    "validate",
]

Severity = Literal["error", "warning"]
_SEVERITIES = ("error", "warning")


@dataclass(frozen=True)
class Finding:
    """One thing a rule found: which rule, how bad, what, and where (atom indices)."""

    rule: str
    severity: Severity
    message: str
    atoms: tuple[int, ...] = ()

    def __str__(self) -> str:
        where = f" (atoms {', '.join(map(str, self.atoms))})" if self.atoms else ""
        return f"[{self.severity}] {self.rule}: {self.message}{where}"


@dataclass(frozen=True)
class ValidationReport:
    """The findings of one validation run. ``ok`` is true when there are no errors.

    ``molecule`` is the sanitized :class:`Molecule` when the input could be sanitized, else ``None``.
    """

    source: str
    findings: tuple[Finding, ...]
    molecule: Molecule | None = field(default=None, compare=False, repr=False)
    skipped: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not any(f.severity == "error" for f in self.findings)

    @property
    def sanitized(self) -> bool:
        """True when the input passed RDKit parsing and sanitization."""
        return self.molecule is not None

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "warning"]

    def by_rule(self, rule: str) -> list[Finding]:
        return [f for f in self.findings if f.rule == rule]

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "ok": self.ok,
            "findings": [dataclasses.asdict(f) | {"atoms": list(f.atoms)} for f in self.findings],
            "skipped": list(self.skipped),
        }

    def summary(self) -> str:
        """One line: OK / number of errors and warnings and the rules that fired."""
        if not self.findings:
            return "ok"
        rules = sorted({f.rule for f in self.findings})
        status = "ok" if self.ok else "invalid"
        return f"{status}: {len(self.errors)} error(s), {len(self.warnings)} warning(s) [{', '.join(rules)}]"

    def __str__(self) -> str:
        lines = [f"ValidationReport for {self.source!r}: {self.summary()}"]
        lines += [f"  {f}" for f in self.findings]
        if self.skipped:
            lines.append(f"  skipped (input did not sanitize): {', '.join(self.skipped)}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        colour = "#2e7d32" if self.ok else "#c62828"
        rows = "".join(
            f"<tr><td>{escape(f.severity)}</td><td>{escape(f.rule)}</td><td>{escape(f.message)}</td>"
            f"<td>{escape(', '.join(map(str, f.atoms)))}</td></tr>"
            for f in self.findings
        )
        table = (
            f"<table><tr><th>severity</th><th>rule</th><th>message</th><th>atoms</th></tr>{rows}</table>"
            if rows
            else ""
        )
        return (
            f"<div><b style='color:{colour}'>{escape(self.summary())}</b> "
            f"<code>{escape(self.source)}</code>{table}</div>"
        )


# ---------------------------------------------------------------------------------------------- rules
@dataclass(frozen=True)
class Rule:
    """A named chemistry rule. Subclasses set ``id``/``description`` and implement :meth:`check`.

    Rules are frozen values: ``rule.configured(severity="warning")`` returns a changed copy.
    """

    id: ClassVar[str] = ""
    description: ClassVar[str] = ""
    stage: ClassVar[str] = "chemistry"  # "sanitize" rules run on the raw input, the rest on the molecule

    severity: Severity = "error"
    enabled: bool = True

    def check(self, mol: Molecule) -> Iterable[Finding]:  # pragma: no cover - abstract
        raise NotImplementedError

    def configured(self, **params: Any) -> Rule:
        names = {f.name for f in dataclasses.fields(self)}
        for key in params:
            if key not in names:
                raise SpecError(f"rules.{self.id}.{key}", f"unknown option; {self.id} takes {sorted(names)}")
        if "severity" in params and params["severity"] not in _SEVERITIES:
            raise SpecError(f"rules.{self.id}.severity", f"must be 'error' or 'warning', not {params['severity']!r}")
        try:
            return dataclasses.replace(self, **params)
        except (TypeError, ValueError) as exc:
            raise SpecError(f"rules.{self.id}", str(exc)) from None

    def finding(self, message: str, atoms: Iterable[int] = ()) -> Finding:
        return Finding(self.id, self.severity, message, tuple(int(a) for a in atoms))

    def params(self) -> dict[str, Any]:
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple | frozenset) else value
        return out


@dataclass(frozen=True)
class ParseRule(Rule):
    """The input must parse (SMILES or molblock) and pass the remaining RDKit sanitization steps."""

    id: ClassVar[str] = "parse"
    description: ClassVar[str] = "input parses and sanitizes with RDKit"
    stage: ClassVar[str] = "sanitize"


@dataclass(frozen=True)
class ValenceRule(Rule):
    """No atom may exceed its allowed valence (RDKit's valence model)."""

    id: ClassVar[str] = "valence"
    description: ClassVar[str] = "no atom exceeds its allowed valence"
    stage: ClassVar[str] = "sanitize"


@dataclass(frozen=True)
class KekulizeRule(Rule):
    """Aromatic systems must have a valid Kekulé structure."""

    id: ClassVar[str] = "kekulize"
    description: ClassVar[str] = "aromatic systems can be kekulized"
    stage: ClassVar[str] = "sanitize"


DEFAULT_ELEMENTS = ("H", "B", "C", "N", "O", "F", "Si", "P", "S", "Cl", "Se", "Br", "I")
DEFAULT_COUNTERIONS = ("Li", "Na", "K", "Mg", "Ca", "Zn")


@dataclass(frozen=True)
class ElementsRule(Rule):
    """Only the listed elements may appear; dummy atoms (``*``) are never allowed.

    Isolated counter-ions listed in ``counterions`` (e.g. the Na+ of a sodium salt) are accepted here;
    the ``fragments`` rule reports the salt.
    """

    id: ClassVar[str] = "elements"
    description: ClassVar[str] = "only allowed elements"
    allowed: tuple[str, ...] = DEFAULT_ELEMENTS
    counterions: tuple[str, ...] = DEFAULT_COUNTERIONS

    def __post_init__(self):
        for name in ("allowed", "counterions"):
            symbols = tuple(getattr(self, name))
            for symbol in symbols:
                if not is_element_symbol(symbol):
                    raise SpecError(f"rules.elements.{name}", f"{symbol!r} is not an element symbol")
            object.__setattr__(self, name, symbols)

    def check(self, mol: Molecule) -> Iterable[Finding]:
        if not mol.graph.HasSubstructMatch(_disallowed_query(self.allowed)):
            return
        allowed = set(self.allowed)
        ions = set(self.counterions)
        bad: dict[str, list[int]] = {}
        for atom in mol.graph.GetAtoms():
            symbol = atom.GetSymbol() if atom.GetAtomicNum() else "*"
            if symbol in allowed or (symbol in ions and atom.GetDegree() == 0 and atom.GetFormalCharge() > 0):
                continue
            bad.setdefault(symbol, []).append(atom.GetIdx())
        for symbol, atoms in bad.items():
            what = "dummy atom '*'" if symbol == "*" else f"element {symbol}"
            yield self.finding(f"{what} is not allowed (allowed: {' '.join(self.allowed)})", atoms)


@functools.lru_cache(maxsize=64)
def _disallowed_query(allowed: tuple[str, ...]) -> Chem.Mol:
    """A one-atom query matching any atom whose element is not in ``allowed`` (dummy atoms included)."""
    table = Chem.GetPeriodicTable()
    terms = ";".join(f"!#{table.GetAtomicNumber(s)}" for s in allowed) or "*"
    return Chem.MolFromSmarts(f"[{terms}]")


_CHARGED = Chem.MolFromSmarts("[!+0]")
_ISOTOPE = Chem.MolFromSmarts("[!0*]")
_SP_IN_RING = Chem.MolFromSmarts("[R;^1]")


@dataclass(frozen=True)
class RadicalsRule(Rule):
    """No unpaired electrons."""

    id: ClassVar[str] = "radicals"
    description: ClassVar[str] = "no radical electrons"

    def check(self, mol: Molecule) -> Iterable[Finding]:
        if not Descriptors.NumRadicalElectrons(mol.graph):
            return
        atoms = [a.GetIdx() for a in mol.graph.GetAtoms() if a.GetNumRadicalElectrons()]
        if atoms:
            yield self.finding(f"{len(atoms)} atom(s) carry unpaired electrons", atoms)


@dataclass(frozen=True)
class ChargesRule(Rule):
    """Formal charges must be plausible: per-atom magnitude, charged carbon, and net charge.

    A net charge up to ``max_net_charge`` is a warning (a real ion); beyond it an error.
    """

    id: ClassVar[str] = "charges"
    description: ClassVar[str] = "formal-charge sanity and net charge"
    max_atom_charge: int = 1
    max_net_charge: int = 2

    def check(self, mol: Molecule) -> Iterable[Finding]:
        graph = mol.graph
        if not graph.HasSubstructMatch(_CHARGED):
            return
        net = 0
        for atom in graph.GetAtoms():
            q = atom.GetFormalCharge()
            net += q
            if abs(q) > self.max_atom_charge:
                yield Finding(
                    self.id, "warning", f"{atom.GetSymbol()}{q:+d} has an unusual formal charge", (atom.GetIdx(),)
                )
            elif q and atom.GetAtomicNum() == 6 and not _is_isonitrile_carbon(atom):
                yield Finding(self.id, "warning", f"charged carbon (C{q:+d}) is unusual", (atom.GetIdx(),))
        if abs(net) > self.max_net_charge:
            yield self.finding(f"net charge {net:+d} exceeds ±{self.max_net_charge}")
        elif net:
            yield Finding(self.id, "warning", f"net charge {net:+d}")


def _is_isonitrile_carbon(atom: Chem.Atom) -> bool:
    return atom.GetFormalCharge() == -1 and any(
        b.GetBondType() == Chem.BondType.TRIPLE and b.GetOtherAtom(atom).GetFormalCharge() == 1 for b in atom.GetBonds()
    )


@dataclass(frozen=True)
class FragmentsRule(Rule):
    """One connected molecule; salts and mixtures are reported with their fragments."""

    id: ClassVar[str] = "fragments"
    description: ClassVar[str] = "a single connected fragment"
    severity: Severity = "warning"

    def check(self, mol: Molecule) -> Iterable[Finding]:
        frags = Chem.GetMolFrags(mol.graph, asMols=False, sanitizeFrags=False)
        if len(frags) > 1:
            frags = sorted(frags, key=len, reverse=True)
            small = [i for frag in frags[1:] for i in frag]
            yield self.finding(
                f"{len(frags)} disconnected fragments (largest has {len(frags[0])} heavy atoms); "
                "strip counter-ions with workbench.chem.largest_fragment",
                small,
            )


@dataclass(frozen=True)
class RingStrainRule(Rule):
    """Small rings must be geometrically possible.

    Error: an sp atom (triple bond, allene) in a ring smaller than ``min_sp_ring`` (8). (E double bonds in
    rings below eight atoms cannot occur here: RDKit does not assign E/Z stereo in such rings.)
    Warning: more than ``max_small_rings`` three/four-membered rings, or an atom shared by two of them.
    """

    id: ClassVar[str] = "ring_strain"
    description: ClassVar[str] = "small-ring strain limits"
    min_sp_ring: int = 8
    max_small_rings: int = 2

    def check(self, mol: Molecule) -> Iterable[Finding]:
        graph = mol.graph
        info = graph.GetRingInfo()
        if not info.NumRings():
            return
        for (idx,) in graph.GetSubstructMatches(_SP_IN_RING):
            size = info.MinAtomRingSize(idx)
            if size < self.min_sp_ring:
                symbol = graph.GetAtomWithIdx(idx).GetSymbol()
                yield self.finding(f"linear (sp) {symbol} in a {size}-membered ring", (idx,))
        small = [ring for ring in info.AtomRings() if len(ring) <= 4]
        if len(small) > self.max_small_rings:
            yield Finding(
                self.id,
                "warning",
                f"{len(small)} three/four-membered rings (more than {self.max_small_rings})",
                tuple(sorted({i for r in small for i in r})),
            )
        if len(small) > 1:
            seen: dict[int, int] = {}
            for ring in small:
                for i in ring:
                    seen[i] = seen.get(i, 0) + 1
            shared = sorted(i for i, n in seen.items() if n > 1)
            if shared:
                yield Finding(self.id, "warning", "atoms shared by fused three/four-membered rings", tuple(shared))


@dataclass(frozen=True)
class IsotopesRule(Rule):
    """Isotope labels are flagged (they change identity and mass)."""

    id: ClassVar[str] = "isotopes"
    description: ClassVar[str] = "no isotope labels"
    severity: Severity = "warning"

    def check(self, mol: Molecule) -> Iterable[Finding]:
        if not mol.graph.HasSubstructMatch(_ISOTOPE):
            return
        atoms = [a.GetIdx() for a in mol.graph.GetAtoms() if a.GetIsotope()]
        if atoms:
            labels = sorted({f"{a.GetIsotope()}{a.GetSymbol()}" for a in mol.graph.GetAtoms() if a.GetIsotope()})
            yield self.finding(f"isotope label(s) {', '.join(labels)}", atoms)


@dataclass(frozen=True)
class _AlertRule(Rule):
    """Structural alerts from one of RDKit's FilterCatalogs."""

    catalog: ClassVar[str] = ""
    severity: Severity = "warning"

    def check(self, mol: Molecule) -> Iterable[Finding]:
        arrays = mol._cache.get("_alert_arrays")
        if arrays is None:
            arrays = mol._cache["_alert_arrays"] = molecule_arrays(mol.graph)
        for description, atoms in alert_catalog(self.catalog).matches(mol.graph, arrays):
            yield self.finding(f"{self.id.upper()} alert: {description}", atoms)


@dataclass(frozen=True)
class PainsRule(_AlertRule):
    """PAINS (pan-assay interference) substructures (Baell & Holloway), families A, B and C."""

    id: ClassVar[str] = "pains"
    description: ClassVar[str] = "PAINS alerts"
    catalog: ClassVar[str] = "PAINS"


@dataclass(frozen=True)
class BrenkRule(_AlertRule):
    """Brenk unwanted/reactive/toxic groups."""

    id: ClassVar[str] = "brenk"
    description: ClassVar[str] = "Brenk structural alerts"
    catalog: ClassVar[str] = "BRENK"


@dataclass(frozen=True)
class NihRule(_AlertRule):
    """NIH (NCATS) reactive and assay-interfering groups."""

    id: ClassVar[str] = "nih"
    description: ClassVar[str] = "NIH structural alerts"
    catalog: ClassVar[str] = "NIH"


@dataclass(frozen=True)
class LipinskiRule(Rule):
    """Rule of five: MW ≤ 500, cLogP ≤ 5, HBD ≤ 5, HBA ≤ 10; more than ``max_violations`` is flagged."""

    id: ClassVar[str] = "lipinski"
    description: ClassVar[str] = "Lipinski rule of five"
    severity: Severity = "warning"
    max_violations: int = 1

    def check(self, mol: Molecule) -> Iterable[Finding]:
        v = []
        if mol.prop("mw") > 500:
            v.append(f"MW {mol.prop('mw'):.1f} > 500")
        if mol.prop("clogp") > 5:
            v.append(f"cLogP {mol.prop('clogp'):.2f} > 5")
        if mol.prop("hbd") > 5:
            v.append(f"HBD {mol.prop('hbd')} > 5")
        if mol.prop("hba") > 10:
            v.append(f"HBA {mol.prop('hba')} > 10")
        if len(v) > self.max_violations:
            yield self.finding(f"{len(v)} rule-of-five violations: {'; '.join(v)}")


@dataclass(frozen=True)
class VeberRule(Rule):
    """Oral bioavailability: rotatable bonds ≤ 10 and TPSA ≤ 140 Å²."""

    id: ClassVar[str] = "veber"
    description: ClassVar[str] = "Veber rotatable bonds / TPSA"
    severity: Severity = "warning"

    def check(self, mol: Molecule) -> Iterable[Finding]:
        v = []
        if mol.prop("rotb") > 10:
            v.append(f"{mol.prop('rotb')} rotatable bonds > 10")
        if mol.prop("tpsa") > 140:
            v.append(f"TPSA {mol.prop('tpsa'):.1f} > 140")
        if v:
            yield self.finding("Veber: " + "; ".join(v))


@dataclass(frozen=True)
class GhoseRule(Rule):
    """Ghose filter: MW 160–480, cLogP −0.4–5.6, molar refractivity 40–130, 20–70 atoms (with H)."""

    id: ClassVar[str] = "ghose"
    description: ClassVar[str] = "Ghose drug-likeness ranges"
    severity: Severity = "warning"

    def check(self, mol: Molecule) -> Iterable[Finding]:
        mr = mol.prop("mr")
        n_atoms = mol.prop("atoms")
        v = []
        if not 160 <= mol.prop("mw") <= 480:
            v.append(f"MW {mol.prop('mw'):.1f} outside 160-480")
        if not -0.4 <= mol.prop("clogp") <= 5.6:
            v.append(f"cLogP {mol.prop('clogp'):.2f} outside -0.4-5.6")
        if not 40 <= mr <= 130:
            v.append(f"molar refractivity {mr:.1f} outside 40-130")
        if not 20 <= n_atoms <= 70:
            v.append(f"{n_atoms} atoms outside 20-70")
        if v:
            yield self.finding("Ghose: " + "; ".join(v))


RULES: dict[str, type[Rule]] = {
    cls.id: cls
    for cls in [
        ParseRule,
        ValenceRule,
        KekulizeRule,
        ElementsRule,
        RadicalsRule,
        ChargesRule,
        FragmentsRule,
        RingStrainRule,
        IsotopesRule,
        PainsRule,
        BrenkRule,
        NihRule,
        LipinskiRule,
        VeberRule,
        GhoseRule,
    ]
}
"""Every rule the validator knows, by id, in the order they run."""


class RuleSet:
    """An ordered, immutable set of configured rules.

    >>> rs = RuleSet.from_dict({"rules": {"pains": False, "elements": {"allowed": ["C", "N", "O", "H"]}}})
    >>> rs["elements"].allowed, rs["pains"].enabled
    (('C', 'N', 'O', 'H'), False)
    """

    __slots__ = ("_rules", "_key")

    def __init__(self, rules: Iterable[Rule]):
        ordered = {r.id: r for r in rules}
        for rid in ordered:
            if rid not in RULES:
                raise SpecError(f"rules.{rid}", "unknown rule")
        self._rules = tuple(ordered.values())
        self._key = tuple(
            (r.id, tuple(sorted(r.params().items(), key=lambda kv: kv[0])).__repr__()) for r in self._rules
        )

    @classmethod
    def default(cls) -> RuleSet:
        return cls(rule_cls() for rule_cls in RULES.values())

    @classmethod
    def none(cls) -> RuleSet:
        """The sanitization rules only (parse, valence, kekulize)."""
        return cls(rule_cls() for rule_cls in RULES.values() if rule_cls.stage == "sanitize")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> RuleSet:
        """Build from ``{"base": "default"|"none", "rules": {id: bool | {option: value}}}``.

        A bare ``{id: ...}`` mapping (without the ``rules`` key) is accepted too.
        """
        if data is None:
            return cls.default()
        if not isinstance(data, Mapping):
            raise SpecError("rules", f"expected a mapping, got {type(data).__name__}")
        if "rules" in data or "base" in data:
            extra = set(data) - {"rules", "base"}
            if extra:
                raise SpecError(sorted(extra)[0], "unknown key; a rule set has 'base' and 'rules'")
            base, rules = data.get("base", "default"), data.get("rules") or {}
        else:
            base, rules = "default", data
        if base not in ("default", "none"):
            raise SpecError("base", f"must be 'default' or 'none', not {base!r}")
        if not isinstance(rules, Mapping):
            raise SpecError("rules", f"expected a mapping of rule id to settings, got {type(rules).__name__}")
        current = {r.id: r for r in (cls.default() if base == "default" else cls.none())}
        for rid, setting in rules.items():
            if rid not in RULES:
                raise SpecError(f"rules.{rid}", f"unknown rule; known rules are: {', '.join(RULES)}")
            rule = current.get(rid) or RULES[rid]()
            if isinstance(setting, bool):
                rule = rule.configured(enabled=setting)
            elif isinstance(setting, Mapping):
                params = dict(setting)
                for key in ("allowed", "counterions"):
                    if key in params and isinstance(params[key], list | tuple):
                        params[key] = tuple(params[key])
                rule = rule.configured(**{"enabled": True, **params})
            else:
                raise SpecError(f"rules.{rid}", "expected true/false or a mapping of options")
            current[rid] = rule
        return cls(r for rid in RULES if (r := current.get(rid)) is not None)

    @classmethod
    def from_yaml(cls, source: str | os.PathLike) -> RuleSet:
        """Load from a YAML file path or YAML text (safe loader)."""
        return cls.from_dict(load_yaml(source, "rules"))

    def to_dict(self) -> dict[str, Any]:
        out = {}
        for r in self._rules:
            params = r.params()
            out[r.id] = params
        return {"base": "none", "rules": out}

    def enable(self, *ids: str) -> RuleSet:
        return self._with(ids, enabled=True)

    def disable(self, *ids: str) -> RuleSet:
        return self._with(ids, enabled=False)

    def configure(self, rule_id: str, **params: Any) -> RuleSet:
        return self._with((rule_id,), **params)

    def _with(self, ids: Iterable[str], **params: Any) -> RuleSet:
        current = {r.id: r for r in self._rules}
        for rid in ids:
            if rid not in RULES:
                raise SpecError(f"rules.{rid}", f"unknown rule; known rules are: {', '.join(RULES)}")
            current[rid] = (current.get(rid) or RULES[rid]()).configured(**params)
        return RuleSet(r for rid in RULES if (r := current.get(rid)) is not None)

    @property
    def ids(self) -> list[str]:
        return [r.id for r in self._rules if r.enabled]

    def __getitem__(self, rule_id: str) -> Rule:
        for r in self._rules:
            if r.id == rule_id:
                return r
        raise KeyError(f"rule {rule_id!r} is not in this rule set")

    def __contains__(self, rule_id: object) -> bool:
        return any(r.id == rule_id and r.enabled for r in self._rules)

    def __iter__(self) -> Iterator[Rule]:
        return iter(self._rules)

    def __len__(self) -> int:
        return len(self._rules)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RuleSet) and self._key == other._key

    def __hash__(self) -> int:
        return hash(self._key)

    def __repr__(self) -> str:
        off = [r.id for r in self._rules if not r.enabled]
        return f"RuleSet({', '.join(self.ids)}" + (f"; disabled: {', '.join(off)})" if off else ")")


DEFAULT_RULES = RuleSet.default()

_SANITIZE_KIND = {
    "AtomValenceException": "valence",
    "KekulizeException": "kekulize",
    "AtomKekulizeException": "kekulize",
}


def validate(
    mol: Molecule | str | Chem.Mol, rules: RuleSet | Mapping[str, Any] | None = DEFAULT_RULES
) -> ValidationReport:
    """Check a molecule against a rule set and explain every problem found.

    ``mol`` may be a :class:`Molecule`, a SMILES string, a molblock, or an RDKit Mol (sanitized or not).
    Never raises for bad chemistry: unparseable input yields a report with a ``parse`` error.
    Reports for a :class:`Molecule` are cached on it, so repeated calls are free.
    """
    ruleset = rules if isinstance(rules, RuleSet) else RuleSet.from_dict(rules)
    if isinstance(mol, Molecule):
        key = ("validation", ruleset)
        cached = mol._cache.get(key)
        if cached is None:
            cached = _run_chemistry(mol, mol.smiles, (), ruleset)
            mol._cache[key] = cached
        return cached
    if isinstance(mol, str):
        return _validate_text(mol, ruleset)
    if isinstance(mol, Chem.Mol):
        return _validate_raw(Chem.Mol(mol), "RDKit molecule", ruleset)
    return ValidationReport(
        str(mol)[:80], (Finding("parse", "error", f"cannot validate an object of type {type(mol).__name__}"),)
    )


@functools.lru_cache(maxsize=8192)
def _validate_text(text: str, ruleset: RuleSet) -> ValidationReport:
    source = text if len(text) <= 200 else text[:197] + "..."
    stripped = text.strip()
    if not stripped:
        return ValidationReport(text, (Finding("parse", "error", "empty input"),))
    if "\n" in stripped and "M  END" in stripped:
        raw = Chem.MolFromMolBlock(text, sanitize=False, removeHs=False)
        what = "molblock"
        source = stripped.split("\n", 1)[0] or "molblock"
    elif any(c.isspace() for c in stripped):
        return ValidationReport(source, (Finding("parse", "error", "SMILES contains whitespace"),))
    else:
        sanitized = Chem.MolFromSmiles(stripped)
        if sanitized is not None:  # the common case: one parse, no diagnostics needed
            molecule = Molecule._wrap_sanitized(sanitized)
            return _run_chemistry(molecule, source, (), ruleset)
        raw = Chem.MolFromSmiles(stripped, sanitize=False)
        what = "SMILES"
    if raw is None:
        hint = smiles_syntax_problem(stripped) if what == "SMILES" else None
        message = f"not a parseable {what}" + (f": {hint}" if hint else "")
        return ValidationReport(source, (Finding("parse", "error", message),))
    return _validate_raw(raw, source, ruleset)


def _validate_raw(raw: Chem.Mol, source: str, ruleset: RuleSet) -> ValidationReport:
    findings: list[Finding] = []
    enabled = {r.id: r for r in ruleset if r.enabled}
    problems = describe_problems(raw)
    for kind, message, atoms in problems:
        rule = _SANITIZE_KIND.get(kind, "parse")
        if rule in enabled:
            findings.append(enabled[rule].finding(message, atoms))
    molecule = None
    if not problems:
        try:
            molecule = Molecule(raw)
        except Exception as exc:  # sanitization failed for a reason DetectChemistryProblems does not list
            if "parse" in enabled:
                findings.append(enabled["parse"].finding(f"RDKit sanitization failed: {exc}"))
    if molecule is None:
        if not findings:  # the rule that would have caught it was disabled; still never pretend it is fine
            findings.append(Finding("parse", "error", "input does not sanitize (its rule is disabled)"))
        skipped = tuple(r.id for r in ruleset if r.enabled and r.stage != "sanitize")
        return ValidationReport(source, tuple(findings), None, skipped)
    return _run_chemistry(molecule, molecule.smiles, tuple(findings), ruleset)


def _run_chemistry(
    molecule: Molecule, source: str, findings: tuple[Finding, ...], ruleset: RuleSet
) -> ValidationReport:
    out = list(findings)
    for rule in ruleset:
        if rule.enabled and rule.stage != "sanitize":
            out.extend(rule.check(molecule))
    return ValidationReport(source, tuple(out), molecule)
