"""Spec-guided placement of a build's fragments (reasoning.placement)."""

from __future__ import annotations

from rdkit import Chem
from rdkit.Chem.rdMolDescriptors import CalcMolFormula

from reasoning.backends.compact import CompactReasoner
from reasoning.decoding import SmilesBounds
from reasoning.grounding import TraceGrounder
from reasoning.placement import SpecScore, best_placement
from reasoning.traces import kekule_smiles, render_spec
from workbench.chem import DesignSpec, validate


def _grounder(trace: str) -> TraceGrounder:
    grounder = TraceGrounder([])
    for token in trace.split():
        grounder.push(token)
    return grounder


def _met(spec: DesignSpec, mol: Chem.Mol) -> int:
    return sum(r.passed for r in spec.check(kekule_smiles(mol)).results)


def test_the_grounder_records_its_recipe():
    g = _grounder("scaffold C1CCNCC1 gives ; add *C gives ; add *=O gives ; add *#N gives")
    assert Chem.MolToSmiles(g.scaffold) == "C1CCNCC1"
    assert [Chem.MolToSmiles(f) for f, _ in g.steps] == ["*C", "*=O"]  # no ring atom has room for a triple bond
    for _, anchor in g.steps:
        assert anchor in g.anchors  # every fragment sits on a scaffold atom


def test_placement_forms_a_required_group_the_first_anchor_misses():
    g = _grounder("scaffold C1CCNCC1 gives ; add *C(C)=O gives ; add *O gives")
    spec = DesignSpec(require=["C(=O)N"], properties={"hbd": [1, 1], "rotb": [0, 1]})
    placed = best_placement(g, SpecScore(spec))
    assert not spec.check(kekule_smiles(g.partial)).ok
    assert spec.check(kekule_smiles(placed)).ok
    assert CalcMolFormula(placed) == CalcMolFormula(g.partial)  # the same atoms, moved


def test_a_build_that_meets_the_spec_or_cannot_is_left_alone():
    g = _grounder("scaffold c1ccccc1 gives ; add *O gives ; add *C gives")
    assert best_placement(g, SpecScore(DesignSpec(properties={"hbd": [1, 1]}))) is g.partial
    # 8 heavy atoms: no placement reaches 12, so nothing is searched
    unreachable = DesignSpec(properties={"heavy_atoms": [12, 20], "rotb": [3, 5]})
    assert best_placement(g, SpecScore(unreachable)) is g.partial
    assert best_placement(_grounder("scaffold c1ccccc1 gives"), SpecScore(unreachable)) is not None  # no fragments
    assert best_placement(TraceGrounder([]), SpecScore(unreachable)) is None  # nothing built


def test_placement_never_meets_fewer_constraints():
    spec = DesignSpec(
        properties={"tpsa": [40, 70], "rotb": [2, 4], "clogp": [0, 2], "hba": [2, 4], "qed": [0.5, 1.0]},
        require=["C(=O)N"],
        forbid=["[OH]c"],
    )
    score = SpecScore(spec)
    for trace in (
        "scaffold c1ccc2[nH]ccc2c1 gives ; add *C(=O)C gives ; add *OC gives ; add *N gives",
        "scaffold C1CCN(CC1)c1ccncc1 gives ; add *C(=O)O gives ; add *CC gives",
        "scaffold O=C1CCCN1 gives ; add *c1ccccc1 gives ; add *O gives",
    ):
        g = _grounder(trace)
        placed = best_placement(g, score)
        assert _met(spec, placed) >= _met(spec, g.partial)
        assert CalcMolFormula(placed) == CalcMolFormula(g.partial)


def test_the_score_counts_what_spec_check_passes():
    spec = DesignSpec(
        properties={"mw": [150, 300], "tpsa": [20, 60], "rotb": [1, 3], "hbd": [0, 1], "sa": [1, 3], "rings": [1, 2]},
        require=["c1ccccc1"],
        forbid=["C(=O)O"],
        scaffold="c1ccccc1",
        elements=["C", "N", "O"],
    )
    score = SpecScore(spec)
    for smiles in ("CC(=O)Nc1ccc(O)cc1", "OC(=O)c1ccccc1CCCCN", "C1CCNCC1", "Clc1ccccc1OC"):
        mol = Chem.MolFromSmiles(smiles)
        fixed = sum(check(mol) for check in score.fixed)
        assert score.score(mol) + fixed == _met(spec, mol), smiles
        assert score.feasible(mol) == (fixed == len(score.fixed))


def test_decoding_places_fragments_for_the_spec():
    spec = DesignSpec(properties={"mw": [180, 360], "heavy_atoms": [13, 26], "tpsa": [40, 90]}, require=["C(=O)N"])
    prompt, bounds = render_spec(spec), SmilesBounds.from_spec(spec)
    first = CompactReasoner.from_pretrained(place_by_spec=False).generate(prompt, 16, seed=3, bounds=bounds)
    placed = CompactReasoner.from_pretrained().generate(prompt, 16, seed=3, bounds=bounds)  # the default
    assert not any(s.placed for s in first)
    for a, b in zip(first, placed, strict=True):
        assert a.trace == b.trace  # placement changes the answer, never the reasoning
        report = validate(b.smiles)
        assert report.molecule is not None and report.ok
        if b.placed:
            assert a.built and b.built
            assert CalcMolFormula(Chem.MolFromSmiles(a.smiles)) == CalcMolFormula(Chem.MolFromSmiles(b.smiles))
            met = [sum(r.passed for r in spec.check(s.smiles).results) for s in (a, b)]
            assert met[1] > met[0]
        else:
            assert a.smiles == b.smiles
    assert sum(spec.satisfied(s.smiles) for s in placed) > sum(spec.satisfied(s.smiles) for s in first)
