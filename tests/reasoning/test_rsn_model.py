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
