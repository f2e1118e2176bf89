"""A compact decoder-only transformer (pre-norm, rotary positions, KV cache) and its checkpoint format.

A checkpoint is a folder: ``config.json`` (the architecture), ``model.safetensors`` (the weights) and
``tokenizer.json``. Loading checks all three and raises :class:`CheckpointError` naming the path.

>>> import torch
>>> model = ReasoningLM(ReasoningConfig(vocab_size=50, d_model=32, n_layers=2, n_heads=4, max_len=64))
>>> model(torch.zeros(1, 5, dtype=torch.long)).shape
torch.Size([1, 5, 50])
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from workbench.errors import CheckpointError

__all__ = ["ReasoningConfig", "ReasoningLM", "KVCache", "SharedPrefix"]


@dataclass
class ReasoningConfig:
    """Architecture of :class:`ReasoningLM` (saved as ``config.json``)."""

    vocab_size: int
    d_model: int = 256
    n_layers: int = 4
    n_heads: int = 8
    d_ff: int = 1024
    max_len: int = 384
    dropout: float = 0.0
    rope_base: float = 10000.0

    @classmethod
    def from_dict(cls, data: dict) -> ReasoningConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown config keys {sorted(unknown)}")
        return cls(**data)


class KVCache:
    """Keys and values of every layer for the tokens seen so far: ``k[layer]: (batch, heads, time, head_dim)``.

    Buffers are allocated once per layer with room for ``capacity`` tokens (the model's ``max_len`` by
    default) and filled in place, so a decoding step costs no copying of earlier keys.
    """

    def __init__(self, n_layers: int, capacity: int | None = None):
        self.capacity = capacity
        self._k: list[torch.Tensor | None] = [None] * n_layers
        self._v: list[torch.Tensor | None] = [None] * n_layers
        self._length = [0] * n_layers
        self.prefix: SharedPrefix | None = None

    @property
    def length(self) -> int:
        """Tokens seen so far (the shared prefix, if any, and the rows' own tokens)."""
        return self._length[0] + self._prefix_length

    @property
    def _prefix_length(self) -> int:
        return self.prefix.length if self.prefix is not None else 0

    def share_prefix(self, rows_of_prompt: torch.Tensor, key_valid: torch.Tensor | None = None) -> None:
        """Make what the cache holds (one row per prompt) a prefix shared by several rows per prompt.

        Row ``r`` of the batch continues prompt ``rows_of_prompt[r]`` (non-decreasing). This is what
        ``select(rows_of_prompt)`` does, without copying the prompt's keys to each of its rows: a decoding
        step then reads each prompt's keys once for all its rows, rather than once per row. ``key_valid``
        ``(prompts, prefix length)`` masks the left padding of the prompts. Later tokens go to per-row
        buffers; :meth:`select` then picks rows among those.
        """
        if self.prefix is not None:
            raise ValueError("the cache already has a shared prefix")
        length = self._length[0]
        keys = [k[:, :, :length].contiguous() for k in self._k]
        values = [v[:, :, :length].contiguous() for v in self._v]
        self.prefix = SharedPrefix(keys, values, rows_of_prompt, key_valid)
        self._k = [None] * len(self._k)
        self._v = [None] * len(self._v)
        self._length = [0] * len(self._length)

    def append(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        start, t = self._length[layer], k.shape[2]
        if self._k[layer] is None:
            room = max((self.capacity or 0) - self._prefix_length, start + t)
            shape = (k.shape[0], k.shape[1], room, k.shape[3])
            self._k[layer], self._v[layer] = k.new_empty(shape), v.new_empty(shape)
        elif start + t > self._k[layer].shape[2]:
            raise ValueError(f"KV cache holds {self._k[layer].shape[2]} tokens; {start + t} requested")
        self._k[layer][:, :, start : start + t] = k
        self._v[layer][:, :, start : start + t] = v
        self._length[layer] = start + t
        return self._k[layer][:, :, : start + t], self._v[layer][:, :, : start + t]

    def select(self, rows: torch.Tensor) -> None:
        """Keep only the given batch rows (e.g. after dropping finished sequences, or to repeat a prompt).

        Rows kept in their order (strictly increasing indices) are moved up in place, so dropping rows
        copies only the rows after the first one dropped and allocates nothing.
        """
        if self.prefix is not None:
            self.prefix.select(rows)
        index = rows.tolist()
        if index and all(a < b for a, b in zip(index, index[1:], strict=False)) and index[0] >= 0:
            first = next((i for i, row in enumerate(index) if row != i), len(index))
            moved = rows[first:]
            self._k = [self._compact(k, moved, first, n) for k, n in zip(self._k, self._length, strict=True)]
            self._v = [self._compact(v, moved, first, n) for v, n in zip(self._v, self._length, strict=True)]
            return
        self._k = [self._rows(k, rows, n) for k, n in zip(self._k, self._length, strict=True)]
        self._v = [self._rows(v, rows, n) for v, n in zip(self._v, self._length, strict=True)]

    @staticmethod
    def _compact(buffer: torch.Tensor | None, moved: torch.Tensor, first: int, length: int) -> torch.Tensor | None:
        # rows [first:] take the kept rows after them (the gather reads before the write); the first
        # rows are kept where they are, and the buffer becomes a view of the kept rows
        if buffer is None:
            return None
        if len(moved):
            buffer[first : first + len(moved), :, :length] = buffer[moved, :, :length]
        return buffer[: first + len(moved)]

    @staticmethod
    def _rows(buffer: torch.Tensor | None, rows: torch.Tensor, length: int) -> torch.Tensor | None:
        # copy only the filled part of the buffer; the free room after it stays uninitialised
        if buffer is None:
            return None
        out = buffer.new_empty((len(rows), *buffer.shape[1:]))
        out[:, :, :length] = buffer[rows, :, :length]
        return out


class SharedPrefix:
    """Keys and values of prompts shared by the rows that continue them (see :meth:`KVCache.share_prefix`).

    ``keys[layer]: (prompts, heads, length, head_dim)``; ``prompt[r]`` is the prompt of batch row ``r``.
    Attention of one new token per row reads each prompt's keys once: the queries of a prompt's rows are
    gathered into one small matrix (``slot[r]`` is row ``r``'s place among its prompt's rows).
    """

    def __init__(
        self,
        keys: list[torch.Tensor],
        values: list[torch.Tensor],
        prompt: torch.Tensor,
        key_valid: torch.Tensor | None = None,
    ):
        self.keys, self.values = keys, values
        self.length = keys[0].shape[2] if keys else 0
        self.n_prompts = keys[0].shape[0] if keys else 0
        # additive mask (prompts, 1, 1, length): -inf on padding
        self.bias = None
        if key_valid is not None and not bool(key_valid.all()):
            zeros = torch.zeros(key_valid.shape, dtype=keys[0].dtype)
            self.bias = zeros.masked_fill(~key_valid, float("-inf"))[:, None, None, :]
        self._place(prompt)

    def _place(self, prompt: torch.Tensor) -> None:
        if len(prompt) > 1 and bool((prompt[1:] < prompt[:-1]).any()):
            raise ValueError("rows sharing a prefix must stay grouped by prompt (prompt indices in order)")
        self.prompt = prompt
        counts = torch.bincount(prompt, minlength=self.n_prompts)
        starts = torch.cumsum(counts, 0) - counts
        self.slot = torch.arange(len(prompt)) - starts[prompt]
        self.width = int(counts.max()) if len(prompt) else 0
        # every prompt still has all its rows: the batch is already (prompts, width) in order
        self.uniform = len(prompt) == self.n_prompts * self.width

    def _grouped(self, x: torch.Tensor) -> torch.Tensor:
        """``x: (rows, ...)`` as ``(prompts, width, ...)``, zero where a prompt has fewer rows."""
        if self.uniform:
            return x.reshape(self.n_prompts, self.width, *x.shape[1:])
        out = x.new_zeros((self.n_prompts, self.width, *x.shape[1:]))
        out[self.prompt, self.slot] = x
        return out

    def _rows(self, x: torch.Tensor) -> torch.Tensor:
        """The inverse of :meth:`_grouped`: ``(prompts, width, ...)`` back to ``(rows, ...)``."""
        if self.uniform:
            return x.reshape(-1, *x.shape[2:])
        return x[self.prompt, self.slot]

    def select(self, rows: torch.Tensor) -> None:
        """Keep only the given batch rows (their prompt order must stay non-decreasing)."""
        self._place(self.prompt[rows])

    def attend(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Attention output ``(rows, heads, 1, head_dim)`` of one query per row over its prompt's prefix
        and its own keys ``k, v: (rows, heads, time, head_dim)`` (all of them visible)."""
        scale = 1.0 / math.sqrt(q.shape[-1])
        grouped = self._grouped(q[:, :, 0, :])  # (prompts, width, H, head_dim)
        shared = torch.matmul(grouped.transpose(1, 2), self.keys[layer].transpose(-1, -2))  # (P, H, width, L)
        if self.bias is not None:
            shared = shared + self.bias
        shared = self._rows(shared.transpose(1, 2))  # (rows, H, L)
        own = torch.matmul(q, k.transpose(-1, -2))[:, :, 0, :]  # (rows, H, T)
        weights = torch.softmax(torch.cat([shared, own], dim=-1) * scale, dim=-1)
        grouped_w = self._grouped(weights[..., : self.length])  # (prompts, width, H, L)
        out = torch.matmul(grouped_w.transpose(1, 2), self.values[layer])  # (P, H, width, head_dim)
        out = self._rows(out.transpose(1, 2))  # (rows, H, head_dim)
        out = out + torch.matmul(weights[:, :, None, self.length :], v)[:, :, 0, :]
        return out[:, :, None, :]


def _rope_tables(head_dim: int, max_len: int, base: float) -> tuple[torch.Tensor, torch.Tensor]:
    inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    angles = torch.outer(torch.arange(max_len, dtype=torch.float32), inv_freq)  # (time, head_dim/2)
    return angles.cos(), angles.sin()


def _apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    # x: (..., time, head_dim), e.g. q and k stacked as (2, batch, heads, time, head_dim); rotate pairs
    # (even, odd). The halves are written straight into the output (no stack), with the same arithmetic.
    x1, x2 = x[..., 0::2], x[..., 1::2]
    out = torch.empty_like(x, memory_format=torch.contiguous_format)
    out[..., 0::2] = x1 * cos - x2 * sin
    out[..., 1::2] = x1 * sin + x2 * cos
    return out


class _Block(nn.Module):
    def __init__(self, cfg: ReasoningConfig):
        super().__init__()
        self.n_heads = cfg.n_heads
        self.head_dim = cfg.d_model // cfg.n_heads
        self.norm1 = nn.LayerNorm(cfg.d_model)
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=False)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model, bias=False)
        self.norm2 = nn.LayerNorm(cfg.d_model)
        self.ff_in = nn.Linear(cfg.d_model, cfg.d_ff)
        self.ff_out = nn.Linear(cfg.d_ff, cfg.d_model)
        self.dropout = cfg.dropout

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        cache: KVCache | None,
        layer: int,
        attn_mask: torch.Tensor | None,
    ) -> torch.Tensor:
        b, t, d = x.shape
        qkv = self.qkv(self.norm1(x)).view(b, t, 3, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k = _apply_rope(qkv[:2], cos, sin)  # q and k rotated in one pass
        v = qkv[2]
        if cache is not None:
            k, v = cache.append(layer, k, v)
        drop = self.dropout if self.training else 0.0
        if cache is not None and cache.prefix is not None:
            if t != 1 or attn_mask is not None:
                raise ValueError("after share_prefix the cache takes one new token per row and no attention mask")
            y = cache.prefix.attend(layer, q, k, v)
        elif attn_mask is None:
            causal = t > 1
            y = F.scaled_dot_product_attention(q, k, v, is_causal=causal and k.shape[2] == t, dropout_p=drop)
            if causal and k.shape[2] != t:  # prefix in cache plus several new tokens
                raise ValueError("multi-token steps with a non-empty cache need an explicit attention mask")
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=drop)
        h = self.proj(y.transpose(1, 2).reshape(b, t, d))
        x = x + (F.dropout(h, drop, True) if drop else h)
        h = self.ff_out(F.gelu(self.ff_in(self.norm2(x))))
        return x + (F.dropout(h, drop, True) if drop else h)


class ReasoningLM(nn.Module):
    """Decoder-only transformer language model over :class:`~reasoning.tokenizer.ReasoningTokenizer` ids.

    ``forward(ids)`` gives logits ``(batch, time, vocab)``; with a :class:`KVCache` only the new tokens
    are passed and earlier keys/values are reused (``positions`` continue from ``cache.length``).

    >>> model = ReasoningLM(ReasoningConfig(vocab_size=30, d_model=32, n_layers=1, n_heads=2, max_len=16))
    >>> cache = KVCache(1)
    >>> _ = model(torch.tensor([[1, 2, 3]]), cache=cache); model(torch.tensor([[4]]), cache=cache).shape
    torch.Size([1, 1, 30])
    """

    def __init__(self, config: ReasoningConfig):
        super().__init__()
        if config.d_model % config.n_heads or (config.d_model // config.n_heads) % 2:
            raise ValueError("d_model must split into an even head dimension across n_heads")
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.d_model)
        self.blocks = nn.ModuleList(_Block(config) for _ in range(config.n_layers))
        self.norm = nn.LayerNorm(config.d_model)
        self.head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.head.weight = self.embed.weight  # tied input/output embeddings
        cos, sin = _rope_tables(config.d_model // config.n_heads, config.max_len, config.rope_base)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.apply(self._init)
        for block in self.blocks:  # scaled residual projections (GPT-2)
            nn.init.normal_(block.proj.weight, std=0.02 / math.sqrt(2 * config.n_layers))
            nn.init.normal_(block.ff_out.weight, std=0.02 / math.sqrt(2 * config.n_layers))

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(
        self,
        ids: torch.Tensor,
        cache: KVCache | None = None,
        attn_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        start = cache.length if cache is not None else 0
        if cache is not None and cache.capacity is None:
            cache.capacity = self.config.max_len
        t = ids.shape[1]
        # a cache made with more room (left-padded batches: padding takes positions) may go past max_len
        limit = max(self.config.max_len, cache.capacity) if cache is not None else self.config.max_len
        if start + t > limit:
            raise ValueError(f"sequence of {start + t} tokens exceeds max_len {self.config.max_len}")
        if start + t > self.rope_cos.shape[0]:
            # grown outside inference mode, so that training after a wide sampled batch can still use them
            with torch.inference_mode(False):
                cos, sin = _rope_tables(self.config.d_model // self.config.n_heads, limit, self.config.rope_base)
                self.rope_cos, self.rope_sin = cos.to(self.rope_cos), sin.to(self.rope_sin)
        cos = self.rope_cos[start : start + t]
        sin = self.rope_sin[start : start + t]
        x = self.embed(ids)
        for layer, block in enumerate(self.blocks):
            x = block(x, cos, sin, cache, layer, attn_mask)
        return self.head(self.norm(x))

    # ------------------------------------------------------------------ checkpoints
    def save_pretrained(self, folder: str | Path, tokenizer=None, dtype: torch.dtype = torch.float32) -> Path:
        """Write ``config.json`` and ``model.safetensors`` (and ``tokenizer.json`` when given).

        ``dtype=torch.float16`` halves the file for shipping; loading always returns float32 weights.
        """
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.json").write_text(json.dumps(asdict(self.config), indent=2) + "\n")
        state = {k: v.detach().to(dtype).contiguous() for k, v in self.state_dict().items() if k != "head.weight"}
        save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
        if tokenizer is not None:
            tokenizer.save(folder)
        return folder

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> ReasoningLM:
        """Load a folder written by :meth:`save_pretrained`; any problem raises CheckpointError naming the path."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        folder = Path(folder)
        config_path, weights_path = folder / "config.json", folder / "model.safetensors"
        if not folder.is_dir():
            raise CheckpointError(folder, "no such checkpoint folder")
        try:
            config = ReasoningConfig.from_dict(json.loads(config_path.read_text()))
        except FileNotFoundError:
            raise CheckpointError(config_path, "config.json is missing") from None
        except (json.JSONDecodeError, TypeError, ValueError) as exc:
            raise CheckpointError(config_path, f"config.json is corrupt ({exc})") from None
        try:
            state = load_file(str(weights_path))
        except FileNotFoundError:
            raise CheckpointError(weights_path, "model.safetensors is missing") from None
        except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
            raise CheckpointError(weights_path, f"not a readable safetensors file ({exc})") from None
        model = cls(config)
        state = {k: v.float() for k, v in state.items()}
        state["head.weight"] = state.get("embed.weight")
        try:
            model.load_state_dict(state, strict=True)
        except (RuntimeError, TypeError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise CheckpointError(weights_path, f"weights do not match config.json ({reason})") from None
        model.eval()
        return model
