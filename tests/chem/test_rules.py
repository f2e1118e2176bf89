from __future__ import annotations

import pytest
from rdkit import Chem

from workbench.chem import DEFAULT_RULES, RULES, Molecule, RuleSet, validate
from workbench.data import load_corpus
from workbench.errors import SpecError

# Deliberately broken inputs: each must fail RDKit sanitization, and the validator must say why.
BROKEN = {
    "C(C)(C)(C)(C)C": "valence",  # pentavalent carbon
    "FC(F)(F)(F)F": "valence",
    "c1cccc1": "kekulize",  # 5-membered all-carbon aromatic ring
    "c1ccccc1c": "kekulize",
    "O=O=O": "valence",
    "N(C)(C)(C)C": "valence",  # neutral tetravalent N
    "c1ccnc1": "kekulize",
    "C1CC": "parse",  # unclosed ring
    "CC(C": "parse",
    "C%%": "parse",
    "Xx": "parse",
    "[Cl](C)C": "valence",
    "c1cc2ccccc2c": "parse",  # unclosed aromatic ring
    "B(C)(C)(C)C": "valence",
}


@pytest.mark.parametrize("smiles,rule", sorted(BROKEN.items()))
def test_broken_inputs_are_errors_with_the_right_rule(smiles, rule):
    report = validate(smiles)
    assert not report.ok and not report.sanitized
    assert rule in {f.rule for f in report.errors}, str(report)
    assert Chem.MolFromSmiles(smiles) is None


def test_empty_input_is_rejected_although_rdkit_reads_an_empty_molecule():
    # RDKit parses "" as a zero-atom molecule; the workbench treats it as missing input on purpose.
    assert Chem.MolFromSmiles("").GetNumAtoms() == 0
    report = validate("")
    assert not report.ok and report.errors[0].rule == "parse"


def test_valence_finding_names_the_atom():
    report = validate("CC(C)(C)(C)(C)C")
    finding = report.by_rule("valence")[0]
    assert finding.atoms == (1,)
    assert "valence" in finding.message.lower()


def test_agrees_with_rdkit_sanitization_on_10k_moses_and_broken_set():
    smiles = load_corpus("moses-train", limit=10_000, seed=11) + list(BROKEN)  # "" excluded: see above
    # also corrupt real molecules: add an extra bond to an aromatic atom / a stray letter
    smiles += [s.replace("c", "C", 1) for s in smiles[:300]]
    smiles += [s + "(" for s in smiles[:100]]
    structural = RuleSet.none()
    disagree = []
    for s in smiles:
        rdkit_ok = Chem.MolFromSmiles(s) is not None
        report = validate(s, structural)
        if report.ok != rdkit_ok or report.sanitized != rdkit_ok:
            disagree.append(s)
    assert disagree == []


def test_moses_molecules_pass_the_default_rules(moses_sample):
    failing = [s for s in moses_sample if not validate(s).ok]
    assert failing == []


@pytest.mark.parametrize(
    "smiles,rule,severity",
    [
        ("C[Si](C)(C)[Sn](C)(C)C", "elements", "error"),
        ("C*", "elements", "error"),
        ("[CH2]C", "radicals", "error"),
        ("C[N+](C)(C)C", "charges", "warning"),
        ("[NH4+].[NH4+].[NH4+].[O-]P([O-])([O-])=O", "fragments", "warning"),
        ("[O-]P([O-])([O-])=O", "charges", "error"),  # net -3 beyond ±2
        ("C1#CC1", "ring_strain", "error"),
        ("C1=C=CCC1", "ring_strain", "error"),  # allene in a five-membered ring
        ("C1CC1C1CC1C1CC1", "ring_strain", "warning"),
        ("[13CH3]O", "isotopes", "warning"),
        ("O=C(C=Cc1ccccc1)c1ccccc1", "brenk", "warning"),  # Michael acceptor
        ("Oc1ccc(N=Nc2ccccc2)cc1", "pains", "warning"),  # azo phenol (PAINS azo_A)
        ("CCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCC(=O)O", "lipinski", "warning"),
        ("CCCCCCCCCCCCCCCC", "veber", "warning"),
        ("CO", "ghose", "warning"),
    ],
)
def test_each_rule_fires(smiles, rule, severity):
    report = validate(smiles)
    found = report.by_rule(rule)
    assert found, str(report)
    assert severity in {f.severity for f in found}


def test_nih_alert():
    report = validate("CC(=O)OO")  # peracid
    assert report.by_rule("nih") or report.by_rule("brenk"), str(report)


def test_alert_atoms_point_at_the_match():
    report = validate("O=C(C=Cc1ccccc1)c1ccccc1")
    atoms = {a for f in report.by_rule("brenk") for a in f.atoms}
    assert {1, 2, 3} <= atoms  # the enone carbons


def test_salt_is_reported_not_rejected():
    report = validate("CC(=O)[O-].[Na+]")
    assert report.ok and report.by_rule("fragments")
    assert not validate("CC[Na]").ok  # a covalent sodium is not a counter-ion


def test_rules_can_be_switched_off_and_configured():
    rs = DEFAULT_RULES.disable("elements")
    assert validate("C[Sn](C)(C)C", rs).ok
    rs2 = RuleSet.from_dict(
        {"rules": {"elements": {"allowed": ["C", "H", "O"]}, "lipinski": {"severity": "error", "max_violations": 0}}}
    )
    assert not validate("CCN", rs2).ok
    assert validate("CCO", rs2).ok
    assert "elements" in rs2 and rs2["lipinski"].severity == "error"


def test_ruleset_yaml_and_errors(tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text("base: none\nrules:\n  radicals: true\n  pains: {severity: error}\n")
    rs = RuleSet.from_yaml(path)
    assert set(rs.ids) == {"parse", "valence", "kekulize", "radicals", "pains"}
    assert RuleSet.from_dict(rs.to_dict()) == rs
    with pytest.raises(SpecError, match="rules.bogus"):
        RuleSet.from_dict({"rules": {"bogus": True}})
    with pytest.raises(SpecError, match="rules.elements.allowed"):
        RuleSet.from_dict({"elements": {"allowed": ["Qq"]}})
    with pytest.raises(SpecError, match="severity"):
        RuleSet.from_dict({"pains": {"severity": "fatal"}})
    with pytest.raises(SpecError, match="unknown option"):
        RuleSet.from_dict({"pains": {"threshold": 3}})
    with pytest.raises(SpecError):
        RuleSet.from_yaml("rules: [unclosed")


def test_every_rule_is_documented_and_registered():
    assert len(RULES) == 15
    for rid, cls in RULES.items():
        assert cls.id == rid and cls.description and cls.__doc__


def test_reports_are_cached_on_molecules():
    m = Molecule("CC(=O)Nc1ccc(O)cc1")
    assert validate(m) is validate(m)
    assert validate(m, DEFAULT_RULES.disable("pains")) is not validate(m)


def test_report_rendering():
    report = validate("C(C)(C)(C)(C)C")
    assert "valence" in str(report) and "invalid" in report.summary()
    assert "<table>" in report._repr_html_()
    assert report.to_dict()["ok"] is False


def test_validate_accepts_rdkit_and_molblock():
    rd = Chem.MolFromSmiles("CCO")
    assert validate(rd).ok
    assert validate(Chem.MolToMolBlock(rd)).ok
    raw = Chem.MolFromSmiles("C(C)(C)(C)(C)C", sanitize=False)
    assert not validate(raw).ok
