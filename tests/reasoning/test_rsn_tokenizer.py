"""Tokenizer: lossless round trips over real specs and traces; safe, checked persistence."""

from __future__ import annotations

import pytest

from reasoning.tokenizer import ReasoningTokenizer, smiles_tokens
from reasoning.train.sft import example_text
from workbench.errors import CheckpointError


def test_round_trip_on_real_traces(trace_records, tokenizer):
    assert len(trace_records) >= 60
    for record in trace_records:
        text = example_text(record)
        ids = tokenizer.encode(text, bos=True, eos=True)
        assert tokenizer.unk_id not in ids
        assert tokenizer.decode(ids, skip_special=True) == text


def test_smiles_regex_keeps_bracket_atoms_and_two_digit_rings():
    assert smiles_tokens("C%12CC[N+](=O)[O-]Cl") == ["C", "%12", "C", "C", "[N+]", "(", "=", "O", ")", "[O-]", "Cl"]


def test_unknown_symbols_become_unk(tokenizer):
    ids = tokenizer.encode("<spec> require [Xe] </spec>")
    assert tokenizer.unk_id in ids


def test_save_load_and_corrupt_file(tmp_path, tokenizer):
    tokenizer.save(tmp_path)
    again = ReasoningTokenizer.load(tmp_path)
    assert again.tokens == tokenizer.tokens
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="tokenizer.json"):
        ReasoningTokenizer.load(tmp_path)
    with pytest.raises(CheckpointError, match="missing"):
        ReasoningTokenizer.load(tmp_path / "nowhere")
