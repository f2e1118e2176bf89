"""Any local Hugging Face causal LM folder as a reasoning backend, with RDKit-constrained decoding.

The folder holds what ``save_pretrained`` writes: ``config.json``, the tokenizer files and
``model.safetensors``. It is read with ``local_files_only=True`` (nothing is ever downloaded) and only
safetensors weights are accepted; a missing or unreadable folder raises
:class:`~workbench.errors.CheckpointError` naming the path.

Sampling uses ``model.generate(do_sample=True)``. With ``constrained=True`` a
:class:`SmilesLogitsProcessor` watches every row of the batch:

- in the reasoning trace the model writes freely, except that it may not end the text or close an
  answer it has not opened, and after ``max_trace_tokens`` the ``<smiles>`` tag is forced (piece by
  piece if the tokenizer has no single token for it);
- inside ``<smiles>`` only vocabulary entries whose text is a run of SMILES grammar tokens are
  candidates (found once per tokenizer). They are checked in logit order against a copy of the row's
  :class:`~reasoning.decoding.SmilesGrammarState` (with the spec's ``elements`` and
  :class:`~reasoning.decoding.SmilesBounds`): every grammar token must be allowed and the prefix must stay
  completable. The first ``max_candidates`` that pass stay, every other token is masked. The end of the
  answer (a token starting ``</smiles>``, whitespace, or EOS) is allowed only when the molecule can end.
  Near the length limit, or when nothing passes, the greedy completion of the prefix is written out
  and the closing tag forced, as the compact model's decoder does.

So every constrained answer is a valid molecule. ``constrained=False`` samples the answer with no mask
(the trace cap still applies), for comparison.

>>> "</smiles>".startswith(_closing_prefix(" </sm"))
True
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LogitsProcessor, LogitsProcessorList

from reasoning.backends import torch_threads
from reasoning.decoding import MAX_VALENCE, GeneratedText, SmilesBounds, SmilesGrammarState
from reasoning.tokenizer import smiles_tokens
from workbench.errors import CheckpointError

__all__ = ["TransformersReasoner", "SmilesLogitsProcessor", "SmilesVocabulary"]

SMILES_OPEN = "<smiles>"
SMILES_CLOSE = "</smiles>"
GRAMMAR_TOKENS = frozenset(MAX_VALENCE) | frozenset("-=#()123456789")
_SPACE = " \t\r\n"
_MAX_LEADING_SPACES = 2  # whitespace tokens allowed between <smiles> and the first atom


def _closing_prefix(text: str) -> str | None:
    """The part of ``</smiles>`` a token's text starts (after leading whitespace), or None."""
    body = text.lstrip(_SPACE)
    if not body:
        return None
    if body.startswith(SMILES_CLOSE):
        return SMILES_CLOSE
    return body if SMILES_CLOSE.startswith(body) else None


class SmilesVocabulary:
    """What every vocabulary entry of a tokenizer means to the SMILES grammar (built once per tokenizer).

    ``pieces[id]`` is the grammar-token split of a pure SMILES entry and ``leading_space`` the ids whose
    text starts with whitespace (allowed only before the first atom); ``spaces`` are whitespace-only
    entries; ``closing[id]`` is how much of ``</smiles>`` an entry writes; ``eos`` the end-of-text ids.
    """

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        size = len(tokenizer)
        ids = list(range(size))
        texts = tokenizer.batch_decode(
            [[i] for i in ids], skip_special_tokens=False, clean_up_tokenization_spaces=False
        )
        raw = tokenizer.convert_ids_to_tokens(ids)
        self.pieces: dict[int, tuple[str, ...]] = {}
        self.leading_space: set[int] = set()
        self.spaces: list[int] = []
        self.closing: dict[int, str] = {}
        self.open_overflow: list[int] = []  # entries that open the answer and write more after the tag
        for i, (text, token) in enumerate(zip(texts, raw, strict=True)):
            if not text:
                continue
            if not text.strip(_SPACE):
                self.spaces.append(i)
                continue
            spaced = text[0] in _SPACE or (isinstance(token, str) and token[:1] in ("\u2581", "\u0120"))
            body = text.strip(_SPACE)
            split = smiles_tokens(body)
            if (
                body == text.lstrip(_SPACE)
                and split
                and "".join(split) == body
                and all(t in GRAMMAR_TOKENS for t in split)
            ):
                self.pieces[i] = tuple(split)
                if spaced:
                    self.leading_space.add(i)
                continue
            closing = _closing_prefix(text)
            if closing is not None:
                self.closing[i] = closing
            if SMILES_OPEN in text and text.split(SMILES_OPEN, 1)[1].strip(_SPACE):
                self.open_overflow.append(i)
        self.eos: list[int] = sorted(_eos_ids(tokenizer))
        self.open_ids = self.encode(SMILES_OPEN)
        self.open_single = self.open_ids[0] if len(self.open_ids) == 1 else None
        self.close_ids = self.encode(SMILES_CLOSE)
        self.candidates = torch.tensor(sorted(set(self.pieces) | set(self.spaces) | set(self.closing) | set(self.eos)))
        # in the trace: no end of text, no closing tag (a piece of one is harmless), no text glued to <smiles>
        closes = {i for i, c in self.closing.items() if c == SMILES_CLOSE}
        self.trace_banned = torch.tensor(sorted(closes | set(self.eos) | set(self.open_overflow)), dtype=torch.long)
        self._piece_ids: dict[str, list[int]] = {}
        for i, split in self.pieces.items():
            if len(split) == 1 and i not in self.leading_space:
                self._piece_ids.setdefault(split[0], [i])

    def encode(self, text: str) -> list[int]:
        """Token ids that write ``text`` (one id when the vocabulary has it whole)."""
        direct = self.tokenizer.convert_tokens_to_ids(text)
        unk = self.tokenizer.unk_token_id
        if isinstance(direct, int) and direct != unk and direct is not None:
            return [direct]
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def piece_ids(self, piece: str) -> list[int]:
        """Token ids that write one grammar token (for forced completions)."""
        if piece not in self._piece_ids:
            self._piece_ids[piece] = self.encode(piece)
        return self._piece_ids[piece]


def _eos_ids(tokenizer) -> set[int]:
    ids = set()
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    return ids


_VOCAB_CACHE: dict[int, SmilesVocabulary] = {}


def smiles_vocabulary(tokenizer) -> SmilesVocabulary:
    """The :class:`SmilesVocabulary` of a tokenizer (computed once and cached)."""
    key = id(tokenizer)
    cached = _VOCAB_CACHE.get(key)
    if cached is None or cached.tokenizer is not tokenizer:
        cached = _VOCAB_CACHE[key] = SmilesVocabulary(tokenizer)
    return cached


@dataclass
class _Forced:
    token_id: int
    pieces: tuple[str, ...] = ()
    action: str = ""  # "enter" (answer opened), "end" (answer closed), "done" (end of text)


@dataclass
class _Row:
    state: SmilesGrammarState
    phase: str = "trace"  # trace -> smiles -> closing -> done
    trace_tokens: int = 0
    smiles_tokens: int = 0
    spaces: int = 0
    pieces: list[str] = field(default_factory=list)
    queue: list[_Forced] = field(default_factory=list)
    expecting: _Forced | None = None
    trials: dict[int, SmilesGrammarState] = field(default_factory=dict)
    forced: bool = False


class SmilesLogitsProcessor(LogitsProcessor):
    """Per-row SMILES constraints for ``model.generate`` (see the module docstring).

    One instance serves one ``generate`` call: it keeps every row's grammar state between steps.
    After generation, :meth:`finish` reads the last sampled tokens and gives each row's answer.
    """

    def __init__(
        self,
        vocab: SmilesVocabulary,
        prompt_length: int,
        n_rows: int,
        *,
        elements: list[str] | None = None,
        bounds: SmilesBounds | None = None,
        constrained: bool = True,
        max_trace_tokens: int = 300,
        max_smiles_tokens: int = 100,
        max_candidates: int = 32,
    ):
        self.vocab = vocab
        self.prompt_length = prompt_length
        self.constrained = constrained
        self.max_trace_tokens = max_trace_tokens
        self.max_smiles_tokens = max_smiles_tokens
        self.max_candidates = max_candidates
        allowed = set(elements) if elements else None
        self.rows = [_Row(SmilesGrammarState(elements=allowed, bounds=bounds)) for _ in range(n_rows)]
        self.seen = prompt_length

    # ------------------------------------------------------------------ bookkeeping
    def _advance(self, input_ids: torch.LongTensor) -> None:
        """Apply the tokens sampled since the last call to every row's state."""
        length = input_ids.shape[1]
        for position in range(self.seen, length):
            column = input_ids[:, position].tolist()
            for r, row in enumerate(self.rows):
                self._apply(row, int(column[r]), input_ids[r, self.prompt_length : position + 1])
        self.seen = length

    def _apply(self, row: _Row, token_id: int, generated: torch.Tensor) -> None:
        if row.phase == "done":
            return
        if row.expecting is not None:
            forced, row.expecting = row.expecting, None
            if forced.pieces:
                for piece in forced.pieces:
                    row.state.push(piece)
                row.pieces.extend(forced.pieces)
                row.smiles_tokens += 1
            if forced.action == "enter":
                row.phase = "smiles"
            elif forced.action == "end":
                row.phase = "closing"
            elif forced.action == "done":
                row.phase = "done"
            return
        if token_id in self.vocab.eos:
            row.phase = "done"
            return
        if row.phase == "trace":
            row.trace_tokens += 1
            if self.vocab.open_single is not None:
                entered = token_id == self.vocab.open_single
            else:
                text = self.vocab.tokenizer.decode(generated.tolist(), skip_special_tokens=False)
                entered = SMILES_OPEN in text
            if entered:
                row.phase = "smiles"
            return
        if row.phase != "smiles":
            return
        row.smiles_tokens += 1
        if not self.constrained:
            if token_id in self.vocab.closing:
                row.phase = "closing"
            return
        trial = row.trials.get(token_id)
        row.trials = {}
        if trial is not None:
            row.state = trial
            row.pieces.extend(self.vocab.pieces[token_id])
        elif token_id in self.vocab.spaces:
            if row.state.element:
                self._queue_end(row, SMILES_CLOSE)
            else:
                row.spaces += 1
        elif token_id in self.vocab.closing:
            self._queue_end(row, SMILES_CLOSE[len(self.vocab.closing[token_id]) :])

    def _queue_end(self, row: _Row, rest: str) -> None:
        """After the answer's last token: write the rest of the closing tag, then end the text."""
        ids = self.vocab.encode(rest) if rest else []
        if ids:
            row.queue.extend(_Forced(i, action="end" if k == len(ids) - 1 else "") for k, i in enumerate(ids))
        else:
            row.phase = "closing"
        if self.vocab.eos:
            row.queue.append(_Forced(self.vocab.eos[0], action="done"))

    # ------------------------------------------------------------------ masking
    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        self._advance(input_ids)
        out = scores.clone()
        for r, row in enumerate(self.rows):
            if row.phase == "done":
                continue
            if not row.queue:
                self._plan(row)
            if row.queue:
                forced = row.queue.pop(0)
                row.expecting = forced
                out[r] = float("-inf")
                out[r, forced.token_id] = 0.0
                continue
            if row.phase == "trace":
                if len(self.vocab.trace_banned):
                    out[r, self.vocab.trace_banned] = float("-inf")
            elif row.phase == "smiles" and self.constrained:
                out[r] = self._mask_smiles(row, scores[r])
        return out

    def _plan(self, row: _Row) -> None:
        """Queue forced tokens when a limit is reached (trace cap, answer length, nothing allowed)."""
        if row.phase == "trace" and row.trace_tokens >= self.max_trace_tokens:
            ids = self.vocab.open_ids
            row.queue.extend(_Forced(i, action="enter" if k == len(ids) - 1 else "") for k, i in enumerate(ids))
        elif row.phase == "smiles" and not self.constrained and row.smiles_tokens >= self.max_smiles_tokens:
            self._queue_end(row, " " + SMILES_CLOSE)
        elif row.phase == "smiles" and self.constrained:
            state = row.state
            worst = 3 * len(state.open_rings) + len(state.branches) + 2
            if state.element and state.n_tokens + worst + 3 >= self.max_smiles_tokens:
                self._complete(row)

    def _complete(self, row: _Row) -> None:
        """Write the greedy completion of the prefix, then close the answer."""
        completion = row.state.completion() or []
        if completion:
            row.forced = True
        for piece in completion:
            ids = self.vocab.piece_ids(piece)
            row.queue.extend(_Forced(i, (piece,) if k == 0 else ()) for k, i in enumerate(ids))
        if row.state.can_end() or completion:
            self._queue_end(row, " " + SMILES_CLOSE)

    def _mask_smiles(self, row: _Row, scores: torch.Tensor) -> torch.Tensor:
        vocab = self.vocab
        state = row.state
        candidates = vocab.candidates
        order = candidates[torch.argsort(scores[candidates], descending=True, stable=True)].tolist()
        keep: list[int] = []
        ends: list[int] = []
        deferred: list[int] = []
        trials: dict[int, SmilesGrammarState] = {}
        may_end = state.can_end()
        for token_id in order:
            if len(keep) >= self.max_candidates:
                break
            pieces = vocab.pieces.get(token_id)
            if pieces is None:
                if not state.element:
                    if token_id in vocab.spaces and row.spaces < _MAX_LEADING_SPACES:
                        keep.append(token_id)
                elif may_end:
                    ends.append(token_id)
                continue
            if token_id in vocab.leading_space and state.n_tokens:
                continue
            if not state.allows(pieces[0]):
                continue
            trial = state.copy()
            ok = True
            for piece in pieces:
                if not trial.allows(piece):
                    ok = False
                    break
                trial.push(piece)
            if not ok or not trial.completable():
                continue
            trials[token_id] = trial
            if trial.stalls_below_minimum():
                deferred.append(token_id)  # a dead end below the spec's minimum size: only if nothing else
                continue
            keep.append(token_id)
        grammar = [i for i in keep if i in trials]
        if may_end and (state.meets_minimums() or not grammar):
            keep += ends[: max(1, self.max_candidates - len(keep))]
        if not keep:
            keep = deferred
        row.trials = {i: trials[i] for i in keep if i in trials}
        masked = torch.full_like(scores, float("-inf"))
        if keep:
            index = torch.tensor(keep)
            values = scores[index]
            masked[index] = torch.where(torch.isfinite(values), values, torch.zeros_like(values))
            return masked
        # nothing passes: write the greedy completion (or end) instead
        self._complete(row)
        if row.queue:
            forced = row.queue.pop(0)
            row.expecting = forced
            masked[forced.token_id] = 0.0
            return masked
        return scores

    # ------------------------------------------------------------------ results
    def finish(self, sequences: torch.LongTensor) -> list[tuple[str, bool]]:
        """Each row's SMILES as the grammar state tracked it, and whether its end was forced."""
        self._advance(sequences)
        out = []
        for row in self.rows:
            smiles = "".join(row.pieces)
            if self.constrained and not row.state.can_end():  # stopped early: finish the molecule here
                completion = row.state.completion() or []
                smiles += "".join(completion)
                row.forced = True
            out.append((smiles, row.forced))
        return out


class TransformersReasoner:
    """Samples traces and SMILES from a local Hugging Face causal LM (see the module docstring).

    ``temperature``/``top_p`` shape the sampling; ``max_trace_tokens`` caps the reasoning (then
    ``<smiles>`` is forced) and ``max_smiles_tokens`` the answer, in SMILES grammar tokens;
    ``max_new_tokens`` (default: enough for both) is the hard cap passed to ``generate``.
    ``max_candidates`` is how many allowed tokens are kept per step inside the answer. ``threads`` is the
    number of torch threads while generating (restored afterwards; ``None`` leaves torch alone).
    """

    name = "transformers"

    def __init__(
        self,
        model,
        tokenizer,
        *,
        temperature: float = 0.9,
        top_p: float = 0.95,
        max_trace_tokens: int = 300,
        max_smiles_tokens: int = 100,
        max_new_tokens: int | None = None,
        max_candidates: int = 32,
        threads: int | None = 1,
        folder: str | Path | None = None,
    ):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.temperature = temperature
        self.top_p = top_p
        self.max_smiles_tokens = max_smiles_tokens
        self.max_candidates = max_candidates
        self.threads = threads
        self.folder = folder
        self.vocab = smiles_vocabulary(tokenizer)
        overhead = len(self.vocab.open_ids) + len(self.vocab.close_ids) + _MAX_LEADING_SPACES + 48
        if max_new_tokens is None:
            max_new_tokens = max_trace_tokens + max_smiles_tokens + overhead
        self.max_new_tokens = max_new_tokens
        self.max_trace_tokens = min(max_trace_tokens, max(0, max_new_tokens - max_smiles_tokens - overhead))

    def __repr__(self) -> str:
        return f"TransformersReasoner(folder={str(self.folder)!r})"

    @classmethod
    def from_pretrained(cls, folder: str | Path, **options) -> TransformersReasoner:
        """Load tokenizer and model from a local folder (never downloads; safetensors weights only)."""
        path = Path(folder)
        if not path.is_dir():
            raise CheckpointError(
                path,
                "no such folder; give the path of a local Hugging Face model folder "
                "(config.json, tokenizer files, model.safetensors) written by save_pretrained",
            )
        if not (path / "config.json").is_file():
            raise CheckpointError(path, "no config.json here; is this a folder written by save_pretrained?")
        try:
            tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
            model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, use_safetensors=True)
        except Exception as exc:  # corrupt JSON, truncated weights, unknown architecture...
            detail = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
            raise CheckpointError(
                path,
                f"could not load the tokenizer and model ({type(exc).__name__}: {detail}); "
                "save a complete model here with save_pretrained(..., safe_serialization=True)",
            ) from exc
        if len(tokenizer) > model.get_input_embeddings().num_embeddings:
            raise CheckpointError(
                path, f"tokenizer has {len(tokenizer)} tokens but the model only {model.config.vocab_size}"
            )
        return cls(model, tokenizer, folder=path, **options)

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

    @torch.no_grad()
    def _generate(
        self,
        prompt: str,
        n: int,
        *,
        seed: int,
        elements: list[str] | None,
        constrained: bool,
        bounds: SmilesBounds | None,
    ) -> list[GeneratedText]:
        tokenizer = self.tokenizer
        encoded = tokenizer(prompt, return_tensors="pt")
        input_ids = encoded["input_ids"]
        prompt_length = input_ids.shape[1]
        processor = SmilesLogitsProcessor(
            self.vocab,
            prompt_length,
            n,
            elements=elements,
            bounds=bounds,
            constrained=constrained,
            max_trace_tokens=self.max_trace_tokens,
            max_smiles_tokens=self.max_smiles_tokens,
            max_candidates=self.max_candidates,
        )
        pad = tokenizer.pad_token_id
        if pad is None:
            pad = self.vocab.eos[0] if self.vocab.eos else 0
        sampling = {"do_sample": True, "temperature": self.temperature, "top_p": self.top_p, "top_k": 0}
        if self.temperature <= 0:
            sampling = {"do_sample": False}
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            sequences = self.model.generate(
                input_ids,
                attention_mask=encoded.get("attention_mask"),
                num_return_sequences=n,
                max_new_tokens=self.max_new_tokens,
                logits_processor=LogitsProcessorList([processor]),
                pad_token_id=pad,
                eos_token_id=self.vocab.eos or None,
                **sampling,
            )
        answers = processor.finish(sequences)
        results = []
        for row, (tracked, forced) in enumerate(answers):
            ids = sequences[row, prompt_length:].tolist()
            for k, token_id in enumerate(ids):
                if token_id in self.vocab.eos:
                    ids = ids[:k]
                    break
            text = tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)
            trace, _, answer = text.partition(SMILES_OPEN)
            smiles = tracked if constrained else answer.split(SMILES_CLOSE, 1)[0].strip()
            results.append(GeneratedText(trace.strip(), smiles, forced, len(ids)))
        return results
