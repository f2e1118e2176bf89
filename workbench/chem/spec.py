"""`DesignSpec`: what a chemist asks for, and the one definition of "satisfied".

Loaded from YAML/JSON (job files, notebooks, the HTTP endpoint) or built in Python; validated on the way
in, so an unknown property, an inverted range or a broken SMARTS is rejected with the field named.

>>> from workbench.chem.spec import DesignSpec
>>> spec = DesignSpec(properties={"mw": [250, 400], "clogp": [1, 3]}, require=["C(=O)N"], forbid=["[F,Cl,Br,I]"])
>>> report = spec.check("CC(=O)Nc1ccc(OCCN2CCOCC2)cc1")
>>> report.ok, report.failed
(True, [])
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from html import escape
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator, model_validator
from rdkit import Chem

from workbench.chem._yaml import is_element_symbol, load_yaml
from workbench.chem.molecule import Molecule
from workbench.chem.properties import NUMERIC_PROPERTIES, PROPERTIES
from workbench.errors import InvalidMoleculeError, SpecError

__all__ = ["DesignSpec", "SpecReport", "ConstraintResult", "SPEC_PROPERTIES"]

# properties a spec may constrain: every numeric property of the core
SPEC_PROPERTIES: tuple[str, ...] = NUMERIC_PROPERTIES


@dataclass(frozen=True)
class ConstraintResult:
    """One constraint of a spec checked on one molecule: what was asked, what was measured, pass/fail."""

    kind: str  # "property" | "require" | "forbid" | "scaffold" | "elements" | "valid"
    name: str  # property name, SMARTS, scaffold or "elements"
    passed: bool
    measured: Any = None
    wanted: Any = None

    def __str__(self) -> str:
        mark = "pass" if self.passed else "FAIL"
        if self.kind == "property":
            lo, hi = self.wanted
            value = f"{self.measured:.2f}" if isinstance(self.measured, float) else self.measured
            return f"{mark} {self.name} = {value} (wanted {lo}-{hi})"
        return f"{mark} {self.kind} {self.name}" + (f" (measured {self.measured})" if self.measured is not None else "")


@dataclass(frozen=True)
class SpecReport:
    """Per-constraint results of :meth:`DesignSpec.check`; ``ok`` is true when every constraint passes."""

    smiles: str
    results: tuple[ConstraintResult, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return all(r.passed for r in self.results)

    @property
    def failed(self) -> list[ConstraintResult]:
        return [r for r in self.results if not r.passed]

    @property
    def fraction_passed(self) -> float:
        return sum(r.passed for r in self.results) / len(self.results) if self.results else 1.0

    def by_name(self) -> dict[str, ConstraintResult]:
        return {f"{r.kind}:{r.name}": r for r in self.results}

    def __str__(self) -> str:
        head = f"SpecReport for {self.smiles!r}: {'satisfied' if self.ok else f'{len(self.failed)} failed'}"
        return "\n".join([head] + [f"  {r}" for r in self.results])

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr style='color:{'#2e7d32' if r.passed else '#c62828'}'><td>{escape(r.kind)}</td>"
            f"<td>{escape(str(r.name))}</td><td>{escape(str(r.measured))}</td><td>{escape(str(r.wanted))}</td></tr>"
            for r in self.results
        )
        return f"<div><b>{escape(self.smiles)}</b><table>{rows}</table></div>"


def _smarts(pattern: str, field_name: str) -> Chem.Mol:
    if not isinstance(pattern, str) or not pattern.strip():
        raise SpecError(field_name, "empty pattern")
    query = Chem.MolFromSmarts(pattern)
    if query is None:
        raise SpecError(field_name, f"{pattern!r} is not valid SMARTS")
    return query


class DesignSpec(BaseModel):
    """A design request: free text plus structured constraints (all optional, all inclusive).

    Fields: ``text``; ``properties`` mapping a property name to ``[min, max]``; ``require``/``forbid``
    SMARTS lists; ``scaffold`` (SMILES or SMARTS the result must contain); ``elements`` (allowed symbols).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    text: str = ""
    properties: dict[str, tuple[float, float]] = {}
    require: tuple[str, ...] = ()
    forbid: tuple[str, ...] = ()
    scaffold: str | None = None
    elements: tuple[str, ...] | None = None

    # ------------------------------------------------------------------ validation
    @field_validator("properties", mode="before")
    @classmethod
    def _check_properties(cls, value: Any) -> dict[str, tuple[float, float]]:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise SpecError("properties", "expected a mapping of property name to [min, max]")
        out = {}
        for name, rng in value.items():
            where = f"properties.{name}"
            if name not in SPEC_PROPERTIES:
                raise SpecError(where, f"unknown property; known properties are: {', '.join(SPEC_PROPERTIES)}")
            if isinstance(rng, int | float) and not isinstance(rng, bool):
                rng = (rng, rng)
            if not isinstance(rng, list | tuple) or len(rng) != 2:
                raise SpecError(where, "expected [min, max]")
            try:
                lo, hi = float(rng[0]), float(rng[1])
            except (TypeError, ValueError):
                raise SpecError(where, f"min and max must be numbers, got {list(rng)!r}") from None
            if math.isnan(lo) or math.isnan(hi):
                raise SpecError(where, "min and max must not be NaN")
            if lo > hi:
                raise SpecError(where, f"min {lo:g} is greater than max {hi:g}")
            out[name] = (lo, hi)
        return out

    @field_validator("require", "forbid", mode="before")
    @classmethod
    def _check_patterns(cls, value: Any, info) -> tuple[str, ...]:
        if value is None:
            return ()
        if isinstance(value, str):
            value = [value]
        for i, pattern in enumerate(value):
            _smarts(pattern, f"{info.field_name}[{i}]")
        return tuple(value)

    @field_validator("scaffold", mode="before")
    @classmethod
    def _check_scaffold(cls, value: Any) -> str | None:
        if value in (None, ""):
            return None
        if not isinstance(value, str):
            raise SpecError("scaffold", "expected a SMILES or SMARTS string")
        if Chem.MolFromSmiles(value) is None and Chem.MolFromSmarts(value) is None:
            raise SpecError("scaffold", f"{value!r} is neither valid SMILES nor SMARTS")
        return value

    @field_validator("elements", mode="before")
    @classmethod
    def _check_elements(cls, value: Any) -> tuple[str, ...] | None:
        if value is None:
            return None
        if isinstance(value, str):
            value = [value]
        out = []
        for symbol in value:
            if not is_element_symbol(symbol):
                raise SpecError("elements", f"{symbol!r} is not an element symbol")
            out.append(str(symbol))
        return tuple(out)

    @model_validator(mode="after")
    def _check_consistency(self) -> DesignSpec:
        for i, pattern in enumerate(self.require):
            if pattern in self.forbid:
                raise SpecError(f"require[{i}]", f"{pattern!r} is both required and forbidden")
        return self

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DesignSpec:
        """Build from a mapping; errors name the offending field."""
        from pydantic import ValidationError as PydanticValidationError

        if not isinstance(data, Mapping):
            raise SpecError("spec", f"expected a mapping, got {type(data).__name__}")
        try:
            return cls(**data)
        except SpecError:
            raise
        except PydanticValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first.get("loc", ())) or "spec"
            cause = first.get("ctx", {}).get("error")
            if isinstance(cause, SpecError):
                raise cause from None
            raise SpecError(where, first.get("msg", str(exc))) from None

    @classmethod
    def from_yaml(cls, source: str | os.PathLike) -> DesignSpec:
        """Load from a YAML (or JSON) file path or text, with a safe loader."""
        return cls.from_dict(load_yaml(source, "spec") or {})

    @classmethod
    def from_json(cls, text: str) -> DesignSpec:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SpecError("spec", f"not valid JSON: {exc}") from None
        return cls.from_dict(data)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.text:
            out["text"] = self.text
        if self.properties:
            out["properties"] = {k: [lo, hi] for k, (lo, hi) in self.properties.items()}
        if self.require:
            out["require"] = list(self.require)
        if self.forbid:
            out["forbid"] = list(self.forbid)
        if self.scaffold:
            out["scaffold"] = self.scaffold
        if self.elements is not None:
            out["elements"] = list(self.elements)
        return out

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    # ------------------------------------------------------------------ checking
    @property
    def n_constraints(self) -> int:
        return (
            len(self.properties)
            + len(self.require)
            + len(self.forbid)
            + (self.scaffold is not None)
            + (self.elements is not None)
        )

    def check(self, mol: Molecule | str) -> SpecReport:
        """Check every constraint on a molecule. An unparseable molecule fails a ``valid`` constraint."""
        if not isinstance(mol, Molecule):
            try:
                mol = Molecule(mol)
            except InvalidMoleculeError as exc:
                return SpecReport(str(mol), (ConstraintResult("valid", "molecule", False, exc.reason),))
        graph = mol.graph
        results = []
        for name, (lo, hi) in self.properties.items():
            value = mol.prop(name)
            results.append(ConstraintResult("property", name, bool(lo <= value <= hi), value, (lo, hi)))
        for pattern in self.require:
            n = len(graph.GetSubstructMatches(_compiled(pattern)))
            results.append(ConstraintResult("require", pattern, n > 0, n))
        for pattern in self.forbid:
            n = len(graph.GetSubstructMatches(_compiled(pattern)))
            results.append(ConstraintResult("forbid", pattern, n == 0, n))
        if self.scaffold is not None:
            found = graph.HasSubstructMatch(_compiled_scaffold(self.scaffold))
            results.append(ConstraintResult("scaffold", self.scaffold, found))
        if self.elements is not None:
            present = sorted({a.GetSymbol() for a in graph.GetAtoms()} | ({"H"} if _has_h(graph) else set()))
            extra = [s for s in present if s not in self.elements and s != "H"]
            results.append(ConstraintResult("elements", "elements", not extra, present, list(self.elements)))
        return SpecReport(mol.smiles, tuple(results))

    def satisfied(self, mol: Molecule | str) -> bool:
        return self.check(mol).ok

    def describe(self) -> list[str]:
        """The constraints as short English sentences (for prompts, reports and traces)."""
        lines = []
        for name, (lo, hi) in self.properties.items():
            label = PROPERTIES[name].label
            lines.append(f"{label} ({name}) between {lo:g} and {hi:g}" if lo != hi else f"{label} ({name}) = {lo:g}")
        lines += [f"contains {p}" for p in self.require]
        lines += [f"does not contain {p}" for p in self.forbid]
        if self.scaffold:
            lines.append(f"built on the scaffold {self.scaffold}")
        if self.elements is not None:
            lines.append(f"only the elements {' '.join(self.elements)}")
        return lines


_QUERY_CACHE: dict[str, Chem.Mol] = {}


def _compiled(pattern: str) -> Chem.Mol:
    query = _QUERY_CACHE.get(pattern)
    if query is None:
        query = _QUERY_CACHE[pattern] = _smarts(pattern, pattern)
    return query


def _compiled_scaffold(scaffold: str) -> Chem.Mol:
    key = "scaffold:" + scaffold
    query = _QUERY_CACHE.get(key)
    if query is None:
        query = Chem.MolFromSmiles(scaffold) or Chem.MolFromSmarts(scaffold)
        _QUERY_CACHE[key] = query
    return query


def _has_h(graph: Chem.Mol) -> bool:
    return any(a.GetTotalNumHs() for a in graph.GetAtoms())
