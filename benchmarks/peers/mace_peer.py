"""MACE peer for benchmarks/potential.py: train a randomly initialised MACE on a workbench data set, then time it.

Runs inside the peers' own virtualenv (``.venv-peers``: torch 2.13.0, mace-torch with its pinned e3nn 0.4.4,
openmm), never the main environment, and reads the ``.npz`` data set with NumPy alone (no workbench import).

1. **Train** ``ScaleShiftMACE`` from random weights on the ``train`` split with the same loss as
   ``simulation.train`` (``energy_weight * mean((dE / atoms)^2) + force_weight * mean(|dF|^2)``), Adam, a cosine
   learning-rate schedule over a wall-clock budget, and EMA weights; the model state with the best validation
   loss is kept.
2. **Test**: energy MAE (meV) and force MAE (meV/Angstrom) on the ``test`` split, as ``simulation.train.evaluate``.
3. **Speed**: the model drives an ``openmm.PythonForce`` (Verlet, 0.5 fs) on a test frame of the molecule; the
   graph uses every ordered atom pair (molecules here are smaller than the cutoff sphere), so no neighbour list is
   rebuilt per step, the same static-graph trick as the workbench potential's fast path.

Writes one JSON object to ``--json``.

    .venv-peers/bin/python benchmarks/peers/mace_peer.py --dataset simulation/data/ethanol.npz \
        --minutes 15 --json /tmp/mace_ethanol.json
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import sys
import time

import numpy as np
import torch

EV_TO_KJ_PER_MOL = 96.48533212331002

# e3nn 0.4.4 (pinned by mace-torch) reads its own packaged constants.pt with torch.load, which since torch 2.6
# defaults to weights_only=True and rejects the file's `slice` objects; allow exactly that builtin.
torch.serialization.add_safe_globals([slice])


def load(path: str) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as f:
        data = {k: f[k] for k in ("numbers", "positions", "forces", "energy", "n_atoms", "split")}
    offsets = np.concatenate([[0], np.cumsum(data["n_atoms"])])
    data["offsets"] = offsets
    return data


def frames(data: dict, split: int) -> list[int]:
    return [int(k) for k in np.where(data["split"] == split)[0]]


def frame(data: dict, k: int) -> tuple[np.ndarray, np.ndarray, float, np.ndarray]:
    a, b = data["offsets"][k], data["offsets"][k + 1]
    return (
        data["numbers"][a:b].astype(np.int64),
        data["positions"][a:b].astype(np.float64),
        float(data["energy"][k]),
        data["forces"][a:b].astype(np.float64),
    )


def element_energies(data: dict, indices: list[int], elements: list[int]) -> np.ndarray:
    """Per-element energies from a least-squares fit (minimum norm for a single composition)."""
    counts = np.zeros((len(indices), len(elements)))
    energy = np.zeros(len(indices))
    for row, k in enumerate(indices):
        z, _, e, _ = frame(data, k)
        for c, el in enumerate(elements):
            counts[row, c] = np.sum(z == el)
        energy[row] = e
    shifts, *_ = np.linalg.lstsq(counts, energy, rcond=None)
    return shifts


def build_model(args, elements: list[int], e0: np.ndarray, avg_neighbours: float, scale: float, shift: float):
    from e3nn import o3
    from mace import modules

    return modules.ScaleShiftMACE(
        r_max=args.cutoff,
        num_bessel=8,
        num_polynomial_cutoff=5,
        max_ell=args.max_ell,
        interaction_cls=modules.interaction_classes["RealAgnosticResidualInteractionBlock"],
        interaction_cls_first=modules.interaction_classes["RealAgnosticResidualInteractionBlock"],
        num_interactions=args.interactions,
        num_elements=len(elements),
        hidden_irreps=o3.Irreps(args.hidden_irreps),
        MLP_irreps=o3.Irreps("16x0e"),
        atomic_energies=e0,
        avg_num_neighbors=avg_neighbours,
        atomic_numbers=elements,
        correlation=args.correlation,
        gate=torch.nn.functional.silu,
        atomic_inter_scale=scale,
        atomic_inter_shift=shift,
    )


def to_atomic_data(z, x, e, f, z_table, cutoff):
    from mace import data as mace_data

    config = mace_data.Configuration(
        atomic_numbers=z,
        positions=x,
        properties={"energy": e, "forces": f},
        property_weights={"energy": 1.0, "forces": 1.0},
        cell=np.zeros((3, 3)),
        pbc=(False, False, False),
    )
    return mace_data.AtomicData.from_config(config, z_table=z_table, cutoff=cutoff)


def evaluate(model, loader) -> dict[str, float]:
    e_err, f_abs, n_comp, frames_seen = [], 0.0, 0, 0
    for batch in loader:
        out = model(batch.to_dict(), training=False, compute_force=True)
        n_atoms = batch.ptr[1:] - batch.ptr[:-1]
        e_err.append((out["energy"].detach().double() - batch.energy.double()).abs().numpy())
        df = (out["forces"].detach() - batch.forces).double()
        f_abs += float(df.abs().sum())
        n_comp += df.numel()
        frames_seen += int(n_atoms.numel())
    return {
        "frames": frames_seen,
        "energy_mae_mev": 1000.0 * float(np.concatenate(e_err).mean()),
        "force_mae_mev_per_a": 1000.0 * f_abs / n_comp,
    }


def loss_fn(model, batch, energy_weight: float, force_weight: float) -> torch.Tensor:
    out = model(batch.to_dict(), training=True, compute_force=True)
    n_atoms = (batch.ptr[1:] - batch.ptr[:-1]).to(out["energy"].dtype)
    de = (out["energy"] - batch.energy) / n_atoms
    return energy_weight * (de * de).mean() + force_weight * ((out["forces"] - batch.forces) ** 2).mean()


def train(args, data: dict) -> tuple[torch.nn.Module, dict]:
    from mace import tools
    from mace.tools import torch_geometric

    train_idx, val_idx, test_idx = frames(data, 0), frames(data, 1), frames(data, 2)
    elements = sorted({int(z) for z in data["numbers"]})
    z_table = tools.AtomicNumberTable(elements)
    e0 = element_energies(data, train_idx, elements)

    def dataset(indices):
        return [to_atomic_data(*frame(data, k), z_table, args.cutoff) for k in indices]

    train_set, val_set, test_set = dataset(train_idx), dataset(val_idx), dataset(test_idx)
    avg_neighbours = float(np.mean([d.edge_index.shape[1] / d.num_nodes for d in train_set]))
    # Scale = RMS force, shift = mean per-atom interaction energy after the element energies (as MACE does).
    residual = []
    for k in train_idx:
        z, _, e, _ = frame(data, k)
        residual.append((e - sum(e0[elements.index(int(a))] for a in z)) / len(z))
    scale = float(np.sqrt(np.mean(data["forces"][: data["offsets"][len(train_idx)]] ** 2)))
    shift = float(np.mean(residual))
    model = build_model(args, elements, e0, avg_neighbours, scale, shift)
    n_params = sum(p.numel() for p in model.parameters())

    loader = torch_geometric.dataloader.DataLoader(train_set, batch_size=args.batch_size, shuffle=True, drop_last=True)
    val_loader = torch_geometric.dataloader.DataLoader(val_set, batch_size=64, shuffle=False)
    test_loader = torch_geometric.dataloader.DataLoader(test_set, batch_size=64, shuffle=False)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr, amsgrad=True)
    ema = copy.deepcopy(model)
    for p in ema.parameters():
        p.requires_grad_(False)

    budget = 60.0 * args.minutes
    start, cpu_start = time.perf_counter(), time.process_time()
    best, best_state, epochs, steps, log = math.inf, None, 0, 0, []
    while time.perf_counter() - start < budget:
        model.train()
        for batch in loader:
            spent = (time.perf_counter() - start) / budget
            if spent >= 1.0:
                break
            lr = args.min_lr + 0.5 * (args.lr - args.min_lr) * (1.0 + math.cos(math.pi * spent))
            for group in optimizer.param_groups:
                group["lr"] = lr
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model, batch, args.energy_weight, args.force_weight)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
            optimizer.step()
            steps += 1
            with torch.no_grad():
                decay = min(args.ema, (1.0 + steps) / (10.0 + steps))
                for pe, pm in zip(ema.parameters(), model.parameters(), strict=True):
                    pe.mul_(decay).add_(pm.detach(), alpha=1.0 - decay)
        epochs += 1
        ema.eval()
        val = evaluate(ema, val_loader)
        score = val["energy_mae_mev"] / 1000.0 * args.energy_weight / 10 + val["force_mae_mev_per_a"] / 1000.0
        log.append({"epoch": epochs, "minutes": (time.perf_counter() - start) / 60.0, **val})
        print(json.dumps(log[-1]), flush=True)
        if score < best:
            best, best_state = score, copy.deepcopy(ema.state_dict())
    if best_state is not None:
        ema.load_state_dict(best_state)
    ema.eval()
    test = evaluate(ema, test_loader)
    info = {
        "parameters": n_params,
        "epochs": epochs,
        "optimizer_steps": steps,
        "train_minutes": (time.perf_counter() - start) / 60.0,
        "train_cpu_minutes": (time.process_time() - cpu_start) / 60.0,  # below wall-clock on a busy machine
        "train_frames": len(train_idx),
        "test": test,
        "hyper_parameters": {
            k: getattr(args, k)
            for k in ("cutoff", "max_ell", "interactions", "hidden_irreps", "correlation", "batch_size", "lr")
        },
        "log": log,
    }
    ema.z_table_elements = elements
    return ema, info


def openmm_speed(model, data: dict, cutoff: float, steps: int, warmup: int) -> dict:
    """ns/day of Verlet NVE at 0.5 fs with the model in an ``openmm.PythonForce`` (Reference platform)."""
    import openmm
    import openmm.app as app
    from mace import data as mace_data
    from mace import tools
    from mace.tools import torch_geometric

    k = frames(data, 2)[0]
    z, x, _, _ = frame(data, k)
    n = len(z)
    z_table = tools.AtomicNumberTable(model.z_table_elements)
    # A graph of all ordered pairs: the cutoff envelope of MACE's radial basis zeroes far pairs, so for
    # molecules smaller than the cutoff sphere this equals the neighbour-list graph and never goes stale.
    config = mace_data.Configuration(
        atomic_numbers=z,
        positions=x,
        properties={},
        property_weights={},
        cell=np.zeros((3, 3)),
        pbc=(False, False, False),
    )
    graph = mace_data.AtomicData.from_config(config, z_table=z_table, cutoff=1e3)
    template = next(iter(torch_geometric.dataloader.DataLoader([graph], batch_size=1))).to_dict()
    dtype = next(model.parameters()).dtype
    for key, value in list(template.items()):
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            template[key] = value.to(dtype)
    for p in model.parameters():
        p.requires_grad_(False)
    buffer = np.empty((n, 3))

    def compute(state):
        state._getVectorAsNumpy(openmm.State.Positions, buffer)
        batch = dict(template)
        batch["positions"] = torch.from_numpy(buffer * 10.0).to(dtype)
        out = model(batch, training=False, compute_force=True)
        energy = float(out["energy"].detach()[0]) * EV_TO_KJ_PER_MOL
        return energy, out["forces"].detach().double().numpy() * (EV_TO_KJ_PER_MOL * 10.0)

    system = openmm.System()
    for a in z:
        system.addParticle(app.Element.getByAtomicNumber(int(a)).mass)
    system.addForce(openmm.PythonForce(compute))
    integrator = openmm.VerletIntegrator(0.5 * openmm.unit.femtosecond)
    context = openmm.Context(system, integrator, openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(x / 10.0)
    context.setVelocitiesToTemperature(300.0, 1)
    integrator.step(warmup)
    t = time.perf_counter()
    integrator.step(steps)
    seconds = (time.perf_counter() - t) / steps
    return {
        "atoms": n,
        "steps_timed": steps,
        "ms_per_step": 1000.0 * seconds,
        "ns_per_day": 0.5e-6 * 86400.0 / seconds,
        "dtype": str(dtype).replace("torch.", ""),
        "platform": "Reference",
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--json", required=True)
    parser.add_argument("--minutes", type=float, default=15.0)
    parser.add_argument("--cutoff", type=float, default=5.0)
    parser.add_argument("--max-ell", type=int, default=2)
    parser.add_argument("--interactions", type=int, default=2)
    parser.add_argument("--hidden-irreps", default="64x0e + 64x1o")
    parser.add_argument("--correlation", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=5e-3)
    parser.add_argument("--min-lr", type=float, default=1e-5)
    parser.add_argument("--ema", type=float, default=0.99)
    parser.add_argument("--energy-weight", type=float, default=10.0)
    parser.add_argument("--force-weight", type=float, default=1.0)
    parser.add_argument("--speed-steps", type=int, default=300)
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--parameters-only", action="store_true", help="print the parameter count and stop")
    args = parser.parse_args(argv)

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    torch.set_default_dtype(getattr(torch, args.dtype))
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    data = load(args.dataset)
    if args.parameters_only:
        elements = sorted({int(z) for z in data["numbers"]})
        model = build_model(args, elements, np.zeros(len(elements)), 8.0, 1.0, 0.0)
        print(sum(p.numel() for p in model.parameters()))
        return
    model, info = train(args, data)
    info["speed"] = openmm_speed(model, data, args.cutoff, args.speed_steps, warmup=20)
    import mace

    info["mace_version"] = getattr(mace, "__version__", "unknown")
    info["torch_version"] = torch.__version__
    with open(args.json, "w") as fh:
        json.dump(info, fh, indent=2)
    print(json.dumps({k: v for k, v in info.items() if k != "log"}), file=sys.stderr)


if __name__ == "__main__":
    main()
