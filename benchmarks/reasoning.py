"""Benchmark of the reasoning engine: validity, spec satisfaction, novelty and speed on held-out specs.

Specs: ``--held-out`` specs derived (as for training) from molecules of the MOSES test-scaffolds split,
whose scaffolds never occur in MOSES train, plus the 30 hand-written specs in ``benchmarks/specs/``.
For every spec the compact model samples 8 answers with constrained decoding and 8 with plain
decoding. Side by side:

- chance: 8 random training molecules per spec;
- retrieval: exact search of the training corpus for molecules meeting the spec (novelty 0 by
  construction, so its *novel* satisfaction is 0); reported with how often the corpus holds < 8 matches.

- the model before stage (c) (``--before-stage-c FOLDER``) and the model trained without traces
  (``--without-traces FOLDER``, ``make train-reasoning-notrace``), sampled on the same specs and seeds;
- the product path, ``Proposer.propose(spec, n=8)`` with its repair budget (``--proposer-specs`` specs,
  ``--proposer-rounds`` rounds of ``--proposer-samples`` candidates), reported separately from the raw
  8-sample figures because it samples more candidates per spec.

A spec counts as satisfied best-of-8 when at least one of 8 proposals is valid, meets every constraint
and is not in the training corpus. FCD is measured against ChEMBL drugs on the unique valid answers.
Writes ``benchmarks/results/reasoning.json``.

    python benchmarks/reasoning.py --held-out 200 --before-stage-c build/reasoning/align
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import torch
import yaml
from rdkit import Chem, DataStructs
from rdkit.Chem import rdFingerprintGenerator

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import _results  # noqa: E402
from reasoning.backends.compact import CompactReasoner, default_checkpoint  # noqa: E402
from reasoning.decoding import SmilesBounds  # noqa: E402
from reasoning.proposer import Proposer  # noqa: E402
from reasoning.traces import derive_spec, read_traces, render_spec  # noqa: E402
from workbench.chem import DesignSpec, Molecule, validate  # noqa: E402
from workbench.data import load_corpus  # noqa: E402

SPECS_DIR = Path(__file__).resolve().parent / "specs"


def held_out_specs(n: int, seed: int) -> list[tuple[str, DesignSpec]]:
    """Specs derived from held-out MOSES test-scaffold molecules (one per molecule)."""
    rng = random.Random(seed)
    out = []
    for smi in load_corpus("moses-test-scaffolds", limit=4 * n, seed=seed):
        if len(out) >= n:
            break
        mol = Molecule(smi)
        if not mol.graph.GetRingInfo().NumRings():
            continue
        out.append((f"held-out:{smi}", derive_spec(mol, rng)))
    return out


def handwritten_specs() -> list[tuple[str, DesignSpec]]:
    out = []
    for path in sorted(SPECS_DIR.glob("*.yaml")):
        for i, data in enumerate(yaml.safe_load(path.read_text())):
            out.append((f"{path.stem}:{i}", DesignSpec.from_dict(data)))
    return out


def _judge(spec: DesignSpec, smiles: str) -> tuple[str | None, bool, dict[str, bool]]:
    """(canonical SMILES or None, valid, per-constraint pass map) for one answer."""
    report = validate(smiles) if smiles else None
    if report is None or report.molecule is None or not report.ok:
        return None, False, {}
    mol = report.molecule
    checked = spec.check(mol)
    return mol.smiles, True, {f"{r.kind}:{r.name}": r.passed for r in checked.results}


def _int_div(smiles: list[str], max_pairs: int = 20000, seed: int = 0) -> float | None:
    if len(smiles) < 2:
        return None
    gen = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=2048)
    fps = [gen.GetFingerprint(Chem.MolFromSmiles(s)) for s in smiles]
    rng = random.Random(seed)
    sims = []
    for _ in range(min(max_pairs, len(fps) * (len(fps) - 1) // 2)):
        i, j = rng.sample(range(len(fps)), 2)
        sims.append(DataStructs.TanimotoSimilarity(fps[i], fps[j]))
    return float(1 - np.mean(sims))


class TrainingCorpus:
    """The molecules the model was trained on, with fast per-spec exact search."""

    def __init__(self, smiles: list[str]):
        self.molecules = [Molecule(s) for s in smiles]
        self.smiles = [m.smiles for m in self.molecules]
        self.index = set(self.smiles)
        self._props: dict[str, np.ndarray] = {}
        self._patterns: dict[str, np.ndarray] = {}

    def _prop(self, name: str) -> np.ndarray:
        if name not in self._props:
            self._props[name] = np.array([float(m.prop(name)) for m in self.molecules])
        return self._props[name]

    def _match(self, key: str, query: Chem.Mol) -> np.ndarray:
        if key not in self._patterns:
            self._patterns[key] = np.array([m.graph.HasSubstructMatch(query) for m in self.molecules])
        return self._patterns[key]

    def matches(self, spec: DesignSpec) -> np.ndarray:
        ok = np.ones(len(self.molecules), dtype=bool)
        for name, (lo, hi) in spec.properties.items():
            values = self._prop(name)
            ok &= (values >= lo) & (values <= hi)
        for pattern in spec.require:
            ok &= self._match("s:" + pattern, Chem.MolFromSmarts(pattern))
        for pattern in spec.forbid:
            ok &= ~self._match("s:" + pattern, Chem.MolFromSmarts(pattern))
        if spec.scaffold:
            query = Chem.MolFromSmiles(spec.scaffold) or Chem.MolFromSmarts(spec.scaffold)
            ok &= self._match("scaffold:" + spec.scaffold, query)
        if spec.elements is not None:
            allowed = set(spec.elements) | {"H"}
            key = "elements:" + ",".join(sorted(allowed))
            if key not in self._patterns:
                self._patterns[key] = np.array(
                    [all(a.GetSymbol() in allowed for a in m.graph.GetAtoms()) for m in self.molecules]
                )
            ok &= self._patterns[key]
        return ok


def sample_specs(
    reasoner: CompactReasoner,
    specs: list[tuple[str, DesignSpec]],
    corpus: TrainingCorpus,
    args: argparse.Namespace,
    plain: bool,
    k: int = 8,
) -> dict:
    """k constrained samples per spec (and k plain ones on a subset when ``plain``): per-spec rows,
    per-constraint pass lists, the valid answers, validity counts and generation seconds."""
    rng = random.Random(args.seed)
    per_spec: list[dict] = []
    per_constraint: dict[str, list[bool]] = defaultdict(list)
    generated_valid: list[str] = []
    counts = {"constrained": [0, 0], "unconstrained": [0, 0]}  # [valid, total]
    gen_seconds = 0.0
    bench_start = time.time()
    # at most --specs-per-batch specs per batch, in batches of equal size (no small last batch that would
    # leave the workers stepping a few rows)
    n_batches = max(1, math.ceil(len(specs) / max(1, args.specs_per_batch)))
    chunk = max(1, math.ceil(len(specs) / n_batches))
    for first in range(0, len(specs), chunk):
        if args.max_minutes and (time.time() - bench_start) / 60 > args.max_minutes:
            print(f"time budget of {args.max_minutes} min reached after {first} of {len(specs)} specs", flush=True)
            break
        group = specs[first : first + chunk]
        prompts = [render_spec(spec) for _, spec in group]
        elements = [list(spec.elements) if spec.elements is not None else None for _, spec in group]
        start = time.time()
        bounds = [SmilesBounds.from_spec(spec) if args.spec_bounds else None for _, spec in group]
        answers = reasoner.generate_many(
            prompts,
            k,
            seed=args.seed + first,
            elements=elements,
            constrained=True,
            bounds=bounds,
            workers=args.workers,
            judge=lambda i, samples, group=group: [_judge(group[i][1], s.smiles) for s in samples],
        )  # each worker validates and checks the answers it wrote
        batches = [samples for samples, _ in answers]
        judged_groups = [judged for _, judged in answers]
        gen_seconds += time.time() - start
        plain_group = [
            i
            for i in range(len(group))
            if plain
            and args.plain_specs != 0
            and (args.plain_specs is None or (first + i) % max(1, len(specs) // args.plain_specs) == 0)
        ]
        if plain_group:
            plain_batches = reasoner.generate_many(
                [prompts[i] for i in plain_group],
                k,
                seed=args.seed + first,
                elements=[elements[i] for i in plain_group],
                constrained=False,
                workers=args.workers,
            )
            for i, samples in zip(plain_group, plain_batches, strict=True):
                counts["unconstrained"][0] += sum(_judge(group[i][1], s.smiles)[1] for s in samples)
                counts["unconstrained"][1] += k
        for (name, spec), samples, judged in zip(group, batches, judged_groups, strict=True):
            counts["constrained"][0] += sum(v for _, v, _ in judged)
            counts["constrained"][1] += k
            satisfied = [v and all(c.values()) for _, v, c in judged]
            novel_satisfied = [s and smi not in corpus.index for (smi, _, _), s in zip(judged, satisfied, strict=True)]
            for _, valid, checks in judged:
                if valid:
                    for key, passed in checks.items():
                        kind, constraint = key.split(":", 1)
                        per_constraint[constraint if kind == "property" else kind].append(passed)
            generated_valid += [smi for smi, v, _ in judged if v]
            chance = [spec.check(s).ok for s in rng.sample(corpus.smiles, k)]
            per_spec.append(
                {
                    "name": name,
                    "spec": render_spec(spec),
                    "at_1": bool(satisfied[0]),
                    "best_of_8": any(satisfied),
                    "novel_best_of_8": any(novel_satisfied),
                    "chance_best_of_8": any(chance),
                    "corpus_matches": int(corpus.matches(spec).sum()),
                    "answers": [s.smiles for s in samples],
                    "first_trace": samples[0].trace,
                }
            )
        if args.verbose:
            print(
                f"[{len(per_spec)}/{len(specs)}] "
                f"novel best-of-8 {np.mean([p['novel_best_of_8'] for p in per_spec]):.2f} "
                f"chance {np.mean([p['chance_best_of_8'] for p in per_spec]):.2f} "
                f"{counts['constrained'][1] / gen_seconds:.2f} proposals/s",
                flush=True,
            )
    return {
        "per_spec": per_spec,
        "per_constraint": per_constraint,
        "valid": generated_valid,
        "counts": counts,
        "seconds": gen_seconds,
    }


def _frac(key: str, rows: list[dict]) -> float | None:
    return round(float(np.mean([r[key] for r in rows])), 4) if rows else None


def summarize(result: dict, corpus: TrainingCorpus) -> dict:
    """The headline figures of one model's samples."""
    per_spec, counts, generated_valid = result["per_spec"], result["counts"], result["valid"]
    held = [p for p in per_spec if p["name"].startswith("held-out")]
    hand = [p for p in per_spec if not p["name"].startswith("held-out")]
    sparse = [p for p in per_spec if p["corpus_matches"] < 8]
    unique = set(generated_valid)
    novel = [s for s in unique if s not in corpus.index]
    constrained, plain = counts["constrained"], counts["unconstrained"]
    return {
        "validity_constrained": round(constrained[0] / constrained[1], 4) if constrained[1] else None,
        "validity_unconstrained": round(plain[0] / plain[1], 4) if plain[1] else None,
        "satisfaction_at_1": _frac("at_1", per_spec),
        "satisfaction_best_of_8": _frac("best_of_8", per_spec),
        "novel_satisfaction_best_of_8": _frac("novel_best_of_8", per_spec),
        "chance_satisfaction_best_of_8": _frac("chance_best_of_8", per_spec),
        "retrieval_satisfaction_best_of_8": round(float(np.mean([p["corpus_matches"] > 0 for p in per_spec])), 4),
        "retrieval_novel_satisfaction_best_of_8": 0.0,
        "retrieval_fewer_than_8_matches": round(len(sparse) / len(per_spec), 4),
        "on_sparse_specs": {
            "specs": len(sparse),
            "model_novel_best_of_8": _frac("novel_best_of_8", sparse),
            "retrieval_best_of_8": round(float(np.mean([p["corpus_matches"] > 0 for p in sparse])), 4)
            if sparse
            else None,
        },
        "held_out": {
            "specs": len(held),
            "satisfaction_at_1": _frac("at_1", held),
            "novel_satisfaction_best_of_8": _frac("novel_best_of_8", held),
            "chance_satisfaction_best_of_8": _frac("chance_best_of_8", held),
        },
        "handwritten": {
            "specs": len(hand),
            "satisfaction_at_1": _frac("at_1", hand),
            "novel_satisfaction_best_of_8": _frac("novel_best_of_8", hand),
            "chance_satisfaction_best_of_8": _frac("chance_best_of_8", hand),
        },
        "per_constraint_pass_rate": {
            key: round(float(np.mean(v)), 4) for key, v in sorted(result["per_constraint"].items()) if len(v) >= 5
        },
        "novelty": round(len(novel) / len(unique), 4) if unique else None,
        "uniqueness": round(len(unique) / len(generated_valid), 4) if generated_valid else None,
        "int_div": _int_div(sorted(unique)),
        "proposals_per_s": round(constrained[1] / result["seconds"], 2) if result["seconds"] else None,
        "samples": {"constrained": constrained[1], "unconstrained": plain[1]},
        "specs": len(per_spec),
    }


def proposer_run(
    reasoner: CompactReasoner, specs: list[tuple[str, DesignSpec]], corpus: TrainingCorpus, args: argparse.Namespace
) -> dict:
    """The product path: ``Proposer.propose(spec, n=8)`` with its repair budget; a spec counts when one of
    the 8 returned proposals is valid, meets every constraint and is not a training molecule."""
    proposer = Proposer(
        reasoner,
        rounds=args.proposer_rounds,
        samples_per_round=args.proposer_samples,
        spec_bounds=args.spec_bounds,
        fill_with_near_misses=True,
    )
    rows, start = [], time.time()
    for i, (name, spec) in enumerate(specs):
        found = proposer.propose(spec, n=8, seed=args.seed + i)
        novel_ok = [p.ok and p.molecule.smiles not in corpus.index for p in found]
        rows.append(
            {
                "name": name,
                "novel_ok": any(novel_ok),
                "ok": any(p.ok for p in found),
                "status": found.status,
                "sampled": found.stats["sampled"],
                "valid": found.stats["valid"],
            }
        )
    seconds = time.time() - start
    sampled = sum(r["sampled"] for r in rows)
    return {
        "specs": len(rows),
        "rounds": args.proposer_rounds,
        "samples_per_round": args.proposer_samples,
        "novel_satisfaction_best_of_8": round(float(np.mean([r["novel_ok"] for r in rows])), 4) if rows else None,
        "satisfaction_best_of_8": round(float(np.mean([r["ok"] for r in rows])), 4) if rows else None,
        "mean_candidates_sampled_per_spec": round(sampled / len(rows), 1) if rows else None,
        "validity": round(sum(r["valid"] for r in rows) / sampled, 4) if sampled else None,
        "status_counts": dict(Counter(r["status"] for r in rows)),
        "seconds_per_spec": round(seconds / len(rows), 2) if rows else None,
        "candidates_per_s": round(sampled / seconds, 2) if seconds else None,
    }


def run(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    reasoner = CompactReasoner.from_pretrained(
        args.checkpoint,
        temperature=args.temperature,
        top_p=args.top_p,
        ground_estimates=args.ground_estimates,
        answer_from_build=args.answer_from_build,
        place_by_spec=args.place_by_spec,
    )
    train_smiles = [r["smiles"] for path in args.traces for r in read_traces(path)]
    corpus = TrainingCorpus(train_smiles)
    specs = handwritten_specs() + held_out_specs(args.held_out, args.seed)
    # Build the structural-alert catalogs here, once: the decoding workers are forked for each batch and
    # would otherwise each rebuild them (~0.8 s) on their first answer, a start-up cost of the benchmark's
    # process layout rather than of proposing (a long-running process builds them once).
    validate("c1ccccc1O")

    main_run = sample_specs(reasoner, specs, corpus, args, plain=True)
    figures = summarize(main_run, corpus)
    figures["specs_planned"] = len(specs)
    figures["samples_per_spec"] = 8
    figures["model"] = {
        "checkpoint": str(Path(args.checkpoint or default_checkpoint())),
        "parameters": reasoner.model.num_parameters(),
        "threads": args.threads,
        "workers": args.workers,
        "temperature": args.temperature,
        "top_p": args.top_p,
        "ground_restate": reasoner.ground_restate,
        "ground_estimates": reasoner.ground_estimates,
        "answer_from_build": reasoner.answer_from_build,
        "place_by_spec": reasoner.place_by_spec,
        "spec_bounds": args.spec_bounds,
        "training_molecules": len(corpus.index),
    }
    not_measured = {}

    unique = sorted(set(main_run["valid"]))
    try:
        from benchmarks.diffusion import FrechetChemNet

        reference = load_corpus("chembl-drugs", limit=args.fcd_reference, seed=11)
        figures["fcd_vs_chembl_drugs"] = round(FrechetChemNet(reference)(unique), 3) if len(unique) > 1 else None
        figures["fcd_note"] = f"{len(unique)} unique valid answers against {len(reference)} ChEMBL drugs"
    except ImportError as exc:  # the fcd wheel is part of the dev extras
        not_measured["fcd_vs_chembl_drugs"] = f"fcd is not installed ({exc})"

    keys = (
        "validity_constrained",
        "satisfaction_at_1",
        "novel_satisfaction_best_of_8",
        "novelty",
        "uniqueness",
        "proposals_per_s",
    )
    comparisons = {  # label: (checkpoint, ground_restate, the make target that builds it)
        "before_stage_c": (args.before_stage_c, True, "train-reasoning-align"),
        "without_traces": (args.without_traces, False, "train-reasoning-notrace"),
    }
    for label, (folder, restate, target) in comparisons.items():
        if not folder:
            not_measured[label] = f"no --{label.replace('_', '-')} checkpoint given"
            continue
        if not (Path(folder) / "config.json").exists():  # the comparison models live in build/, not in the repo
            not_measured[label] = f"{folder} is not built (make {target})"
            print(f"skipping {label}: {not_measured[label]}", flush=True)
            continue
        other = CompactReasoner.from_pretrained(
            folder,
            temperature=args.temperature,
            top_p=args.top_p,
            ground_restate=restate,
            ground_estimates=args.ground_estimates,
            answer_from_build=args.answer_from_build,
            place_by_spec=args.place_by_spec,
        )
        summary = summarize(sample_specs(other, specs, corpus, args, plain=False), corpus)
        figures[label] = {
            "checkpoint": folder,
            **{key: summary[key] for key in keys},
            "held_out": summary["held_out"],
            "handwritten": summary["handwritten"],
            "per_constraint_pass_rate": summary["per_constraint_pass_rate"],
        }

    if args.proposer_specs:
        figures["proposer"] = proposer_run(reasoner, specs[: args.proposer_specs], corpus, args)
    figures["not_measured"] = not_measured
    figures["examples"] = main_run["per_spec"][:5]
    path = _results.write(args.name, figures)
    print(f"wrote {path}")
    return figures


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--held-out", type=int, default=200)
    parser.add_argument("--name", default="reasoning", help="results file name (benchmarks/results/<name>.json)")
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument(
        "--traces",
        nargs="+",
        default=[f"build/reasoning/traces-{shard}.jsonl" for shard in range(4)],
        help="the training traces (novelty and retrieval are against their molecules)",
    )
    parser.add_argument("--temperature", type=float, default=0.9)
    parser.add_argument("--top-p", type=float, default=0.95)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--workers", type=int, default=1, help="processes each batch of specs is decoded in")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--plain-specs", type=int, default=None, help="run plain decoding on ~this many specs")
    parser.add_argument("--max-minutes", type=float, default=None, help="stop sampling after this long")
    parser.add_argument(
        "--specs-per-batch", type=int, default=4, help="at most this many specs sampled together in one batch"
    )
    parser.add_argument("--before-stage-c", default=None, help="checkpoint to compare: the model before GRPO")
    parser.add_argument("--without-traces", default=None, help="checkpoint to compare: SFT on spec -> SMILES only")
    parser.add_argument("--proposer-specs", type=int, default=60, help="specs also run through Proposer.propose")
    parser.add_argument("--proposer-rounds", type=int, default=4)
    parser.add_argument("--proposer-samples", type=int, default=16, help="candidates sampled per repair round")
    parser.add_argument("--fcd-reference", type=int, default=2000, help="ChEMBL drugs used as the FCD reference")
    parser.add_argument(
        "--no-spec-bounds", dest="spec_bounds", action="store_false", help="decode without SmilesBounds"
    )
    parser.add_argument(
        "--ground-estimates",
        action="store_true",
        help="write the trace's running estimates with RDKit instead of sampling them",
    )
    parser.add_argument(
        "--answer-from-build",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="answer with the molecule the trace built, decoding only when it does not fit (the reasoner's default)",
    )
    parser.add_argument(
        "--place-by-spec",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="let RDKit choose where the build's fragments sit to meet the spec (the reasoner's default)",
    )
    parser.add_argument("--verbose", action="store_true")
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    main()
