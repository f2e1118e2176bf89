"""Propose -> validate -> repair: valid, deduplicated proposals; clear outcomes for hard or bad specs."""

from __future__ import annotations

import time

import pytest

from reasoning import DesignSpec, Proposal, ProposalList, Proposer
from reasoning.backends import Reasoner, load_backend
from reasoning.backends.compact import CompactReasoner, default_checkpoint
from workbench.errors import CheckpointError, SpecError


@pytest.fixture()
def tiny_reasoner(tiny_model, tokenizer) -> CompactReasoner:
    return CompactReasoner(tiny_model, tokenizer, temperature=1.0, top_p=1.0, max_trace_tokens=6, max_smiles_tokens=40)


def test_proposals_are_valid_checked_and_unique(tiny_reasoner):
    assert isinstance(tiny_reasoner, Reasoner)
    spec = DesignSpec(properties={"heavy_atoms": [1, 60]})
    found = Proposer(tiny_reasoner, rounds=2, samples_per_round=12).propose(spec, n=5, seed=1)
    assert isinstance(found, ProposalList)
    assert found.status == "satisfied" and len(found) == 5 and all(p.ok for p in found)
    smiles = [p.molecule.smiles for p in found]
    assert len(set(smiles)) == len(smiles)
    for p in found:
        assert isinstance(p, Proposal) and p.ok and p.validation.ok and p.spec_report.ok
        assert p.trace is not None and p.molecule.meta["source"] == "reasoning"


def test_unsatisfiable_spec_is_reported_after_the_budget(tiny_reasoner):
    spec = DesignSpec(properties={"mw": [10, 20], "rings": [3, 3]})  # three rings cannot weigh 20
    start = time.time()
    found = Proposer(tiny_reasoner, rounds=2, samples_per_round=6).propose(spec, n=3, seed=0)
    assert time.time() - start < 60
    assert found.status == "unsatisfiable"
    assert "unsatisfiable" in found.reason and ("rings" in found.reason or "mw" in found.reason)
    assert found.stats["sampled"] == 12 and found.near_misses
    assert len(found) == 3 and not any(p.ok for p in found) and all(p.valid for p in found)
    strict = Proposer(tiny_reasoner, rounds=1, samples_per_round=4, fill_with_near_misses=False)
    assert list(strict.propose(spec, n=3)) == []


def test_repair_rounds_feed_failures_back(tiny_reasoner):
    prompts = []

    class Recording:
        name = "recording"

        def generate(self, prompt, n, **kw):
            prompts.append(prompt)
            return tiny_reasoner.generate(prompt, n, **kw)

    spec = DesignSpec(properties={"mw": [1000, 1001]})
    Proposer(Recording(), rounds=3, samples_per_round=4).propose(spec, n=1)
    assert len(prompts) == 3
    assert "<retry>" not in prompts[0] and "<retry> mw" in prompts[1]


def test_time_limit_stops_the_loop(tiny_reasoner):
    spec = DesignSpec(properties={"mw": [1000, 1001]})
    found = Proposer(tiny_reasoner, rounds=1000, samples_per_round=2, timeout_s=0.5).propose(spec, n=1)
    assert found.stats["rounds"] < 1000 and found.status == "unsatisfiable"


def test_bad_input(tiny_reasoner):
    proposer = Proposer(tiny_reasoner, rounds=1)
    with pytest.raises(SpecError, match="mw"):
        proposer.propose({"properties": {"mw": [400, 100]}}, n=1)
    with pytest.raises(SpecError):
        proposer.propose("properties: [unclosed", n=1)
    with pytest.raises(ValueError, match="positive"):
        proposer.propose(DesignSpec(), n=0)
    with pytest.raises(ValueError, match="unknown reasoning backend"):
        load_backend("gpt-17")


def test_missing_or_corrupt_checkpoint_names_the_path(tmp_path):
    with pytest.raises(CheckpointError) as err:
        Proposer.default(backend_options={"checkpoint": tmp_path})
    assert str(tmp_path) in str(err.value) and "make train-reasoning-sft" in str(err.value)
    (tmp_path / "model.safetensors").write_bytes(b"\x00garbage")
    (tmp_path / "config.json").write_text('{"vocab_size": 10}')
    with pytest.raises(CheckpointError, match="model.safetensors"):
        Proposer.default(backend_options={"checkpoint": tmp_path})


@pytest.mark.skipif(not (default_checkpoint() / "model.safetensors").exists(), reason="no shipped checkpoint")
def test_shipped_model_proposes_for_the_job_runner():
    spec = DesignSpec(properties={"mw": [200, 400]})
    proposals = Proposer.default(backend="compact", rounds=2).propose(spec, 2, seed=0)
    assert proposals.status in ("satisfied", "partial", "unsatisfiable")
    for p in proposals:
        assert p.valid and isinstance(p.trace, str)
