"""The compact transformer: KV-cache decoding equals full recomputation; checkpoints load safely."""

from __future__ import annotations

import json

import pytest
import torch

from reasoning.model import KVCache, ReasoningConfig, ReasoningLM
from workbench.errors import CheckpointError


def test_kv_cache_matches_full_forward(tiny_model):
    ids = torch.randint(0, tiny_model.config.vocab_size, (3, 12))
    with torch.no_grad():
        full = tiny_model(ids)
        cache = KVCache(tiny_model.config.n_layers)
        parts = [tiny_model(ids[:, :5], cache=cache)]
        for t in range(5, 12):
            parts.append(tiny_model(ids[:, t : t + 1], cache=cache))
    assert torch.allclose(torch.cat(parts, dim=1), full, atol=1e-5)


def test_too_long_input_is_refused(tiny_model):
    with pytest.raises(ValueError, match="max_len"):
        tiny_model(torch.zeros(1, tiny_model.config.max_len + 1, dtype=torch.long))


def test_save_and_load_round_trip(tmp_path, tiny_model, tokenizer):
    tiny_model.save_pretrained(tmp_path, tokenizer)
    loaded = ReasoningLM.from_pretrained(tmp_path)
    ids = torch.randint(0, tiny_model.config.vocab_size, (2, 7))
    with torch.no_grad():
        assert torch.allclose(loaded(ids), tiny_model.eval()(ids), atol=1e-6)
    assert {p.name for p in tmp_path.iterdir()} == {"config.json", "model.safetensors", "tokenizer.json"}


def test_half_precision_checkpoint_loads_as_float32(tmp_path, tiny_model):
    tiny_model.save_pretrained(tmp_path, dtype=torch.float16)
    loaded = ReasoningLM.from_pretrained(tmp_path)
    assert next(loaded.parameters()).dtype == torch.float32


def test_corrupt_and_mismatched_checkpoints_name_the_path(tmp_path, tiny_model):
    tiny_model.save_pretrained(tmp_path)
    weights = tmp_path / "model.safetensors"
    good = weights.read_bytes()
    weights.write_bytes(good[: len(good) // 3])
    with pytest.raises(CheckpointError) as err:
        ReasoningLM.from_pretrained(tmp_path)
    assert str(weights) in str(err.value)

    weights.write_bytes(good)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "d_model": 64}))
    with pytest.raises(CheckpointError, match="do not match"):
        ReasoningLM.from_pretrained(tmp_path)

    (tmp_path / "config.json").write_text("[1, 2")
    with pytest.raises(CheckpointError, match="config.json"):
        ReasoningLM.from_pretrained(tmp_path)
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        ReasoningLM.from_pretrained(tmp_path / "absent")


def test_config_rejects_unknown_keys():
    with pytest.raises(ValueError, match="unknown config keys"):
        ReasoningConfig.from_dict({"vocab_size": 10, "layers": 3})


def test_kv_cache_select_keeps_the_chosen_rows(tiny_model):
    ids = torch.randint(0, tiny_model.config.vocab_size, (5, 7))
    rows = torch.tensor([4, 1])
    nxt = torch.randint(0, tiny_model.config.vocab_size, (2, 1))
    with torch.no_grad():
        cache = KVCache(tiny_model.config.n_layers)
        tiny_model(ids, cache=cache)
        cache.select(rows)
        stepped = tiny_model(nxt, cache=cache)[:, -1]
        full = tiny_model(torch.cat([ids[rows], nxt], dim=1))[:, -1]
    assert cache.length == 8
    assert torch.allclose(stepped, full, atol=1e-5)


def _prefill(model, ids, key_valid):
    width = ids.shape[1]
    cache = KVCache(model.config.n_layers, model.config.max_len + width)
    mask = torch.ones(width, width, dtype=torch.bool).tril() & key_valid[:, None, None, :] | torch.eye(
        width, dtype=torch.bool
    )
    logits = model(ids, cache=cache, attn_mask=mask)[:, -1]
    return cache, logits


def test_a_shared_prefix_decodes_as_copied_rows_do(tiny_model):
    """share_prefix (each prompt's keys read once for all its rows) gives the logits of select (the prompt's
    keys copied to every row), with left padding, and after rows are dropped so prompts keep unequal counts."""
    vocab, width = tiny_model.config.vocab_size, 9
    ids = torch.randint(0, vocab, (3, width))
    key_valid = torch.ones(3, width, dtype=torch.bool)
    key_valid[0, :4] = False  # prompt 0 is 5 tokens, left-padded
    key_valid[2, :2] = False
    rows_of_prompt = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2])
    steps = torch.randint(0, vocab, (6, len(rows_of_prompt)))
    drop_after = {2: torch.tensor([0, 2, 3, 4, 8]), 4: torch.tensor([1, 2, 4])}
    with torch.no_grad():
        shared, _ = _prefill(tiny_model, ids, key_valid)
        shared.share_prefix(rows_of_prompt, key_valid)
        copied, _ = _prefill(tiny_model, ids, key_valid)
        copied.select(rows_of_prompt)
        valid = key_valid[rows_of_prompt]
        alive = torch.arange(len(rows_of_prompt))
        layouts = []
        for t, tokens in enumerate(steps):
            step = tokens[alive].unsqueeze(1)
            mask = torch.cat([valid, torch.ones(len(alive), copied.length + 1 - width, dtype=torch.bool)], 1)
            expected = tiny_model(step, cache=copied, attn_mask=mask[:, None, None, :])[:, -1]
            got = tiny_model(step, cache=shared)[:, -1]
            assert torch.allclose(got, expected, atol=1e-5), f"step {t}"
            assert shared.length == copied.length
            layouts.append(shared.prefix.uniform)
            if t in drop_after:
                keep = drop_after[t]
                shared.select(keep)
                copied.select(keep)
                valid, alive = valid[keep], alive[keep]
    assert layouts == [True] * 3 + [False] * 2 + [True]  # 3/3/3 rows, 2/2/1 (ragged), 1/1/1


def test_a_shared_prefix_refuses_what_it_cannot_do(tiny_model):
    ids = torch.randint(0, tiny_model.config.vocab_size, (2, 4))
    cache = KVCache(tiny_model.config.n_layers)
    with torch.no_grad():
        tiny_model(ids, cache=cache)
    with pytest.raises(ValueError, match="grouped by prompt"):
        cache.share_prefix(torch.tensor([1, 0]))
    assert cache.prefix is None and cache.length == 4  # a refused call leaves the cache as it was
    cache.share_prefix(torch.tensor([0, 0, 1]))
    with pytest.raises(ValueError, match="already has a shared prefix"):
        cache.share_prefix(torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="one new token per row"):
        tiny_model(torch.zeros(3, 2, dtype=torch.long), cache=cache)
    with pytest.raises(ValueError, match="grouped by prompt"):
        cache.select(torch.tensor([2, 0]))


def test_training_still_works_after_decoding_grew_the_rotary_tables():
    torch.manual_seed(0)
    model = ReasoningLM(ReasoningConfig(vocab_size=20, d_model=16, n_layers=1, n_heads=2, max_len=8))
    ids = torch.randint(0, 20, (2, 6))
    with torch.inference_mode():  # a left-padded batch may run past max_len: the tables grow here
        cache = KVCache(1, capacity=12)
        model(torch.randint(0, 20, (2, 11)), cache=cache)
    assert model.rope_cos.shape[0] >= 11
    model.train()
    loss = model(ids).float().logsumexp(-1).mean()
    loss.backward()  # would fail if the grown tables were inference tensors
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
