"""Constrained decoding gives valid molecules even from an untrained (random) model."""

from __future__ import annotations

import pytest
from rdkit import Chem

from reasoning.decoding import SmilesGrammarState, generate, generate_many
from workbench.chem import validate


def _push_all(state: SmilesGrammarState, tokens: list[str]) -> None:
    for token in tokens:
        assert state.allows(token), (token, tokens)
        state.push(token)


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_random_model_constrained_is_always_valid(tiny_model, tokenizer, temperature):
    outputs = []
    for seed in range(3):
        outputs += generate(
            tiny_model,
            tokenizer,
            "<spec> mw 200 to 300 </spec>",
            16,
            seed=seed,
            temperature=temperature,
            top_p=1.0,
            max_trace_tokens=8,
            max_smiles_tokens=60,
        )
    assert len(outputs) == 48
    for out in outputs:
        assert Chem.MolFromSmiles(out.smiles) is not None, out.smiles
        assert validate(out.smiles).ok, (out.smiles, str(validate(out.smiles)))


def test_random_model_unconstrained_is_mostly_invalid(tiny_model, tokenizer):
    outputs = generate(
        tiny_model, tokenizer, "<spec> </spec>", 16, constrained=False, seed=0, max_trace_tokens=8, max_smiles_tokens=40
    )
    valid = sum(Chem.MolFromSmiles(o.smiles) is not None and bool(o.smiles) for o in outputs)
    assert valid < len(outputs)


def test_elements_from_the_spec_are_respected(tiny_model, tokenizer):
    outputs = generate(
        tiny_model, tokenizer, "<spec> </spec>", 16, elements=["C", "O"], seed=4, max_trace_tokens=4, top_p=1.0
    )
    for out in outputs:
        mol = Chem.MolFromSmiles(out.smiles)
        assert {a.GetSymbol() for a in mol.GetAtoms()} <= {"C", "O"}


def test_grammar_bookkeeping():
    state = SmilesGrammarState()
    assert not state.allows(")") and not state.allows("1") and not state.allows("=")
    _push_all(state, ["C", "1", "C"])
    assert not state.allows("1")  # a ring bond between atoms already bonded
    _push_all(state, ["C", "1"])  # cyclopropane
    assert state.can_end()
    _push_all(state, ["(", "O"])
    assert not state.can_end() and not state.allows("=")  # inside a branch; O has one bond left
    _push_all(state, [")"])
    assert state.remaining(2) == 1  # two ring bonds and the branch to O
    assert not state.allows("=") and state.allows("C")
    _push_all(state, ["C"])
    assert state.remaining(2) == 0 and state.current == 4


def test_valence_and_linear_atoms_in_rings():
    state = SmilesGrammarState()
    _push_all(state, ["O", "="])
    assert not state.allows("F")  # F takes one bond only
    _push_all(state, ["C", "="])
    assert not state.allows("#")
    state = SmilesGrammarState()
    _push_all(state, ["C", "1", "C", "C"])
    # a triple bond on the way round an open ring would put linear atoms in the ring
    trial = state.copy()
    trial.push("#")
    trial.push("C")
    assert not trial.allows("1")
    assert trial.completion() is None
    assert state.completion() == ["1"]


def test_greedy_completion_closes_everything():
    state = SmilesGrammarState()
    _push_all(state, ["C", "1", "C", "(", "C", "2", "C", "C", "(", "N"])
    tail = state.completion()
    assert tail is not None
    _push_all(state, tail)
    assert state.can_end()
    assert Chem.MolFromSmiles("C1C(C2CC(N" + "".join(tail)) is not None


def test_batched_prompts_match_single_prompts(tiny_model, tokenizer):
    prompts = ["<spec> mw 200 to 300 ; require C(=O)N ; forbid Cl </spec>", "<spec> rings 1 to 2 </spec>"]
    options = dict(temperature=0.0, max_trace_tokens=12, max_smiles_tokens=30)
    batched = generate_many(tiny_model, tokenizer, prompts, 2, elements=[None, ["C", "N"]], **options)
    single = [
        generate(tiny_model, tokenizer, prompts[0], 2, **options),
        generate(tiny_model, tokenizer, prompts[1], 2, elements=["C", "N"], **options),
    ]
    assert [[o.smiles for o in group] for group in batched] == [[o.smiles for o in group] for group in single]
    assert [[o.trace for o in group] for group in batched] == [[o.trace for o in group] for group in single]


def test_trace_prefix_is_written_not_sampled(tiny_model, tokenizer):
    from reasoning.backends.compact import CompactReasoner
    from reasoning.traces import render_spec, restate_prefix
    from workbench.chem import DesignSpec

    prompt = render_spec(DesignSpec(properties={"mw": [200, 300]}, require=["C(=O)N"]))
    prefix = restate_prefix(prompt)
    assert prefix == "<think> restate mw 200 to 300 ; require C(=O)N"
    out = generate(tiny_model, tokenizer, prompt, 3, trace_prefix=prefix, max_trace_tokens=10, seed=1)
    assert all(o.trace.startswith(prefix) for o in out)
    # the sampled part is still bounded by max_trace_tokens, not shortened by the prefix
    assert all(len(tokenizer.encode(o.trace)) <= len(tokenizer.encode(prefix)) + 10 for o in out)
    reasoner = CompactReasoner(tiny_model, tokenizer, max_trace_tokens=10)
    assert all(o.trace.startswith(prefix) for o in reasoner.generate(prompt, 2, seed=0))
    plain = CompactReasoner(tiny_model, tokenizer, max_trace_tokens=10, ground_restate=False)
    assert not any(o.trace.startswith(prefix) for o in plain.generate(prompt, 2, seed=0))


def test_spec_bounds_cap_size_rings_and_mass(tiny_model, tokenizer):
    from rdkit.Chem import Descriptors, rdMolDescriptors

    from reasoning.decoding import SmilesBounds
    from workbench.chem import DesignSpec

    spec = DesignSpec(properties={"heavy_atoms": [8, 14], "rings": [1, 2], "mw": [120, 210]})
    bounds = SmilesBounds.from_spec(spec)
    assert (bounds.min_atoms, bounds.max_atoms, bounds.min_rings, bounds.max_rings) == (8, 14, 1, 2)
    out = generate(tiny_model, tokenizer, "<spec> </spec>", 24, bounds=bounds, max_trace_tokens=4, seed=3)
    mols = [Chem.MolFromSmiles(o.smiles) for o in out]
    assert all(m is not None and validate(o.smiles).ok for m, o in zip(mols, out, strict=True))
    assert all(m.GetNumHeavyAtoms() <= 14 for m in mols)
    # ring closures bound the cyclomatic number (RDKit's symmetrized SSSR can add one in bridged systems)
    assert all(m.GetNumBonds() - m.GetNumAtoms() + 1 <= 2 for m in mols)
    assert all(sum(a.GetMass() for a in m.GetAtoms()) <= 210 for m in mols)  # heavy-atom mass cap
    # the minimums are soft (validity first) but a random model now reaches them most of the time
    in_range = [m.GetNumHeavyAtoms() >= 8 and rdMolDescriptors.CalcNumRings(m) >= 1 for m in mols]
    assert sum(in_range) >= 18
    assert sum(Descriptors.MolWt(m) >= 120 for m in mols) >= 18
    free = generate(tiny_model, tokenizer, "<spec> </spec>", 24, max_trace_tokens=4, seed=3)
    free_mols = [Chem.MolFromSmiles(o.smiles) for o in free]
    assert sum(m.GetNumHeavyAtoms() >= 8 and rdMolDescriptors.CalcNumRings(m) >= 1 for m in free_mols) < sum(in_range)


@pytest.mark.parametrize("scaffold", ["c1ccc2[nH]ccc2c1", "c1ccc(CNCCSc2ncn[nH]2)cc1", "O=C1CCC(=O)N1", "C1CCNCC1"])
def test_scaffold_template_is_always_written(tiny_model, tokenizer, scaffold):
    from reasoning.decoding import SmilesBounds
    from workbench.chem import DesignSpec

    spec = DesignSpec(properties={"heavy_atoms": [5, 30]}, scaffold=scaffold)
    bounds = SmilesBounds.from_spec(spec)
    assert bounds.scaffold is not None
    out = generate(tiny_model, tokenizer, "<spec> </spec>", 24, bounds=bounds, max_trace_tokens=4, seed=2)
    for o in out:
        assert validate(o.smiles).ok, o.smiles
        report = spec.check(o.smiles)
        assert all(r.passed for r in report.results if r.kind == "scaffold"), o.smiles
        assert Chem.MolFromSmiles(o.smiles).GetNumHeavyAtoms() <= 30


def test_substituent_branches_respect_the_template_valence():
    from reasoning.decoding import SmilesBounds, SmilesGrammarState, scaffold_template

    bounds = SmilesBounds(scaffold=scaffold_template("c1ccncc1"))
    assert bounds.scaffold == tuple("C1=CC=NC=C1")
    state = SmilesGrammarState(bounds=bounds)
    state.push("C")
    assert state.allows("1") and not state.allows("(")  # ring digits must follow the atom directly
    assert not state.allows("N")  # only the template's next token, or a substituent branch
    state.push("1")
    assert state.allows("(")  # C1 keeps one valence beyond its ring bonds: a substituent may go here
    state.push("(")
    assert not state.allows("=")  # but only by a single bond
    assert not state.allows("1")  # and the template's open ring label is not the branch's to close
    _push_all(state, ["O", "C", ")"])
    assert state.free_depth is None and not state.can_end()  # back on the unfinished template
    _push_all(state, ["=", "C", "C", "=", "N"])
    assert not state.allows("(")  # the ring nitrogen has no valence to spare
    _push_all(state, ["C", "=", "C", "1"])
    assert state.can_end() and state.template_left() == 0


def test_a_required_group_becomes_the_template(tiny_model, tokenizer):
    from reasoning.decoding import SmilesBounds
    from workbench.chem import DesignSpec

    spec = DesignSpec(properties={"heavy_atoms": [6, 20]}, require=["[F,Cl,Br,I]", "C(=O)N"])
    bounds = SmilesBounds.from_spec(spec, require_templates=True)
    assert bounds.scaffold == ("N", "C", "=", "O")  # the first group the grammar can write
    assert SmilesBounds.from_spec(spec).scaffold is None  # off by default
    with_scaffold = DesignSpec(require=["C(=O)N"], scaffold="c1ccccc1")
    assert SmilesBounds.from_spec(with_scaffold, require_templates=True).scaffold[0] == "C"  # the scaffold wins
    amide = Chem.MolFromSmarts("C(=O)N")
    out = generate(tiny_model, tokenizer, "<spec> </spec>", 16, bounds=bounds, max_trace_tokens=4, seed=5)
    for o in out:
        assert validate(o.smiles).ok, o.smiles
        assert Chem.MolFromSmiles(o.smiles).HasSubstructMatch(amide), o.smiles
