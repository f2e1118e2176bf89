"""How faithful the reasoning model's traces are: ``results/reasoning_self_check.json``.

A trace ends with "check every constraint" (``check mw 312 ok ; tpsa 64 ok ; ...``). This samples held-out
specs, takes each valid answer, and counts the property checks the trace calls ``ok`` that the final
molecule fails under ``spec.check``, per property, plus the answers whose trace calls every check ``ok``
while the spec fails. The specs come from the same held-out scaffold split as ``benchmarks/reasoning.py``
but with their own seed, so the two benchmarks do not share specs.

It also assembles the molecule each trace builds (its scaffold plus every added fragment, bonded as
:func:`reasoning.grounding.built_molecule` bonds them while grounding the running estimates) and compares it
with the final answer: how often the two have the same molecular formula (a teacher trace's build always
has its answer's formula, up to fragments the grounder cannot attach), and how often each meets the spec,
per answer and best of the spec's samples. ``--compare`` adds the same build-vs-answer figures for other
checkpoints, e.g. the stage (a) and (b) models. Satisfaction here is not checked for novelty.

Every model here writes its own final SMILES (``answer_from_build=False``): this measures the model, not
the decoder, which by default answers with the build whenever it fits (``CompactReasoner.answer_from_build``;
``benchmarks/reasoning.py`` measures that).

    OMP_NUM_THREADS=1 python benchmarks/reasoning_self_check.py --specs 60 \
        --compare build/reasoning/sft build/reasoning/align
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rdkit import Chem  # noqa: E402
from rdkit.Chem.rdMolDescriptors import CalcMolFormula  # noqa: E402

from benchmarks import _results  # noqa: E402
from benchmarks.reasoning import held_out_specs  # noqa: E402
from reasoning.backends.compact import CompactReasoner, default_checkpoint  # noqa: E402
from reasoning.decoding import SmilesBounds  # noqa: E402
from reasoning.grounding import built_molecule  # noqa: E402
from reasoning.traces import render_spec  # noqa: E402
from workbench.chem import validate  # noqa: E402

_CLAIM = re.compile(r"(\w+) -?[\d.]+ ok")


def claimed_ok(trace: str) -> tuple[bool, list[str]]:
    """(whether the trace has a check step, the properties its check step calls ok with a value)."""
    if " check " not in trace:
        return False, []
    return True, _CLAIM.findall(trace.split(" check ", 1)[1])


def valid_answers(reasoner: CompactReasoner, specs, samples: int, seed: int) -> list[list[tuple]]:
    """Per spec, ``(prompt, sample, molecule)`` for each of its ``samples`` answers that is a valid molecule."""
    out = []
    for _, spec in specs:
        prompt = render_spec(spec)
        rows = []
        for sample in reasoner.generate(
            prompt,
            samples,
            seed=seed,
            elements=list(spec.elements) if spec.elements is not None else None,
            bounds=SmilesBounds.from_spec(spec),
        ):
            report = validate(sample.smiles) if sample.smiles else None
            if report is not None and report.molecule is not None and report.ok:
                rows.append((prompt, sample, report.molecule))
        out.append(rows)
    return out


def check_claims(specs, answers: list[list[tuple]]) -> dict:
    """How often the check step's ``ok`` claims are false of the final answer, overall and per property."""
    claims, false_claims = Counter(), Counter()
    n_answers = with_check = all_ok = all_ok_but_failed = 0
    for (_, spec), rows in zip(specs, answers, strict=True):
        for _, sample, molecule in rows:
            n_answers += 1
            checked = spec.check(molecule)
            failed = {str(r.name) for r in checked.failed if r.kind == "property"}
            has_check, props = claimed_ok(sample.trace)
            with_check += has_check
            # the trace vocabulary has no failing verdict, so a check step is an "every check ok" claim
            all_ok += has_check
            all_ok_but_failed += has_check and not checked.ok
            for prop in props:
                claims[prop] += 1
                false_claims[prop] += prop in failed
    return {
        "valid_answers": n_answers,
        "answers_with_check_step": with_check,
        "all_ok_claims": all_ok,
        "all_ok_claims_false": all_ok_but_failed,
        "all_ok_claims_false_fraction": round(all_ok_but_failed / all_ok, 4) if all_ok else None,
        "property_ok_claims": dict(sorted(claims.items())),
        "property_ok_claims_false_fraction": {
            k: round(false_claims[k] / n, 4) for k, n in sorted(claims.items()) if n >= 5
        },
    }


def build_vs_answer(tokenizer, specs, answers: list[list[tuple]]) -> dict:
    """Per answer and per spec: does the trace's built molecule, or the final answer, meet the spec?"""
    n_answers = assembled = same_formula = built_ok = answer_ok = specs_built = specs_answer = 0
    for (_, spec), rows in zip(specs, answers, strict=True):
        any_built = any_answer = False
        for prompt, sample, molecule in rows:
            n_answers += 1
            ok = spec.check(molecule).ok
            answer_ok += ok
            any_answer |= ok
            built = built_molecule(prompt, tokenizer.tokenize(sample.trace))
            built_report = validate(Chem.MolToSmiles(built)) if built is not None else None
            if built_report is None or built_report.molecule is None or not built_report.ok:
                continue
            assembled += 1
            same_formula += CalcMolFormula(built) == CalcMolFormula(molecule.graph)
            b_ok = spec.check(built_report.molecule).ok
            built_ok += b_ok
            any_built |= b_ok
        specs_built += any_built
        specs_answer += any_answer
    n = len(specs)
    return {
        "valid_answers": n_answers,
        "builds_assembled": assembled,
        "same_formula_fraction": round(same_formula / assembled, 4) if assembled else None,
        "answer_meets_spec_fraction": round(answer_ok / n_answers, 4) if n_answers else None,
        "build_meets_spec_fraction": round(built_ok / n_answers, 4) if n_answers else None,
        "answer_best_of_n": round(specs_answer / n, 4) if n else None,
        "build_best_of_n": round(specs_built / n, 4) if n else None,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--specs", type=int, default=60)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--seed", type=int, default=123)
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--name", default="reasoning_self_check")
    parser.add_argument("--compare", nargs="*", default=[], help="more checkpoints for the build-vs-answer figures")
    args = parser.parse_args(argv)

    specs = held_out_specs(args.specs, seed=args.seed)

    def answers_of(reasoner: CompactReasoner) -> list[list[tuple]]:
        return valid_answers(reasoner, specs, args.samples, args.seed)

    reasoner = CompactReasoner.from_pretrained(args.checkpoint or default_checkpoint(), answer_from_build=False)
    shipped = answers_of(reasoner)  # sampled once: both figure groups below read the same answers
    compared = {}
    for folder in args.compare:
        other = CompactReasoner.from_pretrained(folder, answer_from_build=False)
        compared[folder] = build_vs_answer(other.tokenizer, specs, answers_of(other))
    figures = {
        "checkpoint": str(args.checkpoint or "reasoning/checkpoints/compact"),
        "specs": args.specs,
        "samples_per_spec": args.samples,
        **check_claims(specs, shipped),
        "build_vs_answer": {
            str(args.checkpoint or "shipped"): build_vs_answer(reasoner.tokenizer, specs, shipped),
            **compared,
        },
    }
    print(_results.write(args.name, figures))
    return figures


if __name__ == "__main__":
    main()
