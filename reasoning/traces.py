"""Teacher traces from real molecules: a spec each molecule satisfies and a reasoning trace that builds it.

Everything in a trace is an RDKit fact about the molecule it was derived from:

1. the constraints are restated,
2. the Murcko scaffold (ring systems and linkers) is chosen,
3. the acyclic side chains are added one at a time, each followed by the measured properties of the
   partial molecule built so far (side chains not yet added are replaced by hydrogen),
4. every constraint of the spec is checked on the final molecule,
5. the final SMILES is given (Kekulé form: the model writes no lowercase aromatic atoms, so every
   aromatic ring it writes is closed and kekulizable by construction).

>>> example = trace_for_molecule("CC(=O)Nc1ccc(O)cc1", seed=0)
>>> example.spec.check(example.smiles).ok
True
>>> example.smiles
'CC(=O)NC1=CC=C(O)C=C1'
"""

from __future__ import annotations

import itertools
import json
import math
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from rdkit import Chem

from workbench.chem import DesignSpec, Molecule
from workbench.chem.properties import compute as compute_property
from workbench.errors import InvalidMoleculeError

__all__ = [
    "FUNCTIONAL_GROUPS",
    "SPEC_PROPERTY_CHOICES",
    "Step",
    "TeacherTrace",
    "kekule_smiles",
    "murcko_atoms",
    "submolecule",
    "derive_spec",
    "build_steps",
    "render_spec",
    "parse_spec",
    "render_feedback",
    "render_trace",
    "restate_prefix",
    "trace_for_molecule",
    "iter_traces",
    "write_traces",
    "read_traces",
    "format_value",
]

# (SMARTS, short name): substructures used as `require` (when present) and `forbid` (when absent).
FUNCTIONAL_GROUPS: tuple[tuple[str, str], ...] = (
    ("C(=O)N", "amide"),
    ("c1ccccc1", "benzene"),
    ("C(=O)[OX2H1]", "carboxylic acid"),
    ("C(=O)O[#6]", "ester"),
    ("S(=O)(=O)N", "sulfonamide"),
    ("S(=O)(=O)", "sulfonyl"),
    ("[F,Cl,Br,I]", "halogen"),
    ("F", "fluorine"),
    ("Cl", "chlorine"),
    ("Br", "bromine"),
    ("[N+](=O)[O-]", "nitro"),
    ("[OX2H]", "hydroxyl"),
    ("[NX3;H2]", "primary amine"),
    ("[#6][OX2][#6]", "ether"),
    ("[#6]C(=O)[#6]", "ketone"),
    ("C#N", "nitrile"),
    ("NC(=O)N", "urea"),
    ("OC(=O)N", "carbamate"),
    ("c1ccncc1", "pyridine"),
    ("c1ccsc1", "thiophene"),
    ("c1ccoc1", "furan"),
    ("[nH]", "aromatic NH"),
    ("n", "aromatic nitrogen"),
    ("C1CCNCC1", "piperidine"),
    ("N1CCNCC1", "piperazine"),
    ("C1COCCN1", "morpholine"),
    ("C(F)(F)F", "trifluoromethyl"),
    ("[SX2]", "thioether or thiol"),
    ("[CX3]=[CX3]", "alkene"),
)

# the properties a derived spec draws from, with the weight each gets when sampling a subset
SPEC_PROPERTY_CHOICES: dict[str, float] = {
    "mw": 3.0,
    "clogp": 3.0,
    "tpsa": 2.0,
    "hbd": 1.5,
    "hba": 1.5,
    "rotb": 1.0,
    "rings": 1.0,
    "aromatic_rings": 1.0,
    "heavy_atoms": 1.0,
    "qed": 1.5,
    "sa": 1.0,
    "fsp3": 0.5,
    "charge": 0.5,
}

# properties reported after every build step (the cheap, nearly additive ones), in this order
_RUNNING_PROPERTIES = ("mw", "clogp", "tpsa", "hbd", "hba", "rotb", "heavy_atoms")
_DECIMALS = {"mw": 0, "exact_mass": 0, "clogp": 1, "mr": 0, "tpsa": 0, "qed": 2, "sa": 1, "fsp3": 2}


def format_value(name: str, value: float | int) -> str:
    """How a property value is written in traces: rounded to the precision that property is judged at."""
    decimals = _DECIMALS.get(name)
    if decimals is None:
        return str(int(value))
    text = f"{float(value):.{decimals}f}"
    return "0" if text in ("-0", "-0.0", "-0.00") else text


# ---------------------------------------------------------------------------------------------- chemistry
def kekule_smiles(mol: Chem.Mol) -> str:
    """Canonical non-isomeric SMILES in Kekulé form (no lowercase aromatic atoms)."""
    copy = Chem.Mol(mol)
    Chem.Kekulize(copy, clearAromaticFlags=True)
    return Chem.MolToSmiles(copy, isomericSmiles=False, kekuleSmiles=True, canonical=True)


def murcko_atoms(mol: Chem.Mol) -> set[int]:
    """Atoms of the Murcko framework: ring atoms plus the linkers between rings (side chains pruned)."""
    keep = set(range(mol.GetNumAtoms()))
    ring_atoms = {a.GetIdx() for a in mol.GetAtoms() if a.IsInRing()}
    changed = True
    while changed:
        changed = False
        for idx in list(keep):
            if idx in ring_atoms:
                continue
            degree = sum(1 for n in mol.GetAtomWithIdx(idx).GetNeighbors() if n.GetIdx() in keep)
            if degree <= 1:
                keep.discard(idx)
                changed = True
    return keep if ring_atoms else set()


def submolecule(mol: Chem.Mol, keep: Iterable[int]) -> Chem.Mol | None:
    """The molecule induced by ``keep``; every cut bond is replaced by hydrogen. None if it does not sanitize."""
    keep = set(keep)
    rw = Chem.RWMol(mol)
    Chem.Kekulize(rw, clearAromaticFlags=False)
    for idx in keep:
        inner = rw.GetAtomWithIdx(idx)
        if not (inner.GetIsAromatic() or inner.GetNoImplicit() or inner.GetFormalCharge()):
            continue
        for bond in inner.GetBonds():
            if bond.GetOtherAtomIdx(idx) not in keep:
                inner.SetNumExplicitHs(inner.GetNumExplicitHs() + int(bond.GetBondTypeAsDouble()))
    for idx in sorted(set(range(mol.GetNumAtoms())) - keep, reverse=True):
        rw.RemoveAtom(idx)
    out = rw.GetMol()
    try:
        Chem.SanitizeMol(out)
    except Exception:
        return None
    return out


def _side_chains(mol: Chem.Mol, scaffold: set[int]) -> list[tuple[int, list[int]]]:
    """Connected components outside the scaffold, each with the scaffold atom it hangs from."""
    seen: set[int] = set()
    chains = []
    for start in range(mol.GetNumAtoms()):
        if start in scaffold or start in seen:
            continue
        component, stack, anchor = [], [start], -1
        seen.add(start)
        while stack:
            idx = stack.pop()
            component.append(idx)
            for nbr in mol.GetAtomWithIdx(idx).GetNeighbors():
                j = nbr.GetIdx()
                if j in scaffold:
                    anchor = j
                elif j not in seen:
                    seen.add(j)
                    stack.append(j)
        chains.append((anchor, sorted(component)))
    return chains


def _fragment_smiles(mol: Chem.Mol, anchor: int, atoms: list[int]) -> str:
    """A side chain as SMILES with ``*`` at the attachment point (Kekulé, canonical)."""
    rw = Chem.RWMol(Chem.Mol(mol))
    Chem.Kekulize(rw, clearAromaticFlags=True)
    keep = set(atoms) | {anchor}
    star = rw.GetAtomWithIdx(anchor)
    star.SetAtomicNum(0)
    star.SetFormalCharge(0)
    star.SetNoImplicit(True)
    star.SetNumExplicitHs(0)
    star.SetIsAromatic(False)
    for idx in sorted(set(range(mol.GetNumAtoms())) - keep, reverse=True):
        rw.RemoveAtom(idx)
    frag = rw.GetMol()
    frag.UpdatePropertyCache(strict=False)
    return Chem.MolToSmiles(frag, isomericSmiles=False, kekuleSmiles=True)


# ---------------------------------------------------------------------------------------------- traces
@dataclass(frozen=True)
class Step:
    """One build step: what was added (scaffold or ``*``-fragment SMILES) and the partial molecule's facts."""

    kind: str  # "scaffold" | "add" | "start"
    fragment: str
    partial_smiles: str
    estimates: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class TeacherTrace:
    """A molecule, a spec it satisfies, and the reasoning trace that builds it."""

    smiles: str  # final answer, Kekulé form
    spec: DesignSpec
    steps: tuple[Step, ...]
    checks: tuple[tuple[str, str, bool], ...]  # (constraint kind, name, passed)
    measured: dict[str, str] = field(default_factory=dict)
    feedback: str = ""
    source: str = ""

    def prompt(self) -> str:
        """The model's input: the spec (plus failure feedback from an earlier attempt, when present)."""
        text = render_spec(self.spec)
        return f"{text} {self.feedback}" if self.feedback else text

    def trace(self) -> str:
        """The reasoning the model learns to write before the answer."""
        return render_trace(self)

    def to_record(self) -> dict:
        return {
            "smiles": self.smiles,
            "spec": self.spec.to_dict(),
            "prompt": self.prompt(),
            "trace": self.trace(),
            "source": self.source,
        }


def _sample_range(name: str, value: float, rng: random.Random) -> tuple[float, float]:
    def widen(step: float, width: float, lo_min: float | None = 0.0, hi_max: float | None = None):
        below = width * rng.uniform(0.1, 0.9)
        lo = math.floor((value - below) / step) * step
        hi = math.ceil((value + width - below) / step) * step
        if lo_min is not None:
            lo = max(lo, lo_min)
        if hi_max is not None:
            hi = min(hi, hi_max)
        return round(lo, 4), round(hi, 4)

    if name == "mw":
        return widen(10, rng.choice([40, 60, 80, 100, 150]))
    if name == "clogp":
        return widen(0.5, rng.choice([1.0, 1.5, 2.0, 3.0]), lo_min=None)
    if name == "tpsa":
        return widen(5, rng.choice([20, 30, 40, 60]))
    if name == "qed":
        return widen(0.05, rng.choice([0.2, 0.3, 0.4]), hi_max=1.0)
    if name == "sa":
        return widen(0.5, rng.choice([1.0, 1.5, 2.0]), lo_min=1.0, hi_max=10.0)
    if name == "fsp3":
        return widen(0.05, rng.choice([0.2, 0.3, 0.4]), hi_max=1.0)
    if name == "charge":
        return (value, value)
    slack = 4 if name == "heavy_atoms" else 1 if name in ("rings", "aromatic_rings") else 2
    lo = max(0, int(value) - rng.randint(0, slack))
    hi = int(value) + rng.randint(0, slack)
    return (lo, hi)


def derive_spec(mol: Molecule, rng: random.Random) -> DesignSpec:
    """A spec ``mol`` satisfies: real property values widened into ranges, present groups required,
    absent groups forbidden, sometimes its scaffold and its element set."""
    names = list(SPEC_PROPERTY_CHOICES)
    weights = [SPEC_PROPERTY_CHOICES[n] for n in names]
    k = rng.choice([1, 2, 2, 3, 3, 4, 5])
    chosen: list[str] = []
    while len(chosen) < k:
        pick = rng.choices(names, weights)[0]
        if pick not in chosen:
            chosen.append(pick)
    chosen.sort(key=names.index)
    properties = {n: list(_sample_range(n, float(mol.prop(n)), rng)) for n in chosen}
    graph = mol.graph
    present = [s for s, _ in FUNCTIONAL_GROUPS if graph.HasSubstructMatch(_query(s))]
    absent = [s for s, _ in FUNCTIONAL_GROUPS if s not in present]
    require = rng.sample(present, min(len(present), rng.choice([0, 0, 1, 1, 2])))
    forbid = rng.sample(absent, min(len(absent), rng.choice([0, 1, 1, 2])))
    scaffold = None
    if rng.random() < 0.3:
        atoms = murcko_atoms(graph)
        core = submolecule(graph, atoms) if atoms else None
        if core is not None:
            scaffold = Chem.MolToSmiles(core, isomericSmiles=False)
    elements = None
    if rng.random() < 0.25:
        present_elements = {a.GetSymbol() for a in graph.GetAtoms()}
        extra = [e for e in ("N", "O", "S", "F", "Cl", "Br") if e not in present_elements and rng.random() < 0.3]
        order = ["C", "N", "O", "S", "P", "F", "Cl", "Br", "I", "B", "Si", "Se"]
        elements = sorted(present_elements | set(extra), key=lambda e: order.index(e) if e in order else 99)
    spec = DesignSpec(properties=properties, require=require, forbid=forbid, scaffold=scaffold, elements=elements)
    return spec


_QUERIES: dict[str, Chem.Mol] = {}


def _query(smarts: str) -> Chem.Mol:
    q = _QUERIES.get(smarts)
    if q is None:
        q = _QUERIES[smarts] = Chem.MolFromSmarts(smarts)
    return q


def _estimates(partial: Chem.Mol, wanted: Iterable[str]) -> tuple[tuple[str, str], ...]:
    return tuple((n, format_value(n, compute_property(n, partial))) for n in wanted)


def build_steps(mol: Molecule, running: Iterable[str] = ("mw",)) -> tuple[Step, ...] | None:
    """Scaffold first, then each side chain in canonical order, with running property estimates.

    Returns None when the molecule has no ring (no scaffold to start from) or a partial does not sanitize.
    """
    graph = mol.graph
    running = [n for n in _RUNNING_PROPERTIES if n in set(running)] or ["mw"]
    scaffold = murcko_atoms(graph)
    if not scaffold:
        return None
    core = submolecule(graph, scaffold)
    if core is None:
        return None
    steps = [Step("scaffold", kekule_smiles(core), Chem.MolToSmiles(core), _estimates(core, running))]
    ranks = list(Chem.CanonicalRankAtoms(graph))
    chains = sorted(_side_chains(graph, scaffold), key=lambda c: (ranks[c[0]], min(ranks[i] for i in c[1])))
    keep = set(scaffold)
    for anchor, atoms in chains:
        keep |= set(atoms)
        partial = submolecule(graph, keep)
        if partial is None:
            return None
        fragment = _fragment_smiles(graph, anchor, atoms)
        steps.append(Step("add", fragment, Chem.MolToSmiles(partial), _estimates(partial, running)))
    return tuple(steps)


def _spec_items(spec: DesignSpec) -> list[str]:
    items = [f"{n} {lo:g} to {hi:g}" for n, (lo, hi) in spec.properties.items()]
    items += [f"require {p}" for p in spec.require]
    items += [f"forbid {p}" for p in spec.forbid]
    if spec.scaffold:
        items.append(f"scaffold {spec.scaffold}")
    if spec.elements is not None:
        items.append("elements " + " ".join(spec.elements))
    return items


def render_spec(spec: DesignSpec) -> str:
    """The spec as the model reads it: ``<spec> mw 250 to 400 ; require C(=O)N ; ... </spec>``."""
    items = _spec_items(spec)
    return "<spec> " + " ; ".join(items) + (" </spec>" if items else "</spec>")


def parse_spec(text: str) -> DesignSpec:
    """The inverse of :func:`render_spec`: a ``<spec> ... </spec>`` block back to a :class:`DesignSpec`.

    Anything after ``</spec>`` (a ``<retry>`` block, say) is ignored. An item that is not a property range,
    ``require``/``forbid``/``scaffold`` pattern or ``elements`` list raises :class:`~workbench.errors.SpecError`
    naming it.

    >>> spec = parse_spec("<spec> mw 250 to 350 ; require C(=O)N ; elements C N O </spec>")
    >>> spec.properties["mw"], spec.require, spec.elements
    ((250.0, 350.0), ('C(=O)N',), ('C', 'N', 'O'))
    >>> render_spec(parse_spec(render_spec(spec))) == render_spec(spec)
    True
    """
    from workbench.errors import SpecError

    if "<spec>" not in text or "</spec>" not in text:
        raise SpecError("spec text", "expected a '<spec> ... </spec>' block, e.g. '<spec> mw 250 to 350 </spec>'")
    body = text.split("<spec>", 1)[1].split("</spec>", 1)[0].strip()
    data: dict = {"properties": {}, "require": [], "forbid": []}
    for item in (part.strip() for part in body.split(" ; ")):
        if not item or item == "none":
            continue
        words = item.split()
        if words[0] in ("require", "forbid") and len(words) == 2:
            data[words[0]].append(words[1])
        elif words[0] == "scaffold" and len(words) == 2:
            data["scaffold"] = words[1]
        elif words[0] == "elements" and len(words) > 1:
            data["elements"] = words[1:]
        elif len(words) == 4 and words[2] == "to":
            try:
                data["properties"][words[0]] = [float(words[1]), float(words[3])]
            except ValueError:
                raise SpecError(f"spec item {item!r}", "expected '<property> <min> to <max>'") from None
        else:
            raise SpecError(
                f"spec item {item!r}",
                "expected '<property> <min> to <max>', 'require <SMARTS>', 'forbid <SMARTS>', "
                "'scaffold <SMILES>' or 'elements <symbols>'",
            )
    return DesignSpec.from_dict(data)


def render_feedback(failed: Iterable[tuple[str, str, object]]) -> str:
    """Why an earlier attempt failed, as the model reads it: ``<retry> mw 512 ; forbid Cl </retry>``.

    ``failed`` holds (kind, name, measured) triples, e.g. from the failed results of a SpecReport.
    """
    parts = []
    for kind, name, measured in failed:
        if kind == "property":
            parts.append(f"{name} {format_value(name, measured)}")
        elif kind in ("require", "forbid"):
            parts.append(f"{kind} {name}")
        elif kind in ("scaffold", "elements", "valid", "unique"):
            parts.append(kind)
    if not parts:
        return ""
    return "<retry> " + " ; ".join(parts) + " </retry>"


def restate_prefix(prompt: str) -> str:
    """The trace's first step for a rendered prompt: ``<think> restate`` and the prompt's constraints.

    It is what :func:`render_trace` writes for the same spec, so a decoder can feed it to the model
    instead of sampling it. A prompt without a ``<spec>`` block gives an empty prefix.

    >>> restate_prefix("<spec> mw 250 to 350 ; require C(=O)N </spec> <retry> mw 512 </retry>")
    '<think> restate mw 250 to 350 ; require C(=O)N'
    >>> restate_prefix("<spec></spec>")
    '<think> restate none'
    """
    if "<spec>" not in prompt or "</spec>" not in prompt:
        return ""
    items = prompt.split("<spec>", 1)[1].split("</spec>", 1)[0].strip()
    return f"<think> restate {items or 'none'}"


def render_trace(trace: TeacherTrace) -> str:
    """The reasoning text: restate, scaffold, add steps with estimates, checks (the answer follows)."""
    spec = trace.spec
    out = ["<think> restate", " ; ".join(_spec_items(spec)) or "none"]
    for step in trace.steps:
        head = "scaffold" if step.kind == "scaffold" else "add"
        out.append(f"; {head} {step.fragment} gives " + " ".join(f"{n} {v}" for n, v in step.estimates))
    out.append("; check")
    checks = []
    for kind, name, passed in trace.checks:
        verdict = "ok" if passed else "no"
        if kind == "property":
            checks.append(f"{name} {trace.measured[name]} {verdict}")
        else:
            checks.append(f"{kind} {verdict}" if kind in ("scaffold", "elements") else f"{kind} {name} {verdict}")
    out.append(" ; ".join(checks) or "none")
    out.append("</think>")
    return " ".join(out)


def trace_for_molecule(
    smiles: str, seed: int = 0, spec: DesignSpec | None = None, source: str = "", feedback: str = ""
) -> TeacherTrace:
    """Derive (or take) a spec the molecule satisfies and the trace that builds it.

    Raises InvalidMoleculeError for unparseable input and ValueError when no trace can be built
    (acyclic molecule, or the molecule does not satisfy the given spec).
    """
    rng = random.Random(f"{seed}:{smiles}")
    mol = Molecule(smiles)
    if spec is None:
        spec = derive_spec(mol, rng)
    report = spec.check(mol)
    if not report.ok:
        raise ValueError(f"{smiles} does not satisfy the spec: {[str(r) for r in report.failed]}")
    running = ["mw", *[n for n in spec.properties if n in _RUNNING_PROPERTIES]]
    steps = build_steps(mol, running[:3])
    if steps is None:
        raise ValueError(f"{smiles}: no scaffold-based build path (acyclic or unsanitizable partials)")
    measured = {n: format_value(n, mol.prop(n)) for n in spec.properties}
    checks = tuple((r.kind, str(r.name), r.passed) for r in report.results)
    return TeacherTrace(kekule_smiles(mol.graph), spec, steps, checks, measured, feedback, source)


def _usable(smiles: str, max_heavy_atoms: int = 45) -> Molecule | None:
    """A neutral, single-fragment, organic-subset molecule with a ring, or None."""
    try:
        mol = Molecule(smiles)
    except InvalidMoleculeError:
        return None
    graph = mol.graph
    if len(Chem.GetMolFrags(graph)) > 1:
        frags = Chem.GetMolFrags(graph, asMols=True)
        graph = max(frags, key=lambda m: m.GetNumHeavyAtoms())
        mol = Molecule(graph)
        graph = mol.graph
    if graph.GetNumHeavyAtoms() > max_heavy_atoms or not graph.GetRingInfo().NumRings():
        return None
    allowed = {"C", "N", "O", "S", "P", "F", "Cl", "Br", "I", "B"}
    for atom in graph.GetAtoms():
        if atom.GetSymbol() not in allowed or atom.GetFormalCharge() or atom.GetIsotope():
            return None
    return mol


def iter_traces(smiles: Iterable[str], seed: int = 0, source: str = "", feedback_rate: float = 0.15) -> Iterator[dict]:
    """Teacher-trace records (JSON-ready dicts) for a stream of SMILES; unusable molecules are skipped.

    With probability ``feedback_rate`` a record's prompt carries ``<retry>`` feedback: the constraints a
    different (earlier) molecule of the stream failed on this spec, as the repair loop will present them.
    """
    rng = random.Random(seed)
    previous: Molecule | None = None
    for i, smi in enumerate(smiles):
        mol = _usable(smi)
        if mol is None:
            continue
        try:
            example = trace_for_molecule(mol.smiles, seed=seed * 1_000_003 + i, source=source)
        except ValueError:
            continue
        if previous is not None and rng.random() < feedback_rate:
            failed = previous.smiles and example.spec.check(previous).failed
            feedback = render_feedback((r.kind, str(r.name), r.measured) for r in failed or [])
            if feedback:
                example = TeacherTrace(
                    example.smiles,
                    example.spec,
                    example.steps,
                    example.checks,
                    example.measured,
                    feedback,
                    source,
                )
        previous = mol
        yield example.to_record()


def write_traces(path: str | Path, records: Iterable[dict]) -> int:
    """Write records as JSON lines; returns how many were written."""
    n = 0
    with open(path, "w") as fh:
        for record in records:
            fh.write(json.dumps(record) + "\n")
            n += 1
    return n


def read_traces(path: str | Path) -> list[dict]:
    """Read JSON-lines trace records."""
    with open(path) as fh:
        return [json.loads(line) for line in fh if line.strip()]


def main(argv: list[str] | None = None) -> None:
    """``python -m reasoning.traces --out traces.jsonl --moses 30000 --drugs``: build the SFT corpus."""
    import argparse
    import time

    from workbench.data import load_corpus

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--out", required=True)
    parser.add_argument("--moses", type=int, default=30000, help="MOSES train molecules to sample")
    parser.add_argument("--drugs", action="store_true", help="also use the ChEMBL drug sample")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=None, help="stop after this many traces")
    args = parser.parse_args(argv)
    start = time.time()
    corpus = [("moses-train", s) for s in load_corpus("moses-train", limit=args.moses, seed=args.seed)]
    if args.drugs:
        corpus += [("chembl-drugs", s) for s in load_corpus("chembl-drugs")]
    random.Random(args.seed).shuffle(corpus)

    def records() -> Iterator[dict]:
        for j, (source, smi) in enumerate(corpus):
            yield from iter_traces([smi], seed=args.seed + j, source=source, feedback_rate=0.0)

    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    n = write_traces(args.out, itertools.islice(_with_feedback(records(), args.seed), args.limit))
    print(json.dumps({"traces": n, "molecules": len(corpus), "seconds": round(time.time() - start, 1)}))


def _with_feedback(records: Iterator[dict], seed: int, rate: float = 0.15) -> Iterator[dict]:
    """Add ``<retry>`` feedback to some prompts: what the previous record's molecule failed on this spec."""
    rng = random.Random(seed)
    previous = None
    for rec in records:
        if previous is not None and rng.random() < rate:
            spec = DesignSpec.from_dict(rec["spec"])
            failed = spec.check(previous).failed
            feedback = render_feedback((r.kind, str(r.name), r.measured) for r in failed)
            if feedback:
                rec = {**rec, "prompt": f"{rec['prompt']} {feedback}"}
        previous = rec["smiles"]
        yield rec


if __name__ == "__main__":
    main()
