"""The ``import workbench as wb`` facade: lazy, and each verb reaches its engine."""

from __future__ import annotations

import pytest

import workbench as wb
from workbench.errors import CheckpointError


def test_facade_names():
    for name in ("Molecule", "MoleculeSet", "DesignSpec", "validate", "campaign", "generate", "propose", "simulate"):
        assert getattr(wb, name) is not None
    with pytest.raises(AttributeError):
        wb.no_such_thing  # noqa: B018


def test_campaign_from_a_dict(tmp_path):
    result = wb.campaign(
        {
            "name": "api",
            "proposers": [{"type": "library", "source": "moses-test", "n": 3}],
            "embed": {"enabled": False},
        },
        str(tmp_path / "r.db"),
        progress=False,
    )
    assert result.counts == {"done": 3} and len(result.molecules()) == 3


def test_simulate_unknown_potential_is_a_clear_error():
    with pytest.raises(CheckpointError, match="no such potential"):
        wb.simulate("CCO", potential="no-such-potential", ps=0.01)


def test_simulate_rejects_a_negative_length_or_timestep_before_any_work():
    with pytest.raises(ValueError, match="ps .*>= 0"):
        wb.simulate("CCO", potential="workbench-ethanol", ps=-1.0)
    with pytest.raises(ValueError, match="timestep_fs must be positive"):
        wb.simulate("CCO", potential="workbench-ethanol", ps=1.0, timestep_fs=0.0)


def test_propose_unknown_method():
    with pytest.raises(ValueError, match="reasoning.*diffusion"):
        wb.propose({"require": ["C(=O)N"]}, method="quantum")


def test_generate_with_the_shipped_diffusion_pipeline():
    mols = wb.generate({"qed": 0.8}, n=4, steps=10, seed=0)
    assert 1 <= len(mols) <= 4
    assert all(m.meta["validation"].ok or m.meta["validation"].sanitized for m in mols)
    assert mols.smiles == wb.generate({"qed": 0.8}, n=4, steps=10, seed=0).smiles  # deterministic for a seed


def test_campaign_with_the_diffusion_proposer(tmp_path):
    job = wb.JobConfig.from_text(
        "name: diff\nproposers: [{type: diffusion, n: 4, steps: 10, targets: {qed: 0.8},"
        " guidance: {type: c2fg, w0: 2.0, lam: 2.6}}]\nembed: {enabled: false}\n"
    )
    result = wb.campaign(job, str(tmp_path / "r.db"), progress=False)
    assert sum(result.counts.values()) >= 1
    assert {r["source"] for r in result.rows()} == {"diffusion"}
    bad = wb.JobConfig.from_text("name: g\nproposers: [{type: diffusion, n: 2, guidance: {type: wobbly}}]\n")
    from workbench.errors import JobFileError

    with pytest.raises(JobFileError, match="unknown type 'wobbly'"):
        wb.campaign(bad, str(tmp_path / "g.db"), progress=False)
