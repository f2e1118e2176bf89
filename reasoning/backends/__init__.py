"""Backends: where proposals come from. Each is one file and follows the :class:`Reasoner` protocol.

- :class:`~reasoning.backends.compact.CompactReasoner`: the shipped compact model, with RDKit-constrained
  decoding (the default).
- :class:`~reasoning.backends.openai.OpenAIReasoner`: any OpenAI-compatible chat endpoint (no logits, so
  validity comes from the repair loop).
- :class:`~reasoning.backends.transformers.TransformersReasoner`: any local Hugging Face causal LM folder,
  with the same constraints applied as a logits processor.

>>> from reasoning.backends import BACKENDS
>>> sorted(BACKENDS)
['compact', 'openai', 'transformers']
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol, runtime_checkable

import torch

from reasoning.decoding import GeneratedText, SmilesBounds

__all__ = ["Reasoner", "BACKENDS", "load_backend", "torch_threads"]


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run with ``threads`` torch threads (``None`` or 0: leave torch's setting), restoring it afterwards."""
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@runtime_checkable
class Reasoner(Protocol):
    """Something that writes ``n`` reasoning traces and SMILES answers for a prompt."""

    name: str

    def generate(
        self,
        prompt: str,
        n: int,
        *,
        seed: int = 0,
        elements: list[str] | None = None,
        constrained: bool = True,
        bounds: SmilesBounds | None = None,
    ) -> list[GeneratedText]:  # pragma: no cover - protocol
        ...


def _compact(**options) -> Reasoner:
    from reasoning.backends.compact import CompactReasoner

    return CompactReasoner.from_pretrained(options.pop("checkpoint", None), **options)


def _openai(**options) -> Reasoner:
    from reasoning.backends.openai import OpenAIReasoner

    return OpenAIReasoner(**options)


def _transformers(**options) -> Reasoner:
    from reasoning.backends.transformers import TransformersReasoner

    return TransformersReasoner.from_pretrained(options.pop("folder"), **options)


BACKENDS = {"compact": _compact, "openai": _openai, "transformers": _transformers}


def load_backend(name: str, **options) -> Reasoner:
    """A backend by name (``"compact"``, ``"openai"``, ``"transformers"``); options go to its constructor
    (``folder=`` names the model folder of ``"transformers"``)."""
    try:
        factory = BACKENDS[name]
    except KeyError:
        raise ValueError(f"unknown reasoning backend {name!r}; available: {', '.join(sorted(BACKENDS))}") from None
    return factory(**options)
