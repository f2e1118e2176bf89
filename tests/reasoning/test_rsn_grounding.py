"""RDKit-grounded running estimates: the numbers a grounded trace holds are true of the molecule it builds."""

from __future__ import annotations

import re

import pytest
import torch
from rdkit import Chem
from rdkit.Chem.rdMolDescriptors import CalcMolFormula

from reasoning.backends.compact import CompactReasoner, default_checkpoint
from reasoning.decoding import SmilesBounds, built_answer
from reasoning.grounding import TraceGrounder, attach, built_molecule, forced_positions, running_properties
from reasoning.traces import format_value, render_spec, restate_prefix
from workbench.chem import DesignSpec, validate
from workbench.chem.properties import compute as compute_property


def _trace_tokens(tokenizer, record: dict) -> list[str]:
    body = record["trace"][len(restate_prefix(record["prompt"])) :]
    return [tokenizer.tokens[i] for i in tokenizer.encode(body)]


def _steps(trace: str) -> list[list[tuple[str, str]]]:
    """The ``name value`` pairs after every ``gives`` of a trace."""
    return [re.findall(r"(\w+) (-?[\d.]+)", part) for part in re.findall(r"gives (.*?)(?: ;|$)", trace)]


def test_running_properties_follow_the_teacher():
    assert running_properties([]) == ["mw"]
    assert running_properties(["tpsa", "qed", "clogp", "hbd"]) == ["mw", "clogp", "tpsa"]
    assert running_properties(["mw", "rotb"]) == ["mw", "rotb"]


def test_grounded_estimates_agree_with_the_teacher_traces(trace_records, tokenizer):
    """Fed a teacher trace, the grounder rebuilds its partial molecules: the masses are nearly always exactly
    the teacher's, and so are the other figures (where a fragment goes can shift them)."""
    compared = agreed = steps = masses = same_mass = 0
    for record in trace_records:
        if "<retry>" in record["prompt"]:
            continue
        grounder = TraceGrounder.for_prompt(record["prompt"])
        teacher = iter(_steps(record["trace"]))
        for token in _trace_tokens(tokenizer, record):
            forced = grounder.push(token)
            if token != "gives":
                continue
            expected = next(teacher)
            if not forced:
                continue
            steps += 1
            ours = re.findall(r"(\w+) (-?[\d.]+)", " ".join(_words(forced[:-1])))
            assert [n for n, _ in ours] == [n for n, _ in expected]
            for (name, value), (_, want) in zip(ours, expected, strict=True):
                if name == "mw":
                    masses += 1
                    # the same atoms, so the same mass, up to the hydrogens an anchor choice can shift
                    assert abs(int(value) - int(want)) <= 2, (record["smiles"], name)
                    same_mass += value == want
                compared += 1
                agreed += value == want
    assert steps > 100
    assert same_mass / masses > 0.95
    assert agreed / compared > 0.85


def test_a_teacher_trace_builds_its_answer_up_to_positions(trace_records, tokenizer):
    """Scaffold plus fragments gives the answer's atoms: the same molecular formula for nearly every trace."""
    built = same = 0
    for record in trace_records:
        mol = built_molecule(record["prompt"], _trace_tokens(tokenizer, record))
        if mol is None:
            continue
        built += 1
        same += CalcMolFormula(mol) == CalcMolFormula(Chem.MolFromSmiles(record["smiles"]))
    assert built > 0.9 * len(trace_records)
    assert same / built > 0.9
    assert built_molecule("<spec> mw 100 to 300 </spec>", ["add", "*", "O", "gives"]) is None  # no scaffold


def _words(tokens: list[str]) -> list[str]:
    """Join single-character number tokens back into words."""
    out: list[str] = []
    for t in tokens:
        if out and (t[0].isdigit() or t in ".-") and (out[-1][-1].isdigit() or out[-1][-1] in "-."):
            out[-1] += t
        else:
            out.append(t)
    return out


def test_each_grounded_figure_is_a_property_of_the_partial_molecule():
    grounder = TraceGrounder.for_prompt("<spec> tpsa 20 to 90 ; clogp 0 to 3 </spec>")
    tokens = ["scaffold", *list("C1=CC=C(C2CCNCC2)C=C1"), "gives"]
    forced = [grounder.push(t) for t in tokens][-1]
    assert forced[0] == "mw" and forced[-1] == ";"
    for token in ["add", "*", "C", "(", "N", ")", "=", "O", "gives"]:
        forced = grounder.push(token)
    figures = dict(re.findall(r"(\w+) (-?[\d.]+)", " ".join(_words(forced[:-1]))))
    mol = grounder.partial
    assert len(mol.GetSubstructMatches(Chem.MolFromSmarts("[NH2]C(=O)c"))) == 1  # the amide is on the ring
    for name, value in figures.items():
        assert value == format_value(name, compute_property(name, mol))
    assert grounder.grounded == 2 and grounder.skipped == 0


def test_unusable_fragments_are_left_to_the_model():
    grounder = TraceGrounder.for_prompt("<spec> mw 100 to 300 </spec>")
    assert [grounder.push(t) for t in ["add", "*", "C", "gives"]][-1] == []  # nothing to add to yet
    assert [grounder.push(t) for t in ["scaffold", "C", "1", "C", "C", "gives"]][-1] == []  # ring never closed
    benzene = ["scaffold", *list("C1=CC=CC=C1"), "gives"]
    assert [grounder.push(t) for t in benzene][-1][:1] == ["mw"]
    assert [grounder.push(t) for t in ["add", "*", "=", "O", "gives"]][-1] == []  # no sp3 CH2 on benzene
    assert grounder.skipped == 3 and grounder.grounded == 1
    assert Chem.MolToSmiles(grounder.partial) == "c1ccccc1"  # a failed step leaves the partial as it was


def test_attach_needs_room_on_the_anchor():
    methane = Chem.MolFromSmiles("C")
    assert Chem.MolToSmiles(attach(methane, Chem.MolFromSmiles("*=O"), [0])) == "C=O"
    assert attach(Chem.MolFromSmiles("C(C)(C)(C)C"), Chem.MolFromSmiles("*O"), [0]) is None


def test_forced_positions_mark_what_the_grounder_wrote():
    prompt = "<spec> mw 50 to 300 </spec>"
    tokens = ["scaffold", *list("C1=CC=CC=C1"), "gives", "mw", "7", "8", ";", "add", "*", "O", "gives", "mw"]
    tokens += ["9", "4", ";", "check"]
    flags = forced_positions(prompt, tokens)
    written = [t for t, f in zip(tokens, flags, strict=True) if f]
    assert written == ["mw", "7", "8", ";", "mw", "9", "4", ";"]
    # where a trace departs from the grounded figures (an ungrounded one), nothing after that is marked
    assert forced_positions(prompt, [*tokens[:13], "mw", "5", "0", ";"])[13:] == [True, False, False, False]


@pytest.mark.skipif(not (default_checkpoint() / "model.safetensors").exists(), reason="no shipped checkpoint")
def test_grounded_decoding_writes_true_estimates():
    reasoner = CompactReasoner.from_pretrained(ground_estimates=True)
    spec = DesignSpec(properties={"mw": [250, 400], "tpsa": [40, 90]}, require=["C(=O)N"])
    prompt = render_spec(spec)
    samples = reasoner.generate(prompt, 6, seed=3, bounds=SmilesBounds.from_spec(spec))
    grounded = 0
    for sample in samples:
        tokens = [reasoner.tokenizer.tokens[i] for i in reasoner.tokenizer.encode(sample.trace)]
        tokens = tokens[len(reasoner.tokenizer.encode(restate_prefix(prompt))) :]
        replay = TraceGrounder.for_prompt(prompt)
        for k, token in enumerate(tokens):
            expected = replay.push(token)
            if expected:  # the decoder wrote exactly these tokens next
                assert tokens[k + 1 : k + 1 + len(expected)] == expected
                grounded += 1
    assert grounded >= len(samples)  # at least the scaffold step of every sample


def test_built_answer_is_the_build_when_it_fits(trace_records, tokenizer):
    """A teacher trace's build is its answer's formula; constraints it breaks make the decoder fall back."""
    answered = 0
    for record in trace_records[:60]:
        tokens = [tokenizer.tokens[i] for i in tokenizer.encode(record["trace"])]
        mol = built_molecule(record["prompt"], tokens)
        answer = built_answer(record["prompt"], tokens)
        if mol is None or answer is None:
            continue
        answered += 1
        assert CalcMolFormula(Chem.MolFromSmiles(answer)) == CalcMolFormula(mol)
        assert not any(c in answer for c in "cnos")  # Kekulé, as the training answers are
        atoms = mol.GetNumHeavyAtoms()
        assert built_answer(record["prompt"], tokens, bounds=SmilesBounds(max_atoms=atoms - 1)) is None
        assert built_answer(record["prompt"], tokens, bounds=SmilesBounds(min_atoms=atoms + 1)) is None
        symbols = {a.GetSymbol() for a in mol.GetAtoms()}
        if len(symbols) > 1:
            assert built_answer(record["prompt"], tokens, elements=sorted(symbols)[1:]) is None
        assert built_answer(record["prompt"], tokens, elements=sorted(symbols)) == answer
    assert answered > 30
    phenol = [";", "scaffold", "C1=CC=CC=C1", "gives", ";", "add", "*O", "gives"]
    assert built_answer("<spec> </spec>", phenol) == "OC1=CC=CC=C1"
    pyridine = SmilesBounds(scaffold=("C", "1", "=", "C", "C", "=", "N", "C", "=", "C", "1"))
    assert built_answer("<spec> </spec>", phenol, bounds=pyridine) is None  # not built around the spec's scaffold
    assert built_answer("<spec> </spec>", ["add", "*", "O", "gives"]) is None  # nothing built


def test_answer_from_build_answers_with_what_the_trace_built():
    reasoner = CompactReasoner.from_pretrained(answer_from_build=True, place_by_spec=False)
    spec = DesignSpec(properties={"mw": [200, 380], "heavy_atoms": [14, 27]}, forbid=["[F,Cl,Br,I]"])
    prompt = render_spec(spec)
    bounds = SmilesBounds.from_spec(spec)
    samples = reasoner.generate(prompt, 8, seed=5, bounds=bounds, elements=["C", "N", "O", "S"])
    built = [s for s in samples if s.built]
    assert len(built) >= 4
    for sample in samples:
        report = validate(sample.smiles)
        assert report.molecule is not None and report.ok  # built or decoded, every answer is valid
        assert {a.GetSymbol() for a in report.molecule.graph.GetAtoms()} <= {"C", "N", "O", "S"}
    for sample in built:
        tokens = reasoner.tokenizer.tokenize(sample.trace)
        assert sample.smiles == built_answer(prompt, tokens, ["C", "N", "O", "S"], bounds)
        assert 14 <= Chem.MolFromSmiles(sample.smiles).GetNumHeavyAtoms() <= 27
    assert CompactReasoner.from_pretrained().answer_from_build  # the reasoner's default
    decoded = CompactReasoner.from_pretrained(answer_from_build=False).generate(prompt, 8, seed=5, bounds=bounds)
    assert not any(s.built for s in decoded)
    # plain (unconstrained) decoding stays the model's own SMILES
    assert not any(s.built for s in reasoner.generate(prompt, 4, seed=5, constrained=False))


def test_a_build_below_the_minimum_size_keeps_growing():
    """When the answer is the build, the trace may not end its build steps below the spec's minimum size."""
    from reasoning.decoding import _sample_rows, _vocab

    reasoner = CompactReasoner.from_pretrained()
    tokenizer = reasoner.tokenizer
    vocab = _vocab(tokenizer)
    logits = torch.zeros(2, len(tokenizer))
    logits[:, tokenizer.index["check"]] = 50.0  # the model wants to stop building
    logits[:, tokenizer.index["add"]] = 10.0
    picks = _sample_rows(
        logits, vocab, [False, False], [True, True], 1.0, 1.0, torch.Generator().manual_seed(0), building=[False, True]
    )
    assert tokenizer.tokens[picks[0]] == "check" and tokenizer.tokens[picks[1]] == "add"
    # end to end: samples whose build alone would be too small grow until they fit, so more of them are builds
    spec = DesignSpec(properties={"heavy_atoms": [26, 36], "mw": [360, 520]})
    prompt, bounds = render_spec(spec), SmilesBounds.from_spec(spec)
    samples = reasoner.generate(prompt, 16, seed=4, bounds=bounds)
    for sample in samples:
        if sample.built:
            assert Chem.MolFromSmiles(sample.smiles).GetNumHeavyAtoms() >= 26
    assert sum(s.built for s in samples) >= 8
