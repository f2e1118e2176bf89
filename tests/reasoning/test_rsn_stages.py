"""Stages (b) alignment and (c) GRPO: the code runs on a tiny model and does what it says."""

from __future__ import annotations

import json

import pytest
import torch
from rdkit import Chem

from reasoning.model import ReasoningLM
from reasoning.tokenizer import ReasoningTokenizer
from reasoning.traces import write_traces
from reasoning.train.align import alignment_records, property_statement
from reasoning.train.rl import best_answer_advantages, group_advantages, grpo_step, reward_for
from reasoning.train.sft import SFTConfig, train_sft
from workbench.chem import DesignSpec


def test_alignment_examples_are_true(trace_records):
    records = alignment_records(trace_records[:10], seed=0)
    kinds = {r["kind"] for r in records}
    assert kinds == {"replay", "properties", "scaffold_to_molecule", "randomized_scaffold"}
    for r in records:
        if r["kind"] == "properties":
            smiles = r["prompt"].split()[1]
            assert r["completion"] == property_statement(Chem.MolFromSmiles(smiles))
        if r["kind"] == "randomized_scaffold":
            spec = DesignSpec.from_dict({"scaffold": r["prompt"].split()[2]})
            answer = r["completion"].split("<smiles> ")[1].split(" </smiles>")[0]
            assert spec.check(answer).ok


def test_alignment_continues_from_a_checkpoint(tmp_path, trace_records):
    write_traces(tmp_path / "a.jsonl", trace_records[:24])
    base = dict(d_model=32, n_layers=1, n_heads=2, d_ff=64, max_len=400, batch_size=8, warmup_steps=2)
    train_sft(
        SFTConfig(
            traces=[str(tmp_path / "a.jsonl")], out=str(tmp_path / "a"), state=str(tmp_path / "as"), max_steps=5, **base
        ),
        log=lambda line: None,
    )
    write_traces(tmp_path / "b.jsonl", alignment_records(trace_records[:24]))
    summary = train_sft(
        SFTConfig(
            traces=[str(tmp_path / "b.jsonl")],
            out=str(tmp_path / "b"),
            state=str(tmp_path / "bs"),
            max_steps=15,
            init_from=str(tmp_path / "a"),
            lr=3e-3,
            **base,
        ),
        log=lambda line: None,
    )
    assert summary["step"] == 15
    assert ReasoningTokenizer.load(tmp_path / "b").tokens == ReasoningTokenizer.load(tmp_path / "a").tokens
    log = [json.loads(x) for x in (tmp_path / "b" / "train_log.jsonl").read_text().splitlines()]
    assert log[-2]["loss"] < log[0]["loss"]


def test_reward_orders_answers_by_chemistry():
    spec = DesignSpec(properties={"mw": [40, 50]}, forbid=["Cl"])
    assert reward_for(spec, "C1CC1CC(", known=set()) == 0.0  # invalid
    satisfied = reward_for(spec, "CCO", known=set())
    known = reward_for(spec, "CCO", known={"CCO"})
    partial = reward_for(spec, "CCCl", known=set())
    assert satisfied > known > partial > 0.0


def test_group_advantages_are_relative():
    adv = group_advantages(torch.tensor([1.0, 2.0, 3.0]))
    assert abs(float(adv.mean())) < 1e-6 and adv[2] > 0 > adv[0]
    assert torch.allclose(group_advantages(torch.tensor([2.0, 2.0])), torch.zeros(2))


def test_best_answer_advantages_credit_only_a_strictly_best_answer():
    rewards = torch.tensor([1.0, 3.0, 2.5, 0.0])
    adv = best_answer_advantages(rewards)
    std = float(rewards.std(unbiased=False))
    assert float(adv[1]) == pytest.approx(0.5 / std, rel=1e-3)  # the group's best drops by 0.5 without it
    assert torch.count_nonzero(adv) == 1
    assert torch.count_nonzero(best_answer_advantages(torch.tensor([3.0, 3.0, 1.0]))) == 0  # a tie: no one is needed
    assert torch.count_nonzero(best_answer_advantages(torch.tensor([2.0]))) == 0


def test_grpo_step_refuses_an_unknown_advantage(tiny_model, tokenizer):
    optimizer = torch.optim.AdamW(tiny_model.parameters(), lr=1e-3)
    with pytest.raises(ValueError, match="group\\+best"):
        grpo_step(tiny_model, tiny_model, tokenizer, optimizer, DesignSpec(), known=set(), advantage="best")


@pytest.mark.parametrize("advantage", ["group", "group+best"])
def test_grpo_step_updates_the_policy(tiny_model, tokenizer, advantage):
    reference = ReasoningLM(tiny_model.config)
    reference.load_state_dict(tiny_model.state_dict())
    before = [p.detach().clone() for p in tiny_model.parameters()]
    optimizer = torch.optim.AdamW(tiny_model.parameters(), lr=1e-3)
    spec = DesignSpec(properties={"heavy_atoms": [3, 12]})
    stats = grpo_step(
        tiny_model, reference, tokenizer, optimizer, spec, known=set(), group=4, seed=1, advantage=advantage
    )
    assert stats["reward_max"] >= 1.0  # constrained decoding: every answer is valid
    assert stats["kl"] >= 0.0
    assert stats["groups_used"] == 1  # the group's rewards differ, so it drives the update
    changed = any(not torch.equal(a, b.detach()) for a, b in zip(before, tiny_model.parameters(), strict=True))
    assert changed


def test_grpo_step_batches_specs_and_skips_groups_without_signal(tiny_model, tokenizer, monkeypatch):
    import reasoning.train.rl as rl

    reference = ReasoningLM(tiny_model.config)
    reference.load_state_dict(tiny_model.state_dict())
    optimizer = torch.optim.AdamW(tiny_model.parameters(), lr=1e-3)
    small = DesignSpec(properties={"heavy_atoms": [3, 12]})
    large = DesignSpec(properties={"heavy_atoms": [4, 14]})
    stats = grpo_step(tiny_model, reference, tokenizer, optimizer, [small, large], known=set(), group=4, seed=1)
    assert stats["specs"] == 2 and stats["groups_used"] >= 1
    # answers that all score alike carry no relative signal: no group is used and nothing moves
    monkeypatch.setattr(rl, "reward_for", lambda spec, smiles, known: 2.0)
    before = [p.detach().clone() for p in tiny_model.parameters()]
    stats = grpo_step(tiny_model, reference, tokenizer, optimizer, [small, large], known=set(), group=4, seed=2)
    assert stats["groups_used"] == 0 and stats["reward_mean"] == 2.0
    assert all(torch.equal(a, b.detach()) for a, b in zip(before, tiny_model.parameters(), strict=True))


def test_grpo_with_built_answers_credits_only_the_trace(monkeypatch):
    """With ``answer_from_build`` the SMILES RDKit wrote from the build is out of the loss; the trace is in."""
    import reasoning.train.rl as rl
    from reasoning.backends.compact import default_checkpoint
    from reasoning.tokenizer import smiles_tokens

    folder = default_checkpoint()
    model, reference = ReasoningLM.from_pretrained(folder), ReasoningLM.from_pretrained(folder)
    tokenizer = ReasoningTokenizer.load(folder)
    seen = {}
    real_generate, real_logprobs = rl.generate_many, rl.sequence_logprobs

    def generate_many(*args, **kwargs):
        seen["groups"] = real_generate(*args, **kwargs)
        return seen["groups"]

    def sequence_logprobs(model_, prompt_ids, answers, pad_id):
        logp, mask = real_logprobs(model_, prompt_ids, answers, pad_id)
        if model_ is model:
            seen.setdefault("masks", []).append((len(prompt_ids), answers, mask))  # as grpo_step then edits it
        return logp, mask

    monkeypatch.setattr(rl, "generate_many", generate_many)
    monkeypatch.setattr(rl, "sequence_logprobs", sequence_logprobs)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    spec = DesignSpec(properties={"mw": [200, 320], "tpsa": [30, 70], "rotb": [0, 4]})
    grpo_step(model, reference, tokenizer, optimizer, spec, known=set(), group=6, seed=2, answer_from_build=True)
    samples = seen["groups"][0]
    assert sum(s.built for s in samples) >= 3
    ((n_prompt, answers, mask),) = seen["masks"]
    for sample, answer, row in zip(samples, answers, mask, strict=True):
        end = n_prompt - 1 + len(answer)
        written = len(smiles_tokens(sample.smiles)) + 1 if sample.built else 0  # the SMILES and its end token
        assert row[n_prompt - 1 : end - written].min() == 1.0  # the trace and <smiles> are the policy's
        assert row[end - written :].sum() == 0.0
