"""How often the reasoning model's own checks are true: ``results/reasoning_self_check.json``.

A trace ends with "check every constraint" (``check mw 312 ok ; tpsa 64 ok ; ...``). This samples held-out
specs, takes each valid answer, and counts the property checks the trace calls ``ok`` that the final
molecule fails under ``spec.check``, per property, plus the answers whose trace calls every check ``ok``
while the spec fails. The specs come from the same held-out scaffold split as ``benchmarks/reasoning.py``
but with their own seed, so the two benchmarks do not share specs.

    OMP_NUM_THREADS=1 python benchmarks/reasoning_self_check.py --specs 60
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import _results  # noqa: E402
from benchmarks.reasoning import held_out_specs  # noqa: E402
from reasoning.backends.compact import CompactReasoner, default_checkpoint  # noqa: E402
from reasoning.decoding import SmilesBounds  # noqa: E402
from reasoning.traces import render_spec  # noqa: E402
from workbench.chem import validate  # noqa: E402

_CLAIM = re.compile(r"(\w+) -?[\d.]+ ok")


def claimed_ok(trace: str) -> tuple[bool, list[str]]:
    """(whether the trace has a check step, the properties its check step calls ok with a value)."""
    if " check " not in trace:
        return False, []
    return True, _CLAIM.findall(trace.split(" check ", 1)[1])


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--specs", type=int, default=60)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--seed", type=int, default=123)
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--name", default="reasoning_self_check")
    args = parser.parse_args(argv)

    reasoner = CompactReasoner.from_pretrained(args.checkpoint or default_checkpoint())
    claims, false_claims = Counter(), Counter()
    answers = with_check = all_ok = all_ok_but_failed = 0
    for _, spec in held_out_specs(args.specs, seed=args.seed):
        samples = reasoner.generate(
            render_spec(spec),
            args.samples,
            seed=args.seed,
            elements=list(spec.elements) if spec.elements is not None else None,
            bounds=SmilesBounds.from_spec(spec),
        )
        for sample in samples:
            report = validate(sample.smiles) if sample.smiles else None
            if report is None or report.molecule is None or not report.ok:
                continue
            answers += 1
            checked = spec.check(report.molecule)
            failed = {str(r.name) for r in checked.failed if r.kind == "property"}
            has_check, props = claimed_ok(sample.trace)
            with_check += has_check
            # the trace vocabulary has no failing verdict, so a check step is an "every check ok" claim
            all_ok += has_check
            all_ok_but_failed += has_check and not checked.ok
            for prop in props:
                claims[prop] += 1
                false_claims[prop] += prop in failed
    figures = {
        "checkpoint": str(args.checkpoint or default_checkpoint()),
        "specs": args.specs,
        "samples_per_spec": args.samples,
        "valid_answers": answers,
        "answers_with_check_step": with_check,
        "all_ok_claims": all_ok,
        "all_ok_claims_false": all_ok_but_failed,
        "all_ok_claims_false_fraction": round(all_ok_but_failed / all_ok, 4) if all_ok else None,
        "property_ok_claims": dict(sorted(claims.items())),
        "property_ok_claims_false_fraction": {
            k: round(false_claims[k] / n, 4) for k, n in sorted(claims.items()) if n >= 5
        },
    }
    print(_results.write(args.name, figures))
    return figures


if __name__ == "__main__":
    main()
