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


def test_propose_unknown_method():
    with pytest.raises(ValueError, match="reasoning.*diffusion"):
        wb.propose({"require": ["C(=O)N"]}, method="quantum")
