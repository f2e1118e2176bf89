"""Teacher traces must be true statements about the molecule they were derived from."""

from __future__ import annotations

import re

import pytest
from rdkit import Chem

from reasoning.traces import (
    build_steps,
    format_value,
    murcko_atoms,
    render_feedback,
    trace_for_molecule,
)
from workbench.chem import DesignSpec, Molecule
from workbench.chem.properties import compute
from workbench.data import load_corpus


def _skeleton(mol: Chem.Mol) -> Chem.Mol:
    """Elements and connectivity only (bond orders and aromaticity change when side chains are cut)."""
    rw = Chem.RWMol(mol)
    for atom in rw.GetAtoms():
        atom.SetIsAromatic(False)
    for bond in rw.GetBonds():
        bond.SetBondType(Chem.BondType.SINGLE)
        bond.SetIsAromatic(False)
    out = rw.GetMol()
    out.UpdatePropertyCache(strict=False)
    Chem.FastFindRings(out)
    return out


@pytest.fixture(scope="module")
def molecules() -> list[str]:
    return load_corpus("moses-train", limit=25) + load_corpus("chembl-drugs", limit=15)


def test_every_trace_is_true(molecules):
    checked = 0
    for i, smi in enumerate(molecules):
        try:
            fragments = Chem.GetMolFrags(Chem.MolFromSmiles(smi), asMols=True)
            example = trace_for_molecule(Chem.MolToSmiles(max(fragments, key=lambda m: m.GetNumAtoms())), seed=i)
        except ValueError:
            continue  # acyclic: no scaffold to start from
        final = Molecule(example.smiles)
        source = Molecule(smi)
        # the answer is the source molecule (largest fragment, stereo dropped), written in Kekulé form
        largest = max(Chem.GetMolFrags(source.graph, asMols=True), key=lambda m: m.GetNumAtoms())
        assert final.to_smiles(isomeric=False) == Molecule(largest).to_smiles(isomeric=False)
        assert not re.search(r"(?<![CB])[cnos]|\[[cnos]", example.smiles)  # Kekulé: no aromatic atoms
        # the spec is satisfied, and every check in the trace says what spec.check says
        report = example.spec.check(final)
        assert report.ok
        assert [(r.kind, str(r.name), r.passed) for r in report.results] == list(example.checks)
        for name, value in example.measured.items():
            assert value == format_value(name, final.prop(name))
        # steps: the scaffold is the Murcko framework; every partial is a substructure of the answer, grows
        # by exactly the added fragment, and its running estimates are its real properties
        steps = example.steps
        assert steps[0].kind == "scaffold"
        framework = Chem.MolFromSmiles(steps[0].partial_smiles)
        assert framework.GetNumAtoms() == len(murcko_atoms(final.graph))
        previous_atoms = 0
        for step in steps:
            partial = Chem.MolFromSmiles(step.partial_smiles)
            assert partial is not None
            assert _skeleton(final.graph).HasSubstructMatch(_skeleton(partial))
            for name, value in step.estimates:
                assert value == format_value(name, compute(name, partial)), (step, name)
            if step.kind == "add":
                fragment_atoms = Chem.MolFromSmiles(step.fragment.replace("*", "[*]")).GetNumAtoms() - 1
                assert partial.GetNumAtoms() == previous_atoms + fragment_atoms
            previous_atoms = partial.GetNumAtoms()
        assert previous_atoms == final.graph.GetNumAtoms()
        # the rendered text states exactly these facts
        text = example.trace()
        assert text.startswith("<think> restate") and text.endswith("</think>")
        for step in steps:
            assert step.fragment in text
        checked += 1
    assert checked >= 30


def test_trace_with_a_given_spec_and_a_violated_spec():
    spec = DesignSpec(properties={"mw": [100, 200]}, require=["C(=O)N"])
    example = trace_for_molecule("CC(=O)Nc1ccc(O)cc1", spec=spec)
    assert example.spec is spec
    assert "mw 151 ok" in example.trace()
    with pytest.raises(ValueError, match="does not satisfy"):
        trace_for_molecule("c1ccccc1", spec=spec)


def test_acyclic_molecules_have_no_scaffold_path():
    assert build_steps(Molecule("CCCCO")) is None
    with pytest.raises(ValueError, match="no scaffold"):
        trace_for_molecule("CCCCO", spec=DesignSpec())


def test_feedback_names_failed_constraints():
    spec = DesignSpec(properties={"mw": [100, 150]}, forbid=["Cl"])
    failed = [(r.kind, str(r.name), r.measured) for r in spec.check("Clc1ccc(CCCCCC)cc1").failed]
    text = render_feedback(failed)
    assert re.fullmatch(r"<retry> mw 197 ; forbid Cl </retry>", text), text
    assert render_feedback([]) == ""


def test_traces_are_deterministic():
    a = trace_for_molecule("CC(=O)Nc1ccc(O)cc1", seed=5)
    b = trace_for_molecule("CC(=O)Nc1ccc(O)cc1", seed=5)
    assert a.to_record() == b.to_record()
