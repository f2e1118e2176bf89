"""Stage (a) SFT: a tiny model's loss falls on real traces; training resumes where it stopped."""

from __future__ import annotations

import json

import torch

from reasoning.model import ReasoningLM
from reasoning.tokenizer import ReasoningTokenizer
from reasoning.traces import write_traces
from reasoning.train.sft import SFTConfig, encode_example, make_batch, train_sft


def _config(tmp_path, traces, **overrides) -> SFTConfig:
    base = dict(
        traces=[str(traces)],
        out=str(tmp_path / "ckpt"),
        state=str(tmp_path / "state"),
        d_model=32,
        n_layers=1,
        n_heads=2,
        d_ff=64,
        max_len=400,
        batch_size=8,
        lr=3e-3,
        warmup_steps=2,
        max_steps=30,
        eval_every=10,
        save_every=10,
    )
    return SFTConfig(**{**base, **overrides})


def test_loss_falls_and_training_resumes(tmp_path, trace_records):
    traces = tmp_path / "traces.jsonl"
    write_traces(traces, trace_records[:48])
    torch.manual_seed(0)
    first = train_sft(_config(tmp_path, traces, max_steps=30), log=lambda line: None)
    log = [json.loads(line) for line in (tmp_path / "ckpt" / "train_log.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in log if "loss" in r]
    assert losses[-1] < 0.75 * losses[0]
    assert first["step"] == 30
    saved = json.loads((tmp_path / "ckpt" / "train_config.json").read_text())
    assert saved["d_model"] == 32 and saved["model"]["vocab_size"] > 50

    # resume: the step counter continues and the checkpoint still loads
    second = train_sft(_config(tmp_path, traces, max_steps=40), log=lambda line: None)
    assert second["step"] == 40
    model = ReasoningLM.from_pretrained(tmp_path / "ckpt")
    tokenizer = ReasoningTokenizer.load(tmp_path / "ckpt")
    assert model.config.vocab_size == len(tokenizer)


def test_loss_covers_only_the_answer(tokenizer, trace_records):
    record = trace_records[0]
    ids, start = encode_example(tokenizer, record)
    inputs, targets = make_batch([(ids, start)], tokenizer.pad_id)
    assert (targets[0, : start - 1] == -100).all()
    assert targets[0, start - 1] == ids[start]
    assert targets[0, -1] == tokenizer.eos_id


def test_no_traces_model_learns_to_answer_directly(tmp_path, trace_records, tokenizer):
    from reasoning.train.sft import answer_only, encode_example

    ids, start = encode_example(tokenizer, answer_only(trace_records[0]))
    assert ids[start] == tokenizer.smiles_start_id  # the answer opens at once, with no reasoning
    assert "<think>" not in tokenizer.decode(ids[start:])
    traces = tmp_path / "traces.jsonl"
    write_traces(traces, trace_records[:48])
    torch.manual_seed(0)
    cfg = _config(tmp_path, traces, max_steps=40)
    cfg.no_traces = 1
    train_sft(cfg, log=lambda line: None)
    log = [json.loads(line) for line in (tmp_path / "ckpt" / "train_log.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in log if "loss" in r]
    assert losses[-1] < 0.75 * losses[0]
    assert json.loads((tmp_path / "ckpt" / "train_config.json").read_text())["no_traces"] == 1
