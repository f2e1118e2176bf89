"""Symmetry-aware quantization-aware training (QAT) of the potential, and the command that ships W4A8 checkpoints.

The scalar and vector branches follow separate schedules (:class:`QATSchedule`): scalar weights start at 8
bits and drop to the target early, vector features stay in float at first, are switched on (at 8 bits, or
annealed from 8 bits to a lower target) later, and their LSQ steps are frozen for the last part of the run,
so the equivariant channels only see quantization noise once the invariant ones have adapted. Rounding uses
a straight-through estimator; forces are ``-dE/dx`` through the fake-quant graph, trained with the same energy
+ force loss as :mod:`simulation.train`.

    python -m simulation.quantize.qat --float simulation/checkpoints/ethanol \\
        --dataset simulation/data/ethanol.npz --out simulation/checkpoints/ethanol-w4a8 --max-minutes 4
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from simulation.datasets import LabelledSet
from simulation.model import EquivariantPotential, PotentialConfig, neighbour_list
from simulation.quantize.fakequant import GAQPotential, QuantSpec, _key, quantize
from simulation.quantize.mddq import ACTIVATION_SCALES, check_bits
from simulation.train import batches, evaluate

__all__ = ["QATSchedule", "NO_SCHEDULE", "fit", "qat", "retarget_attention", "main"]

LOG_NAME = "qat_log.jsonl"


@dataclass
class QATSchedule:
    """Branch-separated schedule; fractions are of the run (wall clock, or steps)."""

    scalar_start_bits: int = 8  # weights begin here ...
    scalar_target_at: float = 0.15  # ... and are at the target bit width from this fraction on
    vector_enable_at: float = 0.3  # vector features are float before this fraction
    vector_start_bits: int = 8
    vector_target_at: float = 0.5  # vector bits reach the target here (when the target is below 8)
    vector_freeze_at: float = 0.8  # vector quantizer steps stop learning here
    # Activations (scalar inputs and vector features) may start finer than the target and drop to it late:
    # the weights then settle under small rounding noise and only adapt to the 8-bit grid at the end.
    activation_start_bits: int = 0  # 0: at the target from the start (vectors: vector_start_bits)
    activation_target_at: float = 0.0

    def apply(self, fq: GAQPotential, progress: float) -> dict:
        """Set bit widths / switches of ``fq`` for ``progress`` in [0, 1]; returns the state for the log."""
        spec = fq.spec

        def bits(name: str) -> int:
            target = spec.bits_for(name)
            return target if progress >= self.scalar_target_at else max(self.scalar_start_bits, target)

        w_bits = bits("")  # the bit width of every layer not kept at 8 bits
        for name in fq.weight_names():
            fq.weight_q[_key(name)].set_bits(bits(name))
        fq.embed_q.set_bits(bits("embedding"))
        vectors_on = progress >= self.vector_enable_at
        fine = self.activation_start_bits and progress < self.activation_target_at
        a_bits = max(self.activation_start_bits, spec.activation_bits) if fine else spec.activation_bits
        for q in fq.input_q.values():
            q.set_bits(a_bits)
        v_bits = (
            spec.activation_bits
            if progress >= self.vector_target_at
            else max(self.vector_start_bits, spec.activation_bits)
        )
        v_bits = max(v_bits, a_bits)
        frozen = progress >= self.vector_freeze_at
        for q in fq.quantizers("vector"):
            q.enabled = vectors_on
            q.set_bits(v_bits)
            for p in q.parameters():
                p.requires_grad_(not frozen)
        return {
            "weight_bits": w_bits,
            "activation_bits": a_bits,
            "vector_bits": v_bits if vectors_on else 32,
            "vector_frozen": frozen,
        }


NO_SCHEDULE = QATSchedule(
    scalar_start_bits=0,
    scalar_target_at=0.0,
    vector_enable_at=0.0,
    vector_start_bits=0,
    vector_target_at=0.0,
    vector_freeze_at=2.0,
)  # every quantizer at its target from the first step (the ablation)


def _log(path: Path | None, record: dict) -> None:
    print(json.dumps(record), flush=True)
    if path is not None:
        with open(path, "a") as fh:
            fh.write(json.dumps(record, sort_keys=True) + "\n")


def fit(
    model: torch.nn.Module,
    train_set: LabelledSet,
    *,
    max_minutes: float = 0.0,
    max_steps: int = 0,
    lr: float = 1e-4,
    step_lr: float = 1e-5,
    min_lr: float = 1e-6,
    batch_size: int = 16,
    energy_weight: float = 10.0,
    force_weight: float = 1.0,
    schedule: QATSchedule | None = None,
    teacher: torch.nn.Module | None = None,
    distill_fraction: float = 0.5,
    jitter: float = 0.03,
    seed: int = 0,
    log: Path | None = None,
    log_every: int = 25,
) -> dict:
    """Energy + force training of ``model`` (float or :class:`GAQPotential`) with a cosine learning rate.

    The run ends after ``max_minutes`` of wall clock or ``max_steps`` steps (whichever is set; both: first).
    For a :class:`GAQPotential`, ``schedule`` sets the branch bit widths from the run's progress.

    With a ``teacher`` (the float model), each batch is part data, part distillation: a ``distill_fraction``
    of its frames has every atom displaced by Gaussian noise of ``jitter`` Angstrom, and those frames are
    labelled with the teacher's energy and forces instead of the reference ones. The student thus sees new
    configurations around the training set every step, and learns the float model's function there.
    """
    if not (max_minutes or max_steps):
        raise ValueError("give max_minutes or max_steps")
    if teacher is not None:
        if not 0.0 < distill_fraction <= 1.0 or jitter < 0.0:
            raise ValueError(
                f"distillation needs 0 < distill_fraction <= 1 and jitter >= 0, got {distill_fraction}, {jitter}"
            )
        teacher = teacher.eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
    noise = torch.Generator().manual_seed(seed * 7_919 + 17)
    quantizer_params = [p for n, p in model.named_parameters() if n.endswith(".step") or n == "step"]
    ids = {id(p) for p in quantizer_params}
    groups = [{"params": [p for p in model.parameters() if id(p) not in ids], "lr": lr, "base": lr}]
    if quantizer_params:
        groups.append({"params": quantizer_params, "lr": step_lr, "base": step_lr})
    optimizer = torch.optim.Adam(groups)
    t0, step, epoch, state = time.perf_counter(), 0, 0, {}
    budget = max_minutes * 60.0
    losses: list[float] = []

    def progress() -> float:
        parts = []
        if budget:
            parts.append((time.perf_counter() - t0) / budget)
        if max_steps:
            parts.append(step / max_steps)
        return max(parts)

    model.train()
    done = False
    while not done:
        for b in batches(train_set, batch_size, shuffle=True, seed=seed * 100_003 + epoch):
            frac = progress()
            if frac >= 1.0:
                done = True
                break
            if schedule is not None and isinstance(model, GAQPotential):
                state = schedule.apply(model, frac)
            for group in optimizer.param_groups:
                group["lr"] = min_lr + 0.5 * (group["base"] - min_lr) * (1.0 + math.cos(math.pi * frac))
            dtype = next(model.parameters()).dtype
            positions, ref_energy, ref_forces = b.positions.to(dtype), b.energy.to(dtype), b.forces.to(dtype)
            if teacher is not None:
                positions, ref_energy, ref_forces = _distilled(teacher, b, dtype, distill_fraction, jitter, noise)
            neighbours = neighbour_list(positions, model.config.cutoff, b.batch)
            energy, forces = model.energy_and_forces(
                b.numbers, positions, b.batch, n_graphs=b.n_graphs, create_graph=True, neighbours=neighbours
            )
            de = (energy - ref_energy) / b.n_atoms.to(dtype)
            loss = energy_weight * (de * de).mean() + force_weight * ((forces - ref_forces) ** 2).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_([p for g in groups for p in g["params"]], 10.0)
            optimizer.step()
            losses.append(float(loss.detach()))
            step += 1
            if step % log_every == 0:
                _log(
                    log,
                    {
                        "event": "step",
                        "step": step,
                        "progress": round(frac, 4),
                        "lr": optimizer.param_groups[0]["lr"],
                        "loss": float(np.mean(losses[-log_every:])),
                        **state,
                    },
                )
        epoch += 1
    if schedule is not None and isinstance(model, GAQPotential):
        state = schedule.apply(model, 1.0)
    model.eval()
    return {
        "steps": step,
        "epochs_started": epoch,
        "minutes": round((time.perf_counter() - t0) / 60.0, 2),
        "first_loss": float(np.mean(losses[:log_every])) if losses else None,
        "last_loss": float(np.mean(losses[-log_every:])) if losses else None,
    }


def _distilled(
    teacher: torch.nn.Module, b, dtype: torch.dtype, fraction: float, jitter: float, noise: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Positions and energy/force targets of batch ``b`` with a ``fraction`` of its frames jittered and
    labelled by ``teacher`` (at least one frame when the fraction is positive)."""
    n = b.n_graphs
    k = max(1, int(round(fraction * n)))
    chosen = torch.zeros(n, dtype=torch.bool)
    chosen[torch.randperm(n, generator=noise)[:k]] = True
    atoms = chosen[b.batch]
    positions = b.positions.to(dtype) + jitter * torch.randn(b.positions.shape, generator=noise).to(dtype) * atoms[
        :, None
    ].to(dtype)
    neighbours = neighbour_list(positions, teacher.config.cutoff, b.batch)
    t_energy, t_forces = teacher.energy_and_forces(b.numbers, positions, b.batch, n_graphs=n, neighbours=neighbours)
    energy = torch.where(chosen, t_energy.detach().to(dtype), b.energy.to(dtype))
    forces = torch.where(atoms[:, None], t_forces.detach().to(dtype), b.forces.to(dtype))
    return positions.detach(), energy, forces


def retarget_attention(model: EquivariantPotential, attention: str) -> EquivariantPotential:
    """A copy of ``model`` with another attention kind (same weights; fine-tune it afterwards)."""
    config = PotentialConfig(**{**asdict(model.config), "attention": attention})
    clone = EquivariantPotential(config)
    clone.load_state_dict(model.state_dict())
    return clone


def qat(
    float_model: EquivariantPotential,
    dataset: LabelledSet,
    spec: QuantSpec,
    *,
    schedule: QATSchedule | None = None,
    log: Path | None = None,
    **fit_args,
) -> tuple[GAQPotential, dict]:
    """Calibrate on the training split, then fine-tune with QAT; returns the model and test/val metrics."""
    torch.manual_seed(fit_args.get("seed", 0))
    train_set = dataset.split_set("train")
    fq = quantize(float_model, spec, train_set)
    ptq = evaluate(fq, dataset.split_set("val"))
    _log(log, {"event": "calibrated", "spec": asdict(spec), "val_ptq": ptq})
    summary = fit(fq, train_set, schedule=schedule or QATSchedule(), log=log, **fit_args)
    result = {"event": "test", **summary, "reference": "GFN2-xTB"}
    result.update({f"val_{k}": v for k, v in evaluate(fq, dataset.split_set("val")).items() if k != "frames"})
    result.update({f"test_{k}": v for k, v in evaluate(fq, dataset.split_set("test")).items()})
    _log(log, result)
    return fq, result


def main(argv: Sequence[str] | None = None) -> dict:
    """Command line: QAT from a float checkpoint and write the packed W4A8 checkpoint folder."""
    from simulation.quantize.pack import save_packed

    parser = argparse.ArgumentParser(prog="python -m simulation.quantize.qat", description=__doc__.split("\n")[0])
    parser.add_argument("--float", dest="float_ckpt", required=True, help="float checkpoint folder")
    parser.add_argument(
        "--attention",
        choices=("cosine", "dot"),
        default=None,
        help="ablation: first fine-tune the --float weights in float with this attention (saved in OUT/float)",
    )
    parser.add_argument("--float-steps", type=int, default=100, help="steps of the --attention float fine-tuning")
    parser.add_argument("--dataset", required=True, help="labelled .npz with train/val/test splits")
    parser.add_argument("--out", required=True, help="output folder for the packed checkpoint")
    parser.add_argument("--weight-bits", type=int, default=4)
    parser.add_argument("--activation-bits", type=int, default=8)
    parser.add_argument("--vector", default="mddq", help="mddq | mddq-sphere | naive | none")
    parser.add_argument(
        "--activation-scale",
        choices=ACTIVATION_SCALES,
        default="row",
        help="scalar inputs: a dynamic step per row (atom or pair; default), or one static step per tensor",
    )
    parser.add_argument("--no-schedule", action="store_true", help="every quantizer at target from step 0")
    parser.add_argument(
        "--activation-start-bits",
        type=int,
        default=0,
        help="activations start at this finer bit width (e.g. 16) ... (0: at the target from the start)",
    )
    parser.add_argument(
        "--activation-target-at",
        type=float,
        default=0.0,
        help="... and drop to --activation-bits at this fraction of the run",
    )
    parser.add_argument(
        "--int8-layers",
        default="",
        help="comma-separated layers whose weights stay at 8 bits (mixed precision), e.g. embedding,readout",
    )
    parser.add_argument("--max-minutes", type=float, default=4.0)
    parser.add_argument("--max-steps", type=int, default=0)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--step-lr", type=float, default=1e-5, help="learning rate of the LSQ steps")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument(
        "--distill",
        type=float,
        default=0.0,
        metavar="FRACTION",
        help="fraction of each batch's frames jittered and labelled by the float model (0: data only)",
    )
    parser.add_argument(
        "--jitter", type=float, default=0.03, help="Angstrom; Gaussian displacement of distilled frames"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    if args.no_schedule and args.activation_start_bits:
        parser.error("--no-schedule puts every quantizer at its target: drop --activation-start-bits")
    if args.activation_start_bits:
        check_bits(args.activation_start_bits, "activation")
    torch.set_num_threads(max(1, args.threads))
    spec = QuantSpec(
        args.weight_bits,
        args.activation_bits,
        args.vector,
        tuple(filter(None, args.int8_layers.split(","))),
        args.activation_scale,
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = out / LOG_NAME
    if log.exists():
        log.unlink()
    dataset = LabelledSet.load(args.dataset)
    if args.attention:
        model = retarget_attention(EquivariantPotential.from_pretrained(args.float_ckpt), args.attention)
        summary = fit(
            model,
            dataset.split_set("train"),
            max_steps=args.float_steps,
            lr=3e-4,
            min_lr=1e-5,
            batch_size=args.batch_size,
            seed=args.seed,
            log=log,
        )
        metrics = {f"test_{k}": v for k, v in evaluate(model, dataset.split_set("test")).items()}
        _log(log, {"event": "float_test", "attention": args.attention, **summary, **metrics})
        args.float_ckpt = str(model.save_pretrained(out / "float"))
    model = EquivariantPotential.from_pretrained(args.float_ckpt)
    schedule = (
        NO_SCHEDULE
        if args.no_schedule
        else QATSchedule(
            activation_start_bits=args.activation_start_bits, activation_target_at=args.activation_target_at
        )
    )
    _log(
        log,
        {
            "event": "start",
            "float": args.float_ckpt,
            "dataset": args.dataset,
            "schedule": asdict(schedule),
            **vars(args),
        },
    )
    fq, result = qat(
        model,
        dataset,
        spec,
        schedule=schedule,
        log=log,
        max_minutes=args.max_minutes,
        max_steps=args.max_steps,
        lr=args.lr,
        step_lr=args.step_lr,
        batch_size=args.batch_size,
        seed=args.seed,
        teacher=EquivariantPotential.from_pretrained(args.float_ckpt) if args.distill > 0 else None,
        distill_fraction=args.distill or 0.5,
        jitter=args.jitter,
    )
    save_packed(fq, out, extra={"float_checkpoint": args.float_ckpt, "dataset": Path(args.dataset).name, "qat": result})
    return result


if __name__ == "__main__":
    main()
