"""Stage (a): supervised fine-tuning on spec -> trace -> SMILES teacher traces.

Each record becomes ``<bos> prompt trace <smiles> SMILES </smiles> <eos>``; the loss covers everything
after the prompt (the model learns to write the reasoning and the answer, not the request).

Resumable: the optimizer state and step counter live in ``--state`` (safetensors + JSON) and training
continues from there; the model checkpoint, ``train_config.json`` and the JSON-lines log
``train_log.jsonl`` live in ``--out``.

    python -m reasoning.train.sft --traces build/reasoning/traces.jsonl --out reasoning/checkpoints/compact \\
        --state build/reasoning/sft-state --max-minutes 60

>>> example_text({"prompt": "<spec> mw 100 to 200 </spec>", "trace": "<think> check </think>", "smiles": "CCO"})
'<spec> mw 100 to 200 </spec> <think> check </think> <smiles> CCO </smiles>'
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from reasoning.model import ReasoningConfig, ReasoningLM
from reasoning.tokenizer import ReasoningTokenizer
from reasoning.traces import read_traces
from workbench.errors import CheckpointError

__all__ = ["SFTConfig", "answer_only", "example_text", "encode_example", "make_batch", "train_sft", "main"]


@dataclass
class SFTConfig:
    """Everything that defines an SFT run (saved as ``train_config.json`` beside the checkpoint)."""

    traces: list[str]
    out: str
    state: str
    d_model: int = 192
    n_layers: int = 4
    n_heads: int = 6
    d_ff: int = 512
    max_len: int = 320
    batch_size: int = 16
    lr: float = 2e-3
    min_lr: float = 1e-4
    warmup_steps: int = 50
    max_steps: int = 2500
    max_minutes: float = 90.0
    weight_decay: float = 0.01
    val_fraction: float = 0.02
    eval_every: int = 100
    save_every: int = 100
    threads: int = 1
    seed: int = 0
    init_from: str = ""  # start from this checkpoint's weights and tokenizer (later stages)
    stop_after: int = 0  # stop at this step without changing the learning-rate schedule (0: run to max_steps)
    no_traces: int = 0  # 1: train on spec -> SMILES only (the "without traces" comparison model)


def example_text(record: dict) -> str:
    """The training text of one record: a trace record, or any ``{"prompt", "completion"}`` pair."""
    if "completion" in record:
        return f"{record['prompt']} {record['completion']}"
    return f"{record['prompt']} {record['trace']} <smiles> {record['smiles']} </smiles>"


def answer_only(record: dict) -> dict:
    """A trace record without its reasoning: the spec, then the SMILES answer alone."""
    return {"prompt": record["prompt"], "completion": f"<smiles> {record['smiles']} </smiles>"}


def encode_example(tokenizer: ReasoningTokenizer, record: dict) -> tuple[list[int], int]:
    """Token ids of a record and the index where the loss starts (first token after the prompt)."""
    prompt = tokenizer.encode(record["prompt"], bos=True)
    full = tokenizer.encode(example_text(record), bos=True, eos=True)
    return full, len(prompt)


def make_batch(examples: list[tuple[list[int], int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded inputs and targets; targets are -100 on the prompt and the padding."""
    width = max(len(ids) for ids, _ in examples) - 1
    inputs = torch.full((len(examples), width), pad_id, dtype=torch.long)
    targets = torch.full((len(examples), width), -100, dtype=torch.long)
    for row, (ids, start) in enumerate(examples):
        seq = torch.tensor(ids, dtype=torch.long)
        n = len(ids) - 1
        inputs[row, :n] = seq[:-1]
        targets[row, :n] = seq[1:]
        targets[row, : max(start - 1, 0)] = -100
    return inputs, targets


def _lr_at(step: int, cfg: SFTConfig) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps))
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * progress))


def _save_state(folder: Path, optimizer: torch.optim.Optimizer, model: ReasoningLM, info: dict) -> None:
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    names = {id(p): n for n, p in model.named_parameters()}
    tensors = {f"model.{k}": v.contiguous() for k, v in model.state_dict().items() if k != "head.weight"}
    for group in optimizer.param_groups:
        for p in group["params"]:
            for key, value in optimizer.state.get(p, {}).items():
                if torch.is_tensor(value):
                    tensors[f"optim.{names[id(p)]}.{key}"] = value.contiguous()
    save_file(tensors, str(folder / "train_state.safetensors"))
    (folder / "train_state.json").write_text(json.dumps(info, indent=2) + "\n")


def _load_state(folder: Path, optimizer: torch.optim.Optimizer, model: ReasoningLM) -> dict | None:
    from safetensors.torch import load_file

    info_path, tensor_path = folder / "train_state.json", folder / "train_state.safetensors"
    if not info_path.exists() or not tensor_path.exists():
        return None
    try:
        info = json.loads(info_path.read_text())
        tensors = load_file(str(tensor_path))
        model_state = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
        model_state["head.weight"] = model_state["embed.weight"]
        model.load_state_dict(model_state, strict=True)
        for name, p in model.named_parameters():
            if f"optim.{name}.exp_avg" in tensors:
                optimizer.state[p] = {
                    "step": tensors[f"optim.{name}.step"],
                    "exp_avg": tensors[f"optim.{name}.exp_avg"],
                    "exp_avg_sq": tensors[f"optim.{name}.exp_avg_sq"],
                }
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise CheckpointError(folder, f"cannot resume from this training state ({exc})") from None
    return info


@torch.no_grad()
def evaluate(model: ReasoningLM, examples: list[tuple[list[int], int]], pad_id: int, batch_size: int) -> float:
    """Mean per-token loss on the held-out examples."""
    model.eval()
    total, count = 0.0, 0
    for i in range(0, len(examples), batch_size):
        inputs, targets = make_batch(examples[i : i + batch_size], pad_id)
        logits = model(inputs)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="sum")
        total += float(loss)
        count += int((targets != -100).sum())
    model.train()
    return total / max(count, 1)


def train_sft(cfg: SFTConfig, log=print) -> dict:
    """Run (or resume) SFT; returns the final summary. See the module docstring for the files written."""
    torch.set_num_threads(cfg.threads)
    out, state_dir = Path(cfg.out), Path(cfg.state)
    out.mkdir(parents=True, exist_ok=True)
    records = [r for path in cfg.traces for r in read_traces(path)]
    if not records:
        raise ValueError(f"no trace records in {cfg.traces}")
    if cfg.no_traces:
        records = [answer_only(r) for r in records]
    random.Random(cfg.seed).shuffle(records)
    n_val = max(1, int(len(records) * cfg.val_fraction)) if len(records) > 20 else 1
    val_records, train_records = records[:n_val], records[n_val:] or records

    if (out / "tokenizer.json").exists() and (state_dir / "train_state.json").exists():
        tokenizer = ReasoningTokenizer.load(out)
    elif cfg.init_from:
        tokenizer = ReasoningTokenizer.load(cfg.init_from)
    else:
        tokenizer = ReasoningTokenizer.build(example_text(r) for r in train_records)
    encode = [encode_example(tokenizer, r) for r in train_records]
    encode = [e for e in encode if len(e[0]) <= cfg.max_len]
    val = [e for e in (encode_example(tokenizer, r) for r in val_records) if len(e[0]) <= cfg.max_len]
    if not encode:
        raise ValueError(f"every example is longer than max_len={cfg.max_len}")

    torch.manual_seed(cfg.seed)
    model_cfg = ReasoningConfig(
        vocab_size=len(tokenizer),
        d_model=cfg.d_model,
        n_layers=cfg.n_layers,
        n_heads=cfg.n_heads,
        d_ff=cfg.d_ff,
        max_len=cfg.max_len,
    )
    if cfg.init_from:
        model = ReasoningLM.from_pretrained(cfg.init_from)
        model_cfg = model.config
        if cfg.max_len > model_cfg.max_len:
            raise ValueError(f"max_len {cfg.max_len} exceeds the initial checkpoint's {model_cfg.max_len}")
    else:
        model = ReasoningLM(model_cfg)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr,
        betas=(0.9, 0.98),
    )
    info = _load_state(state_dir, optimizer, model) or {"step": 0, "tokens": 0, "elapsed": 0.0}
    step = int(info["step"])
    tokens_seen = int(info["tokens"])
    elapsed_before = float(info["elapsed"])
    (out / "train_config.json").write_text(
        json.dumps({**asdict(cfg), "model": asdict(model_cfg), "train_examples": len(encode)}, indent=2) + "\n"
    )
    tokenizer.save(out)
    log_path = out / "train_log.jsonl"
    log(
        json.dumps(
            {
                "event": "start",
                "step": step,
                "params": model.num_parameters(),
                "train": len(encode),
                "val": len(val),
                "vocab": len(tokenizer),
            }
        )
    )

    per_epoch = max(1, len(encode) // cfg.batch_size)
    start_time = time.time()
    model.train()
    running = None
    last_save = step

    def checkpoint(final: bool = False) -> None:
        model.save_pretrained(out, tokenizer, dtype=torch.float16)
        _save_state(
            state_dir,
            optimizer,
            model,
            {"step": step, "tokens": tokens_seen, "elapsed": elapsed_before + time.time() - start_time},
        )

    last_step = min(cfg.max_steps, cfg.stop_after) if cfg.stop_after else cfg.max_steps
    while step < last_step and (time.time() - start_time) / 60 < cfg.max_minutes:
        epoch, index = divmod(step, per_epoch)
        order = list(range(len(encode)))
        random.Random(cfg.seed * 7919 + epoch).shuffle(order)
        batch = [encode[i] for i in order[index * cfg.batch_size : (index + 1) * cfg.batch_size]]
        inputs, targets = make_batch(batch, tokenizer.pad_id)
        for group in optimizer.param_groups:
            group["lr"] = _lr_at(step, cfg)
        logits = model(inputs)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        step += 1
        tokens_seen += int((targets != -100).sum())
        loss_value = loss.item()
        running = loss_value if running is None else 0.95 * running + 0.05 * loss_value
        if step % 10 == 0 or step == 1:
            record = {
                "step": step,
                "loss": round(loss_value, 4),
                "loss_smooth": round(running, 4),
                "lr": round(_lr_at(step, cfg), 6),
                "tokens": tokens_seen,
                "elapsed_s": round(elapsed_before + time.time() - start_time, 1),
            }
            if step % cfg.eval_every == 0 and val:
                record["val_loss"] = round(evaluate(model, val, tokenizer.pad_id, cfg.batch_size), 4)
            with open(log_path, "a") as fh:
                fh.write(json.dumps(record) + "\n")
            log(json.dumps(record))
        if step - last_save >= cfg.save_every:
            checkpoint()
            last_save = step
    checkpoint(final=True)
    summary = {
        "event": "end",
        "step": step,
        "tokens": tokens_seen,
        "val_loss": round(evaluate(model, val, tokenizer.pad_id, cfg.batch_size), 4) if val else None,
        "params": model.num_parameters(),
    }
    with open(log_path, "a") as fh:
        fh.write(json.dumps(summary) + "\n")
    log(json.dumps(summary))
    return summary


def main(argv: list[str] | None = None) -> dict:
    """Command line: ``python -m reasoning.train.sft --traces FILE [FILE ...] --out DIR --state DIR``."""
    parser = argparse.ArgumentParser(description="Stage (a): SFT on teacher traces (resumable).")
    parser.add_argument("--traces", nargs="+", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--state", required=True)
    for f in SFTConfig.__dataclass_fields__.values():
        if f.name in ("traces", "out", "state"):
            continue
        parser.add_argument("--" + f.name.replace("_", "-"), type=type(f.default), default=f.default)
    args = parser.parse_args(argv)
    return train_sft(SFTConfig(**vars(args)))


if __name__ == "__main__":
    main()
