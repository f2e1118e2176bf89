"""Train an :class:`~simulation.model.EquivariantPotential` on a labelled data set (energies + forces).

Loss ``= energy_weight * mean((dE / n_atoms)^2) + force_weight * mean(|dF|^2)`` in eV and eV/Angstrom, Adam
with an exponential moving average (EMA) of the weights, a reduce-on-plateau or cosine learning-rate
schedule, early stopping on the validation loss and a wall-clock budget. The folder given by ``--out``
receives the best EMA weights (``model.safetensors`` + ``config.json``), ``train_log.jsonl`` (one JSON
record per epoch and a final ``test`` record with energy and force MAEs), ``training_config.json`` and
``dataset.json`` (the data set's provenance). Re-running the same command resumes from
``training_state.pt`` (loaded with ``weights_only=True``).

    python -m simulation.train --dataset simulation/data/ethanol.npz --out simulation/checkpoints/ethanol
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import math
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from simulation.datasets import LabelledSet
from simulation.model import EquivariantPotential, PotentialConfig, fit_element_shifts, neighbour_list
from workbench.errors import CheckpointError

__all__ = ["TrainConfig", "Batch", "batches", "evaluate", "train", "main"]

STATE_NAME = "training_state.pt"
LOG_NAME = "train_log.jsonl"


@dataclass
class TrainConfig:
    """Everything that defines a training run (written to ``training_config.json``)."""

    dataset: str
    out: str
    features: int = 64
    layers: int = 3
    heads: int = 4
    cutoff: float = 5.0
    radial_basis: int = 16
    batch_size: int = 32
    lr: float = 1e-3
    min_lr: float = 1e-5
    schedule: str = "plateau"  # "plateau", or "cosine" (over max_minutes if set, else over epochs)
    plateau_patience: int = 8
    plateau_factor: float = 0.5
    early_stopping: int = 25  # epochs without validation improvement
    epochs: int = 300
    max_minutes: float = 0.0  # 0 = no wall-clock limit
    energy_weight: float = 10.0
    force_weight: float = 1.0
    ema_decay: float = 0.995
    grad_clip: float = 10.0
    max_train_frames: int = 0  # 0 = all
    seed: int = 0
    threads: int = 1


@dataclass
class Batch:
    """Frames collated into one graph batch (atoms concatenated)."""

    numbers: torch.Tensor  # (atoms,)
    positions: torch.Tensor  # (atoms, 3)
    batch: torch.Tensor  # (atoms,) frame index within the batch
    energy: torch.Tensor  # (frames,)
    forces: torch.Tensor  # (atoms, 3)
    n_atoms: torch.Tensor  # (frames,)

    @property
    def n_graphs(self) -> int:
        return int(self.energy.shape[0])


def batches(
    data: LabelledSet, batch_size: int, *, shuffle: bool = False, seed: int = 0, dtype: torch.dtype = torch.float32
) -> Iterator[Batch]:
    """Iterate over ``data`` in batches of ``batch_size`` frames (shuffled with ``seed`` if asked)."""
    order = np.random.default_rng(seed).permutation(data.n_frames) if shuffle else np.arange(data.n_frames)
    for start in range(0, data.n_frames, batch_size):
        frames = order[start : start + batch_size]
        atoms = np.concatenate([np.arange(data.offsets[f], data.offsets[f + 1]) for f in frames])
        n_atoms = data.n_atoms[frames]
        yield Batch(
            numbers=torch.from_numpy(data.numbers[atoms]).long(),
            positions=torch.from_numpy(data.positions[atoms]).to(dtype),
            batch=torch.from_numpy(np.repeat(np.arange(len(frames)), n_atoms)).long(),
            energy=torch.from_numpy(data.energy[frames]).to(torch.float64),
            forces=torch.from_numpy(data.forces[atoms]).to(dtype),
            n_atoms=torch.from_numpy(n_atoms).long(),
        )


def _predict(model: EquivariantPotential, b: Batch, create_graph: bool) -> tuple[torch.Tensor, torch.Tensor]:
    neighbours = neighbour_list(b.positions, model.config.cutoff, b.batch)
    return model.energy_and_forces(
        b.numbers, b.positions, b.batch, n_graphs=b.n_graphs, create_graph=create_graph, neighbours=neighbours
    )


def evaluate(model: EquivariantPotential, data: LabelledSet, batch_size: int = 64) -> dict[str, float]:
    """Energy MAE (meV, and meV/atom) and force MAE / RMSE (meV/Angstrom) of ``model`` on ``data``."""
    model.eval()
    dtype = next(model.parameters()).dtype
    e_err, e_err_atom, f_abs, f_sq, n_comp = [], [], 0.0, 0.0, 0
    for b in batches(data, batch_size, dtype=dtype):
        energy, forces = _predict(model, b, create_graph=False)
        de = (energy.detach().double() - b.energy).abs()
        e_err.append(de.numpy())
        e_err_atom.append((de / b.n_atoms).numpy())
        df = (forces.detach() - b.forces).double()
        f_abs += float(df.abs().sum())
        f_sq += float((df * df).sum())
        n_comp += df.numel()
    return {
        "frames": data.n_frames,
        "energy_mae_mev": 1000.0 * float(np.concatenate(e_err).mean()),
        "energy_mae_mev_per_atom": 1000.0 * float(np.concatenate(e_err_atom).mean()),
        "force_mae_mev_per_a": 1000.0 * f_abs / n_comp,
        "force_rmse_mev_per_a": 1000.0 * math.sqrt(f_sq / n_comp),
    }


def _loss(model: EquivariantPotential, b: Batch, cfg: TrainConfig) -> torch.Tensor:
    energy, forces = _predict(model, b, create_graph=True)
    de = (energy - b.energy.to(energy.dtype)) / b.n_atoms.to(energy.dtype)
    return cfg.energy_weight * (de * de).mean() + cfg.force_weight * ((forces - b.forces) ** 2).mean()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _new_model(cfg: TrainConfig, train_set: LabelledSet) -> EquivariantPotential:
    elements = train_set.elements()
    config = PotentialConfig(
        elements=elements,
        features=cfg.features,
        layers=cfg.layers,
        heads=cfg.heads,
        cutoff=cfg.cutoff,
        radial_basis=cfg.radial_basis,
        extra={
            "dataset": Path(cfg.dataset).name,
            "reference": train_set.metadata.get("reference", "GFN2-xTB"),
            "units": {"energy": "eV", "forces": "eV/Angstrom", "positions": "Angstrom"},
        },
    )
    model = EquivariantPotential(config)
    shifts = fit_element_shifts(train_set.numbers, train_set.n_atoms, train_set.energy, elements)
    model.element_shift.copy_(torch.as_tensor(shifts, dtype=torch.float32))
    model.energy_scale.fill_(float(np.sqrt(np.mean(train_set.forces**2))))
    return model


def _log(path: Path, record: dict) -> None:
    with open(path, "a") as fh:
        fh.write(json.dumps(record, sort_keys=True) + "\n")


def train(cfg: TrainConfig) -> dict[str, float]:
    """Run (or resume) training; returns the test-set metrics of the best EMA model."""
    torch.set_num_threads(max(1, cfg.threads))
    torch.manual_seed(cfg.seed)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    data = LabelledSet.load(cfg.dataset)
    train_set, val_set, test_set = (data.split_set(s) for s in ("train", "val", "test"))
    if cfg.max_train_frames and train_set.n_frames > cfg.max_train_frames:
        keep = np.random.default_rng(cfg.seed).choice(train_set.n_frames, cfg.max_train_frames, replace=False)
        train_set = train_set.select(np.sort(keep))
    if not (train_set.n_frames and val_set.n_frames):
        raise ValueError(f"{cfg.dataset}: the train and val splits must not be empty")

    model = _new_model(cfg, train_set)
    ema = copy.deepcopy(model)
    for p in ema.parameters():
        p.requires_grad_(False)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    if cfg.schedule == "cosine":
        # Stepped by hand from the fraction of the budget (wall clock, or epochs) already spent.
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    elif cfg.schedule == "plateau":
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, factor=cfg.plateau_factor, patience=cfg.plateau_patience, min_lr=cfg.min_lr
        )
    else:
        raise ValueError(f"unknown schedule {cfg.schedule!r}; use 'plateau' or 'cosine'")

    state_path, log_path = out / STATE_NAME, out / LOG_NAME
    epoch, best, since_best, elapsed = 0, math.inf, 0, 0.0
    if state_path.exists():
        try:
            state = torch.load(state_path, weights_only=True, map_location="cpu")
            model.load_state_dict(state["model"])
            ema.load_state_dict(state["ema"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
        except (RuntimeError, KeyError, ValueError, OSError) as exc:
            raise CheckpointError(state_path, f"cannot resume training from it: {exc}") from exc
        epoch, best, since_best, elapsed = state["epoch"], state["best"], state["since_best"], state["elapsed"]
        print(f"resuming from epoch {epoch} (best val loss {best:.6g})", flush=True)
    else:
        if log_path.exists():
            log_path.unlink()
        provenance = dict(data.metadata)
        provenance.update(
            file=str(cfg.dataset),
            sha256=_sha256(Path(cfg.dataset)),
            frames={"train": train_set.n_frames, "val": val_set.n_frames, "test": test_set.n_frames},
            molecules=len(data.smiles),
        )
        (out / "dataset.json").write_text(json.dumps(provenance, indent=2, sort_keys=True) + "\n")
        (out / "training_config.json").write_text(json.dumps(asdict(cfg), indent=2, sort_keys=True) + "\n")
        _log(
            log_path,
            {
                "event": "start",
                "parameters": sum(p.numel() for p in model.parameters()),
                "train_frames": train_set.n_frames,
                "val_frames": val_set.n_frames,
            },
        )

    budget = cfg.max_minutes * 60.0
    stop_reason = "max epochs"
    while epoch < cfg.epochs:
        if budget and elapsed >= budget:
            stop_reason = "time budget"
            break
        if since_best >= cfg.early_stopping:
            stop_reason = "early stopping"
            break
        t0 = time.perf_counter()
        model.train()
        total, count = 0.0, 0
        for b in batches(train_set, cfg.batch_size, shuffle=True, seed=cfg.seed * 100_003 + epoch):
            if cfg.schedule == "cosine":
                spent = (elapsed + time.perf_counter() - t0) / budget if budget else epoch / cfg.epochs
                lr = cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1.0 + math.cos(math.pi * min(1.0, spent)))
                for group in optimizer.param_groups:
                    group["lr"] = lr
            loss = _loss(model, b, cfg)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            with torch.no_grad():
                for pe, pm in zip(ema.parameters(), model.parameters(), strict=True):
                    pe.lerp_(pm, 1.0 - cfg.ema_decay)
            total += float(loss.detach()) * b.n_graphs
            count += b.n_graphs
        metrics = evaluate(ema, val_set)
        val_loss = (
            cfg.energy_weight * (metrics["energy_mae_mev_per_atom"] / 1000) ** 2
            + cfg.force_weight * (metrics["force_rmse_mev_per_a"] / 1000) ** 2
        )
        if cfg.schedule == "plateau":
            scheduler.step(val_loss)
        epoch += 1
        elapsed += time.perf_counter() - t0
        improved = val_loss < best
        if improved:
            best, since_best = val_loss, 0
            ema.save_pretrained(out)
        else:
            since_best += 1
        record = {
            "event": "epoch",
            "epoch": epoch,
            "lr": optimizer.param_groups[0]["lr"],
            "train_loss": total / max(count, 1),
            "val_loss": val_loss,
            "improved": improved,
            "minutes": round(elapsed / 60.0, 3),
        }
        record.update({f"val_{k}": v for k, v in metrics.items() if k != "frames"})
        _log(log_path, record)
        print(json.dumps(record), flush=True)
        tmp = state_path.with_suffix(".tmp")
        torch.save(
            {
                "model": model.state_dict(),
                "ema": ema.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "epoch": epoch,
                "best": best,
                "since_best": since_best,
                "elapsed": elapsed,
            },
            tmp,
        )
        os.replace(tmp, state_path)

    best_model = EquivariantPotential.from_pretrained(out)
    result = {
        "event": "test",
        "stop_reason": stop_reason,
        "epochs": epoch,
        "minutes": round(elapsed / 60.0, 2),
        "reference": "GFN2-xTB",
    }
    t0 = time.perf_counter()
    result.update({f"test_{k}": v for k, v in evaluate(best_model, test_set).items()})
    result["test_seconds"] = round(time.perf_counter() - t0, 2)
    _log(log_path, result)
    print(json.dumps(result), flush=True)
    return result


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    """Command line entry point: every :class:`TrainConfig` field is a ``--flag``."""
    parser = argparse.ArgumentParser(prog="python -m simulation.train", description=__doc__.split("\n")[0])
    defaults = TrainConfig(dataset="", out="")
    for name, value in asdict(defaults).items():
        flag = "--" + name.replace("_", "-")
        if name in {"dataset", "out"}:
            parser.add_argument(flag, required=True)
        else:
            parser.add_argument(flag, type=type(value), default=value)
    args = parser.parse_args(argv)
    return train(TrainConfig(**vars(args)))


if __name__ == "__main__":
    main()
