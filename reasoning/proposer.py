"""`Proposer`: design spec in, validated and spec-checked molecules out (propose -> validate -> repair).

Each round samples candidates for the spec, validates them with the chemistry core's rules and checks them
with ``spec.check`` (the one definition of "satisfied"). Candidates that fail feed their failure reasons
back into the next round's prompt (``<retry> mw 512 ; forbid Cl </retry>``). Results are deduplicated by
canonical SMILES. The loop stops when ``n`` proposals satisfy the spec, the round budget is spent, or the
time limit passes, so it never hangs. A spec nothing satisfies within the budget is reported as
``status == "unsatisfiable"`` with the constraints that failed most often (the closest valid misses are
returned, flagged ``ok=False``, unless ``fill_with_near_misses=False``).

>>> from reasoning import Proposer, DesignSpec
>>> proposer = Proposer.default()  # doctest: +SKIP
>>> spec = DesignSpec(properties={"mw": [250, 350]}, require=["C(=O)N"])
>>> found = proposer.propose(spec, n=4, seed=0)  # doctest: +SKIP
>>> found.status, [p.molecule.smiles for p in found]  # doctest: +SKIP
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

from reasoning.backends import Reasoner, load_backend
from reasoning.decoding import SmilesBounds
from reasoning.traces import render_feedback, render_spec
from workbench.chem import DesignSpec, Molecule, SpecReport, ValidationReport, validate
from workbench.chem.spec import ConstraintResult
from workbench.errors import InvalidMoleculeError, SpecError

__all__ = ["Proposal", "ProposalList", "Proposer"]


@dataclass(frozen=True)
class Proposal:
    """One candidate: the reasoning trace, the molecule (None if the SMILES did not parse), its
    validation report and its spec report, and the round it came from."""

    trace: str
    smiles: str
    molecule: Molecule | None
    validation: ValidationReport
    spec_report: SpecReport
    attempt: int = 0

    @property
    def valid(self) -> bool:
        return self.molecule is not None and self.validation.ok

    @property
    def ok(self) -> bool:
        """Valid and every spec constraint met."""
        return self.valid and self.spec_report.ok

    def __repr__(self) -> str:
        status = "ok" if self.ok else ("valid" if self.valid else "invalid")
        return f"Proposal({self.smiles!r}, {status}, attempt={self.attempt})"


class ProposalList(list):
    """The proposals of one :meth:`Proposer.propose` call, plus how the search ended.

    ``status`` is ``"satisfied"`` (n found), ``"partial"`` (fewer than n) or ``"unsatisfiable"`` (none met
    the spec within the budget); ``reason`` says why in a sentence; ``near_misses`` holds the best
    candidates that did not meet every constraint; ``stats`` counts what was sampled.
    """

    def __init__(self, items=(), status: str = "satisfied", reason: str = "", near_misses=(), stats=None):
        super().__init__(items)
        self.status = status
        self.reason = reason
        self.near_misses = list(near_misses)
        self.stats = dict(stats or {})


@dataclass
class Proposer:
    """Proposes molecules for a :class:`DesignSpec` with a :class:`~reasoning.backends.Reasoner` backend.

    ``rounds`` is the repair budget (rounds of sampling), ``samples_per_round`` how many candidates each
    round draws (default: twice the number still missing, at least 8), ``timeout_s`` a wall-clock cap.
    When fewer than ``n`` candidates meet the spec, ``fill_with_near_misses`` tops the list up with the
    closest valid misses (their ``ok`` is False and ``spec_report`` says what failed); ``status`` still
    says how the search ended. With ``spec_bounds`` (and ``constrained``) the decoder also keeps to the
    spec's heavy-atom, ring and molecular-weight limits while it writes
    (:class:`~reasoning.decoding.SmilesBounds`).
    """

    backend: Reasoner
    rounds: int = 4
    samples_per_round: int | None = None
    timeout_s: float = 120.0
    constrained: bool = True
    spec_bounds: bool = True
    fill_with_near_misses: bool = True
    _rules: object = field(default=None, repr=False)

    @classmethod
    def default(cls, backend: str = "compact", **options) -> Proposer:
        """The shipped model (``backend="compact"``); other options go to the Proposer (rounds, timeout_s...)."""
        backend_options = options.pop("backend_options", {})
        return cls(load_backend(backend, **backend_options), **options)

    def propose(self, spec: DesignSpec | dict | str, n: int = 8, seed: int = 0) -> ProposalList:
        """Up to ``n`` distinct valid molecules meeting every constraint of ``spec``, each with its trace.

        ``spec`` may be a DesignSpec, a mapping, or YAML text; a malformed spec raises SpecError.
        """
        spec = _as_spec(spec)
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive integer, got {n!r}")
        start = time.time()
        found: dict[str, Proposal] = {}
        misses: dict[str, Proposal] = {}
        failures: Counter[str] = Counter()
        stats = {"sampled": 0, "parsed": 0, "valid": 0, "satisfied": 0, "duplicates": 0, "rounds": 0}
        feedback = ""
        elements = list(spec.elements) if spec.elements is not None else None
        bounds = SmilesBounds.from_spec(spec) if self.constrained and self.spec_bounds else None
        for attempt in range(self.rounds):
            if len(found) >= n or time.time() - start > self.timeout_s:
                break
            stats["rounds"] += 1
            k = self.samples_per_round or max(8, 2 * (n - len(found)))
            prompt = render_spec(spec) + (f" {feedback}" if feedback else "")
            samples = self.backend.generate(
                prompt, k, seed=seed * 1009 + attempt, elements=elements, constrained=self.constrained, bounds=bounds
            )
            round_misses = []
            for sample in samples:
                stats["sampled"] += 1
                proposal = self._judge(spec, sample.trace, sample.smiles, attempt)
                if proposal.molecule is not None:
                    stats["parsed"] += 1
                if proposal.valid:
                    stats["valid"] += 1
                key = proposal.molecule.smiles if proposal.molecule is not None else None
                if key is not None and (key in found or key in misses):
                    stats["duplicates"] += 1
                    continue
                if proposal.ok:
                    found[key] = proposal
                    continue
                for r in proposal.spec_report.failed:
                    failures[_constraint_label(r)] += 1
                if not proposal.valid:
                    failures["valid"] += 1
                if key is not None:
                    misses[key] = proposal
                round_misses.append(proposal)
            feedback = _feedback_from(round_misses)
        stats["satisfied"] = len(found)
        stats["seconds"] = round(time.time() - start, 3)
        proposals = sorted(found.values(), key=lambda p: p.attempt)[:n]
        near = sorted(misses.values(), key=lambda p: (-p.valid, -p.spec_report.fraction_passed))[:n]
        if len(proposals) >= n:
            return ProposalList(proposals, "satisfied", f"{n} proposals meet every constraint", near, stats)
        common = ", ".join(f"{name} ({count}x)" for name, count in failures.most_common(3)) or "none"
        budget = f"{stats['rounds']} round(s), {stats['sampled']} candidates, {stats['seconds']:.1f} s"
        fill = [p for p in near if p.valid][: n - len(proposals)] if self.fill_with_near_misses else []
        if not proposals:
            reason = f"unsatisfiable within the budget ({budget}); constraints failed most often: {common}"
            return ProposalList(fill, "unsatisfiable", reason, near, stats)
        reason = f"only {len(proposals)} of {n} found within the budget ({budget}); most failed: {common}"
        return ProposalList(proposals + fill, "partial", reason, near, stats)

    def _judge(self, spec: DesignSpec, trace: str, smiles: str, attempt: int) -> Proposal:
        report = validate(smiles)
        molecule = report.molecule
        if molecule is None:
            try:
                molecule = Molecule(smiles)
            except InvalidMoleculeError:
                molecule = None
        if molecule is not None:
            molecule = molecule.with_meta(source="reasoning", trace=trace)
            spec_report = spec.check(molecule)
        else:
            spec_report = SpecReport(smiles, (ConstraintResult("valid", "molecule", False, "not parseable"),))
        return Proposal(trace, molecule.smiles if molecule else smiles, molecule, report, spec_report, attempt)


def _constraint_label(result: ConstraintResult) -> str:
    return result.name if result.kind == "property" else f"{result.kind} {result.name}"


def _feedback_from(misses: list[Proposal]) -> str:
    """Failure feedback from the round's closest miss (fewest failed constraints)."""
    if not misses:
        return ""
    best = max(misses, key=lambda p: (p.valid, p.spec_report.fraction_passed))
    failed = [(r.kind, str(r.name), r.measured) for r in best.spec_report.failed]
    if not best.valid and not failed:
        failed = [("valid", "molecule", None)]
    return render_feedback(failed)


def _as_spec(spec: DesignSpec | dict | str) -> DesignSpec:
    if isinstance(spec, DesignSpec):
        return spec
    if isinstance(spec, dict):
        return DesignSpec.from_dict(spec)
    if isinstance(spec, str):
        return DesignSpec.from_yaml(spec)
    raise SpecError("spec", f"expected a DesignSpec, a mapping or YAML text, got {type(spec).__name__}")
