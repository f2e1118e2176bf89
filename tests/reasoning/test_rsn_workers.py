"""Decoding a batch of prompts in forked worker processes gives what one process gives."""

from __future__ import annotations

import multiprocessing
import os

import pytest

from reasoning.backends.compact import CompactReasoner, _split
from reasoning.decoding import SmilesBounds, generate_many, prompt_width
from reasoning.traces import render_spec
from workbench.chem import DesignSpec

SPECS = [
    DesignSpec(properties={"mw": [200, 300]}, require=["C(=O)N"]),
    DesignSpec(properties={"heavy_atoms": [10, 18], "rings": [1, 2]}, elements=["C", "N", "O"]),
    DesignSpec(properties={"mw": [250, 400]}, scaffold="c1ccccc1", forbid=["Cl"]),
]


@pytest.fixture(scope="module")
def shipped() -> CompactReasoner:
    return CompactReasoner.from_pretrained(max_trace_tokens=40, max_smiles_tokens=40)


def _batch(specs: list[DesignSpec]) -> dict:
    return {
        "prompts": [render_spec(s) for s in specs],
        "elements": [list(s.elements) if s.elements is not None else None for s in specs],
        "bounds": [SmilesBounds.from_spec(s) for s in specs],
    }


def test_two_workers_give_the_samples_of_one_process(shipped):
    batch = _batch(SPECS)
    one = shipped.generate_many(batch.pop("prompts"), 2, seed=5, workers=1, **batch)
    batch = _batch(SPECS)
    two = shipped.generate_many(batch.pop("prompts"), 2, seed=5, workers=2, **batch)
    assert [[(s.trace, s.smiles, s.forced, s.tokens) for s in g] for g in two] == [
        [(s.trace, s.smiles, s.forced, s.tokens) for s in g] for g in one
    ]
    assert all(s.smiles for g in one for s in g)
    # the reasoner's default applies when the call gives none
    batch = _batch(SPECS)
    default = CompactReasoner(shipped.model, shipped.tokenizer, max_trace_tokens=40, max_smiles_tokens=40, workers=2)
    assert default.workers == 2
    assert [[s.smiles for s in g] for g in default.generate_many(batch.pop("prompts"), 2, seed=5, **batch)] == [
        [s.smiles for s in g] for g in one
    ]


def test_a_prompt_samples_the_same_whatever_shares_its_batch(tiny_model, tokenizer):
    """Each prompt has its own stream: a part decoded alone, at the batch's width, matches the batch."""
    prompts = ["<spec> mw 200 to 300 ; require C(=O)N </spec>", "<spec> rings 1 to 2 </spec>", "<spec> </spec>"]
    options = dict(max_trace_tokens=10, max_smiles_tokens=30, temperature=0.9, seed=3)
    whole = generate_many(tiny_model, tokenizer, prompts, 6, **options)
    width = prompt_width(tokenizer, prompts)
    for i, prompt in enumerate(prompts):
        alone = generate_many(tiny_model, tokenizer, [prompt], 6, width=width, first_prompt=i, **options)
        assert [(s.trace, s.smiles) for s in alone[0]] == [(s.trace, s.smiles) for s in whole[i]]
    tail = generate_many(tiny_model, tokenizer, prompts[1:], 6, width=width, first_prompt=1, **options)
    assert [[s.smiles for s in g] for g in tail] == [[s.smiles for s in g] for g in whole[1:]]
    with pytest.raises(ValueError, match="narrower than the longest prompt"):
        generate_many(tiny_model, tokenizer, prompts, 2, width=width - 1, **options)


@pytest.mark.parametrize("workers", [0, -1, 1.5, True, "2"])
def test_workers_must_be_a_positive_integer(tiny_model, tokenizer, workers):
    reasoner = CompactReasoner(tiny_model, tokenizer, max_trace_tokens=4)
    with pytest.raises(ValueError, match="workers must be a positive integer"):
        reasoner.generate_many(["<spec> </spec>"] * 2, 1, workers=workers)
    with pytest.raises(ValueError, match="workers must be a positive integer"):
        CompactReasoner(tiny_model, tokenizer, workers=workers)


def test_per_prompt_lists_must_match_the_prompts(tiny_model, tokenizer):
    reasoner = CompactReasoner(tiny_model, tokenizer, max_trace_tokens=4)
    with pytest.raises(ValueError, match="1 elements entries for 2 prompts"):
        reasoner.generate_many(["<spec> </spec>"] * 2, 1, elements=[None], workers=2)


def test_batches_split_into_contiguous_parts_at_most_one_per_prompt():
    assert _split(1, 4) == [range(0, 1)]
    assert _split(3, 4) == [range(0, 1), range(1, 2), range(2, 3)]
    assert _split(4, 2) == [range(0, 2), range(2, 4)]
    assert _split(5, 1) == [range(0, 5)]
    parts = _split(7, 3)
    assert [i for p in parts for i in p] == list(range(7)) and len(parts) == 3


def test_without_fork_it_warns_and_decodes_in_one_process(tiny_model, tokenizer, monkeypatch):
    reasoner = CompactReasoner(tiny_model, tokenizer, max_trace_tokens=4, max_smiles_tokens=20)
    expected = reasoner.generate_many(["<spec> </spec>", "<spec> rings 1 to 2 </spec>"], 2, seed=1)
    monkeypatch.setattr(multiprocessing, "get_all_start_methods", lambda: ["spawn"])
    with pytest.warns(UserWarning, match="fork start method"):
        got = reasoner.generate_many(["<spec> </spec>", "<spec> rings 1 to 2 </spec>"], 2, seed=1, workers=2)
    assert [[s.smiles for s in g] for g in got] == [[s.smiles for s in g] for g in expected]


def test_an_error_in_a_worker_is_raised_in_the_caller(tiny_model, tokenizer):
    """A prompt too long for the model fails inside the workers; the caller gets that ValueError."""
    reasoner = CompactReasoner(tiny_model, tokenizer, max_trace_tokens=4)
    too_long = "<spec> " + " ; ".join(["require C(=O)N"] * 200) + " </spec>"
    with pytest.raises(ValueError, match="leaves no room") as caught:
        reasoner.generate_many(["<spec> </spec>", too_long], 1, workers=2)
    assert any("decoding worker" in note for note in getattr(caught.value, "__notes__", []))


class _DyingReasoner(CompactReasoner):
    """Its second part's worker process ends abruptly (as when it is killed)."""

    def _decode_part(self, task, part):
        if part.start > 0:
            os._exit(3)
        return super()._decode_part(task, part)


def test_a_worker_that_dies_raises_instead_of_hanging(tiny_model, tokenizer):
    reasoner = _DyingReasoner(tiny_model, tokenizer, max_trace_tokens=4, max_smiles_tokens=20)
    with pytest.raises(RuntimeError, match="worker process died"):
        reasoner.generate_many(["<spec> </spec>", "<spec> rings 1 to 2 </spec>"], 1, workers=2)


def test_a_short_prompt_keeps_its_own_length_limits_beside_a_long_one(tokenizer):
    """The left padding of a short prompt in a wide batch takes cache positions, not room from its trace."""
    import torch

    from reasoning.model import ReasoningConfig, ReasoningLM

    torch.manual_seed(0)
    model = ReasoningLM(ReasoningConfig(vocab_size=len(tokenizer), d_model=32, n_layers=2, n_heads=4, max_len=96))
    short = "<spec> </spec>"
    long = "<spec> " + " ; ".join(f"mw {100 + k} to {400 + k}" for k in range(6)) + " </spec>"
    gap = len(tokenizer.encode(long)) - len(tokenizer.encode(short))
    assert gap > 30  # the long prompt would have cut the short one's trace budget by this much
    options = dict(max_trace_tokens=500, max_smiles_tokens=20, temperature=1.0, seed=1, constrained=False)
    alone = generate_many(model, tokenizer, [short], 8, **options)[0]
    beside = generate_many(model, tokenizer, [short, long], 8, **options)[0]
    assert max(s.tokens for s in beside) > 96 - len(tokenizer.encode(long, bos=True)) - 2  # past the long one's room
    assert [s.tokens for s in beside] == [s.tokens for s in alone]


def test_a_judge_runs_on_each_prompts_samples_in_the_worker_that_decoded_them(shipped):
    def judge(i, samples):
        return i, os.getpid(), [s.smiles for s in samples]

    batch = _batch(SPECS)
    plain = shipped.generate_many(batch.pop("prompts"), 2, seed=5, workers=1, **batch)
    for workers in (1, 2):
        batch = _batch(SPECS)
        judged = shipped.generate_many(batch.pop("prompts"), 2, seed=5, workers=workers, judge=judge, **batch)
        assert [[s.smiles for s in samples] for samples, _ in judged] == [[s.smiles for s in g] for g in plain]
        assert [(i, answers) for _, (i, _, answers) in judged] == [
            (i, [s.smiles for s in g]) for i, g in enumerate(plain)
        ]
        pids = {pid for _, (_, pid, _) in judged}
        if workers == 1:
            assert pids == {os.getpid()}
        elif "fork" in multiprocessing.get_all_start_methods():
            assert os.getpid() not in pids  # judged where decoded, not here
