"""The compact reasoning model shipped in ``reasoning/checkpoints/compact``, decoded with RDKit constraints.

>>> from reasoning.backends.compact import default_checkpoint
>>> default_checkpoint().name
'compact'
"""

from __future__ import annotations

from pathlib import Path

from reasoning.backends import torch_threads
from reasoning.decoding import GeneratedText, SmilesBounds, generate, generate_many
from reasoning.model import ReasoningLM
from reasoning.tokenizer import ReasoningTokenizer
from reasoning.traces import restate_prefix
from workbench.errors import CheckpointError

__all__ = ["CompactReasoner", "default_checkpoint"]


def default_checkpoint() -> Path:
    """Where the shipped checkpoint lives (inside the installed package)."""
    return Path(__file__).resolve().parent.parent / "checkpoints" / "compact"


class CompactReasoner:
    """Samples traces and SMILES from a :class:`ReasoningLM` checkpoint folder.

    ``temperature``/``top_p`` tie-break among the tokens the constraints allow. ``threads`` is the number
    of torch threads used while generating (one is fastest for a model this small; the previous setting
    is restored afterwards; ``None`` leaves torch's setting alone).

    With ``ground_restate`` (the default) the first reasoning step, the restatement of the constraints,
    is written from the prompt's spec instead of sampled: it is a copy by definition, so the trace
    always restates the request truly and the model spends its samples on the design steps.
    """

    name = "compact"

    def __init__(
        self,
        model: ReasoningLM,
        tokenizer: ReasoningTokenizer,
        *,
        temperature: float = 0.9,
        top_p: float = 0.95,
        max_trace_tokens: int = 260,
        max_smiles_tokens: int = 80,
        threads: int | None = 1,
        ground_restate: bool = True,
    ):
        if len(tokenizer) != model.config.vocab_size:
            raise CheckpointError(
                "tokenizer.json", f"{len(tokenizer)} tokens but the model expects {model.config.vocab_size}"
            )
        self.model = model
        self.tokenizer = tokenizer
        self.temperature = temperature
        self.top_p = top_p
        self.max_trace_tokens = max_trace_tokens
        self.max_smiles_tokens = max_smiles_tokens
        self.threads = threads
        self.ground_restate = ground_restate

    @classmethod
    def from_pretrained(cls, folder: str | Path | None = None, **options) -> CompactReasoner:
        """Load a checkpoint folder (default: the shipped one); raises CheckpointError naming the path."""
        folder = Path(folder) if folder is not None else default_checkpoint()
        if not (folder / "model.safetensors").exists():
            raise CheckpointError(folder, "no trained reasoning model here; train one with `make train-reasoning-sft`")
        model = ReasoningLM.from_pretrained(folder)
        tokenizer = ReasoningTokenizer.load(folder)
        return cls(model, tokenizer, **options)

    def generate(
        self,
        prompt: str,
        n: int,
        *,
        seed: int = 0,
        elements: list[str] | None = None,
        constrained: bool = True,
        bounds: SmilesBounds | None = None,
    ) -> list[GeneratedText]:
        """``n`` samples for ``prompt``; with ``constrained`` every SMILES is a valid molecule (within
        ``bounds``, the spec's size and ring limits, when given)."""
        with torch_threads(self.threads):
            return self._generate(prompt, n, seed=seed, elements=elements, constrained=constrained, bounds=bounds)

    def _generate(
        self,
        prompt: str,
        n: int,
        *,
        seed: int,
        elements: list[str] | None,
        constrained: bool,
        bounds: SmilesBounds | None = None,
    ) -> list[GeneratedText]:
        return generate(
            self.model,
            self.tokenizer,
            prompt,
            n,
            constrained=constrained,
            elements=elements,
            temperature=self.temperature,
            top_p=self.top_p,
            max_trace_tokens=self.max_trace_tokens,
            max_smiles_tokens=self.max_smiles_tokens,
            seed=seed,
            trace_prefix=self._prefix(prompt),
            bounds=bounds,
        )

    def _prefix(self, prompt: str) -> str:
        return restate_prefix(prompt) if self.ground_restate else ""

    def generate_many(
        self,
        prompts: list[str],
        n: int,
        *,
        seed: int = 0,
        elements: list[list[str] | None] | None = None,
        constrained: bool = True,
        bounds: list[SmilesBounds | None] | None = None,
    ) -> list[list[GeneratedText]]:
        """``n`` samples for each of several prompts in one batch (faster than one call per prompt)."""
        with torch_threads(self.threads):
            return generate_many(
                self.model,
                self.tokenizer,
                prompts,
                n,
                constrained=constrained,
                elements=elements,
                temperature=self.temperature,
                top_p=self.top_p,
                max_trace_tokens=self.max_trace_tokens,
                max_smiles_tokens=self.max_smiles_tokens,
                seed=seed,
                trace_prefixes=[self._prefix(p) for p in prompts],
                bounds=bounds,
            )
