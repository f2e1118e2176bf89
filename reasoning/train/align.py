"""Stage (b): representation alignment, continued from the stage (a) checkpoint.

Three kinds of examples are mixed with a replay of stage (a) traces so the model keeps its skill:

- randomized SMILES: the spec's scaffold is written as a random (non-canonical) SMILES of the same
  scaffold, so equivalent notations lead to the same design;
- scaffold <-> molecule: a spec holding only the scaffold, answered with the molecule built on it;
- SMILES <-> property statements: ``<smiles> X </smiles>`` followed by ``check mw 312 ; clogp 2.1 ...``,
  the measured RDKit properties of X (same format as the trace's check step).

Training reuses :func:`reasoning.train.sft.train_sft` with ``init_from`` set to the stage (a) checkpoint.

    python -m reasoning.train.align --traces build/reasoning/traces-0.jsonl --init reasoning/checkpoints/compact \\
        --out build/reasoning/align --state build/reasoning/align-state --max-minutes 30

>>> records = alignment_records([{"smiles": "CC(=O)NC1=CC=C(O)C=C1", "spec": {}, "prompt": "<spec></spec>",
...                               "trace": "<think> restate none ; check none </think>"}], seed=0)
>>> sorted({r["kind"] for r in records})
['properties', 'randomized_scaffold', 'replay', 'scaffold_to_molecule']
"""

from __future__ import annotations

import argparse
import random
from collections.abc import Iterable
from pathlib import Path

from rdkit import Chem

from reasoning.traces import format_value, kekule_smiles, murcko_atoms, render_spec, submolecule
from reasoning.train.sft import SFTConfig, train_sft
from workbench.chem import DesignSpec
from workbench.chem.properties import compute as compute_property

__all__ = ["alignment_records", "property_statement", "main"]

_STATED_PROPERTIES = ("mw", "clogp", "tpsa", "hbd", "hba", "rotb", "rings", "aromatic_rings", "heavy_atoms", "qed")


def property_statement(mol: Chem.Mol, names: Iterable[str] = _STATED_PROPERTIES) -> str:
    """The measured properties of a molecule, as the trace's check step writes them."""
    return "check " + " ; ".join(f"{n} {format_value(n, compute_property(n, mol))}" for n in names) + " </think>"


def _random_smiles(mol: Chem.Mol, rng: random.Random) -> str:
    copy = Chem.Mol(mol)
    Chem.Kekulize(copy, clearAromaticFlags=True)
    order = list(range(copy.GetNumAtoms()))
    rng.shuffle(order)
    return Chem.MolToSmiles(Chem.RenumberAtoms(copy, order), canonical=False, kekuleSmiles=True)


def alignment_records(traces: list[dict], seed: int = 0) -> list[dict]:
    """Stage (b) examples (each a ``prompt``/``completion`` pair with its ``kind``) from stage (a) traces."""
    rng = random.Random(seed)
    out: list[dict] = []
    for record in traces:
        mol = Chem.MolFromSmiles(record["smiles"])
        if mol is None:
            continue
        answer = f"<smiles> {record['smiles']} </smiles>"
        out.append({"kind": "replay", "prompt": record["prompt"], "completion": f"{record['trace']} {answer}"})
        out.append(
            {
                "kind": "properties",
                "prompt": f"<smiles> {record['smiles']} </smiles>",
                "completion": property_statement(mol),
            }
        )
        atoms = murcko_atoms(mol)
        core = submolecule(mol, atoms) if atoms else None
        if core is None:
            continue
        scaffold = Chem.MolToSmiles(core)
        spec = DesignSpec(scaffold=scaffold)
        if spec.check(record["smiles"]).ok:  # cutting side chains can change a ring's bond pattern
            out.append(
                {
                    "kind": "scaffold_to_molecule",
                    "prompt": render_spec(spec),
                    "completion": f"<think> restate scaffold {scaffold} ; scaffold {kekule_smiles(core)} </think> "
                    f"{answer}",
                }
            )
        randomized = _random_smiles(core, rng)
        if Chem.MolFromSmiles(randomized) is not None:
            spec = DesignSpec(scaffold=randomized)
            if spec.check(record["smiles"]).ok:
                out.append(
                    {
                        "kind": "randomized_scaffold",
                        "prompt": render_spec(spec),
                        "completion": f"<think> restate scaffold {randomized} ; scaffold {kekule_smiles(core)} "
                        f"</think> {answer}",
                    }
                )
    rng.shuffle(out)
    return out


def main(argv: list[str] | None = None) -> dict:
    """Command line: build the alignment mix from trace files and train from the stage (a) checkpoint."""
    import json

    from reasoning.traces import read_traces

    parser = argparse.ArgumentParser(description="Stage (b): representation alignment (resumable).")
    parser.add_argument("--traces", nargs="+", required=True)
    parser.add_argument("--init", required=True, help="stage (a) checkpoint folder")
    parser.add_argument("--out", required=True)
    parser.add_argument("--state", required=True)
    parser.add_argument("--limit", type=int, default=5000, help="trace records to derive examples from")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--max-steps", type=int, default=1000)
    parser.add_argument("--max-minutes", type=float, default=30.0)
    parser.add_argument("--stop-after", type=int, default=0, help="stop at this step, schedule unchanged (0: none)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    traces = [r for path in args.traces for r in read_traces(path)][: args.limit]
    mix_path = Path(args.state) / "align.jsonl"
    mix_path.parent.mkdir(parents=True, exist_ok=True)
    with open(mix_path, "w") as fh:
        for rec in alignment_records(traces, seed=args.seed):
            fh.write(json.dumps(rec) + "\n")
    cfg = SFTConfig(
        traces=[str(mix_path)],
        out=args.out,
        state=args.state,
        init_from=args.init,
        batch_size=args.batch_size,
        lr=args.lr,
        warmup_steps=20,
        max_steps=args.max_steps,
        max_minutes=args.max_minutes,
        stop_after=args.stop_after,
        seed=args.seed,
    )
    return train_sft(cfg)


if __name__ == "__main__":
    main()
