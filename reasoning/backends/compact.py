"""The compact reasoning model shipped in ``reasoning/checkpoints/compact``, decoded with RDKit constraints.

>>> from reasoning.backends.compact import default_checkpoint
>>> default_checkpoint().name
'compact'
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from reasoning.backends import torch_threads
from reasoning.decoding import GeneratedText, SmilesBounds, generate, generate_many, prompt_width
from reasoning.model import ReasoningLM
from reasoning.tokenizer import ReasoningTokenizer
from reasoning.traces import restate_prefix
from workbench.errors import CheckpointError
from workbench.parallel import contiguous_parts, fork_map

__all__ = ["CompactReasoner", "default_checkpoint"]


def default_checkpoint() -> Path:
    """Where the shipped checkpoint lives (inside the installed package)."""
    return Path(__file__).resolve().parent.parent / "checkpoints" / "compact"


class CompactReasoner:
    """Samples traces and SMILES from a :class:`ReasoningLM` checkpoint folder.

    ``temperature``/``top_p`` tie-break among the tokens the constraints allow. ``threads`` is the number
    of torch threads used while generating (one is fastest for a model this small; the previous setting
    is restored afterwards; ``None`` leaves torch's setting alone). ``workers`` is the default number of
    processes :meth:`generate_many` decodes in (see there).

    With ``ground_restate`` (the default) the first reasoning step, the restatement of the constraints,
    is written from the prompt's spec instead of sampled: it is a copy by definition, so the trace
    always restates the request truly and the model spends its samples on the design steps.
    With ``ground_estimates`` the running estimates after each build step are computed with RDKit from
    the partial molecule (:mod:`reasoning.grounding`) rather than sampled. It is off by default: on the
    benchmark it moved satisfaction by no more than the sampling noise and cost about 14% of the rate.
    With ``answer_from_build`` (the default) the answer is the molecule the trace built, its scaffold with
    every added fragment bonded on, whenever that is valid and within the constraints; the SMILES is
    decoded only when it is not (:func:`reasoning.decoding.generate_many`). The compact model's own final
    SMILES is mostly not the molecule it reasoned about, and the build meets the spec more often.
    With ``place_by_spec`` (the default) RDKit also chooses where the build's fragments sit on its scaffold,
    the placement meeting the most of the prompt's spec (:mod:`reasoning.placement`), instead of the first
    scaffold atom with room: the model chooses the scaffold and the fragments, not their positions.
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
        ground_estimates: bool = False,
        answer_from_build: bool = True,
        place_by_spec: bool = True,
        workers: int = 1,
    ):
        _check_workers(workers)
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
        self.ground_estimates = ground_estimates
        self.answer_from_build = answer_from_build
        self.place_by_spec = place_by_spec
        self.workers = workers

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
            ground_estimates=self.ground_estimates,
            answer_from_build=self.answer_from_build,
            place_by_spec=self.place_by_spec,
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
        workers: int | None = None,
        judge: Callable[[int, list[GeneratedText]], Any] | None = None,
    ) -> list[list[GeneratedText]] | list[tuple[list[GeneratedText], Any]]:
        """``n`` samples for each of several prompts in one batch (faster than one call per prompt).

        ``workers`` (default: the reasoner's) > 1 splits the prompts into that many contiguous parts,
        each decoded in its own forked process with one torch thread (Linux; the processes inherit the
        model, nothing is copied to them): decoding is mostly single-threaded Python, so this is how one
        batch uses several cores. Every prompt samples from its own stream of ``seed`` and its place in
        the batch, and each part is padded as the whole batch, so the samples are the same for any
        ``workers``. A batch of fewer prompts than ``workers`` uses one process per prompt (a single
        prompt decodes in this process, as :meth:`generate` does); where fork is missing, everything
        runs in this process (with a warning). An error in a worker is raised here.

        ``judge(i, samples)``, when given, is called on the samples of prompt ``i`` (its index in
        ``prompts``) in the process that decoded them, so checking the answers (validation, ``spec.check``)
        runs on every worker too. The call then returns ``(samples, judge(i, samples))`` per prompt; the
        judge's results must be picklable when ``workers`` > 1.
        """
        workers = self.workers if workers is None else workers
        _check_workers(workers)
        n_prompts = len(prompts)
        elements = list(elements) if elements is not None else [None] * n_prompts
        bounds = list(bounds) if bounds is not None else [None] * n_prompts
        for name, values in (("elements", elements), ("bounds", bounds)):
            if len(values) != n_prompts:
                raise ValueError(f"{len(values)} {name} entries for {n_prompts} prompts; give one per prompt")
        prefixes = [self._prefix(p) for p in prompts]
        parts = _split(n_prompts, workers)
        if len(parts) == 1:
            task = _Task(list(prompts), n, seed, elements, constrained, bounds, prefixes, None, judge)
            with torch_threads(self.threads):
                return self._decode_part(task, parts[0])
        width = prompt_width(self.tokenizer, prompts, prefixes)  # every part is padded as the whole batch
        task = _Task(list(prompts), n, seed, elements, constrained, bounds, prefixes, width, judge)
        chunks = _run_forked(self, task, parts)
        return [samples for chunk in chunks for samples in chunk]

    def _decode_part(self, task: _Task, part: range) -> list:
        """Decode (and judge, if asked) the prompts ``part`` of ``task`` (all of them, or one part of a split batch)."""
        decoded = generate_many(
            self.model,
            self.tokenizer,
            task.prompts[part.start : part.stop],
            task.n,
            constrained=task.constrained,
            elements=task.elements[part.start : part.stop],
            temperature=self.temperature,
            top_p=self.top_p,
            max_trace_tokens=self.max_trace_tokens,
            max_smiles_tokens=self.max_smiles_tokens,
            seed=task.seed,
            trace_prefixes=task.prefixes[part.start : part.stop],
            bounds=task.bounds[part.start : part.stop],
            width=task.width,
            first_prompt=part.start,
            ground_estimates=self.ground_estimates,
            answer_from_build=self.answer_from_build,
            place_by_spec=self.place_by_spec,
        )
        if task.judge is None:
            return decoded
        return [(samples, task.judge(i, samples)) for i, samples in zip(part, decoded, strict=True)]


def _check_workers(workers: object) -> None:
    if isinstance(workers, bool) or not isinstance(workers, int) or workers <= 0:
        raise ValueError(f"workers must be a positive integer number of processes, got {workers!r}")


@dataclass(frozen=True)
class _Task:
    """One generate_many call, as every part of it sees it."""

    prompts: list[str]
    n: int
    seed: int
    elements: list[list[str] | None]
    constrained: bool
    bounds: list[SmilesBounds | None]
    prefixes: list[str]
    width: int | None  # the whole batch's padded width when it is split (None: the part's own)
    judge: Callable[[int, list[GeneratedText]], Any] | None = None  # run on each prompt's samples where decoded


def _split(n_prompts: int, workers: int) -> list[range]:
    """Contiguous parts of ``range(n_prompts)``, one per worker (at most one per prompt; one without fork)."""
    return contiguous_parts(n_prompts, workers, what="decoding", stacklevel=4)


def _decode_forked(state: tuple[CompactReasoner, _Task], part: range) -> list:
    torch.set_num_threads(1)
    reasoner, task = state
    return reasoner._decode_part(task, part)


def _run_forked(reasoner: CompactReasoner, task: _Task, parts: list[range]) -> list[list]:
    """Decode the parts in forked processes that inherit the reasoner (no copy of the weights is sent)."""
    return fork_map(_decode_forked, (reasoner, task), parts, what="decoding worker")
