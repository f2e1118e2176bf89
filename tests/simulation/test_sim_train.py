"""Training: the loss falls, the run resumes, logs and provenance are written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from simulation.datasets import LabelledSet
from simulation.model import EquivariantPotential
from simulation.train import TrainConfig, evaluate, main, train

DATA = Path(__file__).resolve().parents[2] / "simulation" / "data" / "ethanol.npz"


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory) -> Path:
    data = LabelledSet.load(DATA)
    picks = np.concatenate([np.where(data.split == s)[0][:n] for s, n in ((0, 48), (1, 8), (2, 8))])
    path = tmp_path_factory.mktemp("data") / "ethanol_tiny.npz"
    data.select(picks).save(path)
    return path


def _config(dataset: Path, out: Path, epochs: int) -> TrainConfig:
    return TrainConfig(
        dataset=str(dataset),
        out=str(out),
        features=16,
        layers=2,
        heads=2,
        batch_size=8,
        lr=3e-3,
        epochs=epochs,
        ema_decay=0.5,
    )


def _records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]


def test_loss_falls_and_artifacts_are_written(tiny_dataset, tmp_path):
    result = train(_config(tiny_dataset, tmp_path, epochs=4))
    epochs = [r for r in _records(tmp_path) if r["event"] == "epoch"]
    assert len(epochs) == 4
    assert epochs[-1]["train_loss"] < 0.7 * epochs[0]["train_loss"]
    assert result["test_force_mae_mev_per_a"] > 0 and np.isfinite(result["test_energy_mae_mev"])
    for name in ("model.safetensors", "config.json", "train_log.jsonl", "training_config.json", "dataset.json"):
        assert (tmp_path / name).is_file(), name
    provenance = json.loads((tmp_path / "dataset.json").read_text())
    assert provenance["reference"] == "GFN2-xTB" and provenance["frames"]["train"] == 48
    model = EquivariantPotential.from_pretrained(tmp_path)
    assert model.elements == [1, 6, 8]
    metrics = evaluate(model, LabelledSet.load(tiny_dataset).split_set("test"))
    assert metrics["force_mae_mev_per_a"] == pytest.approx(result["test_force_mae_mev_per_a"], rel=1e-4)


def test_training_resumes_where_it_stopped(tiny_dataset, tmp_path):
    train(_config(tiny_dataset, tmp_path, epochs=2))
    main(
        [
            "--dataset",
            str(tiny_dataset),
            "--out",
            str(tmp_path),
            "--features",
            "16",
            "--layers",
            "2",
            "--heads",
            "2",
            "--batch-size",
            "8",
            "--lr",
            "3e-3",
            "--epochs",
            "3",
            "--ema-decay",
            "0.5",
        ]
    )
    epochs = [r["epoch"] for r in _records(tmp_path) if r["event"] == "epoch"]
    assert epochs == [1, 2, 3]
