"""The OpenAI-compatible backend: clear errors for unreachable endpoints, keys never shown, answer parsing."""

from __future__ import annotations

import socket
import time

import pytest

from reasoning import DesignSpec, Proposer
from reasoning.backends import load_backend
from reasoning.backends.openai import EndpointError, OpenAIReasoner, extract_smiles


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed again when the block ends: nothing listens there


def test_unreachable_endpoint_fails_fast_with_a_clear_message(monkeypatch):
    monkeypatch.setenv("RSN_TEST_KEY", "sk-very-secret")
    reasoner = OpenAIReasoner(
        f"http://127.0.0.1:{_closed_port()}/v1", model="m", api_key_env="RSN_TEST_KEY", retries=2, backoff_s=0.05
    )
    start = time.time()
    with pytest.raises(EndpointError) as err:
        reasoner.generate("<spec> </spec>", 2)
    assert time.time() - start < 10
    message = str(err.value)
    assert "could not reach" in message and "3 attempt" in message and "/v1/chat/completions" in message
    assert "sk-very-secret" not in message and "sk-very-secret" not in repr(reasoner)


def test_proposer_surfaces_the_endpoint_error():
    reasoner = load_backend("openai", base_url=f"http://127.0.0.1:{_closed_port()}/v1", model="m", retries=0)
    with pytest.raises(EndpointError):
        Proposer(reasoner, rounds=1).propose(DesignSpec(), n=1)


def test_bad_base_url_is_rejected():
    with pytest.raises(ValueError, match="http"):
        OpenAIReasoner("127.0.0.1:8000", model="m")


def test_answer_extraction():
    assert extract_smiles("think... <smiles>c1ccccc1</smiles> then <SMILES> CCO </SMILES>") == "CCO"
    assert extract_smiles("no answer here") == ""
    assert extract_smiles("") == ""
