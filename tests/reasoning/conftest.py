"""Shared fixtures: real teacher traces and a tiny untrained model over their vocabulary."""

from __future__ import annotations

import pytest
import torch

from reasoning.model import ReasoningConfig, ReasoningLM
from reasoning.tokenizer import ReasoningTokenizer
from reasoning.traces import iter_traces
from reasoning.train.sft import example_text
from workbench.data import load_corpus

torch.set_num_threads(1)  # tiny models: one thread is fastest, and the machine is shared


@pytest.fixture(scope="session")
def trace_records() -> list[dict]:
    smiles = load_corpus("chembl-drugs", limit=40) + load_corpus("nci-5k", limit=80)
    return list(iter_traces(smiles, seed=3, feedback_rate=0.3))


@pytest.fixture(scope="session")
def tokenizer(trace_records) -> ReasoningTokenizer:
    return ReasoningTokenizer.build((example_text(r) for r in trace_records), min_count=1)


@pytest.fixture()
def tiny_model(tokenizer) -> ReasoningLM:
    torch.manual_seed(0)
    return ReasoningLM(ReasoningConfig(vocab_size=len(tokenizer), d_model=32, n_layers=2, n_heads=4, max_len=400))
