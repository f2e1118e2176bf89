"""SevenNet-0 peer for benchmarks/potential.py: MD speed in OpenMM through openmm-ml's ``MLPotential("ase")``.

Runs in its own virtualenv (``.venv-peers/sevenn``: sevenn needs e3nn >= 0.5, mace-torch pins 0.4.4). The
SevenNet-0 weights ship inside the ``sevenn`` wheel; nothing is downloaded. SevenNet-0 is trained on inorganic
materials, so only its speed is measured (Verlet, 0.5 fs, Reference platform, one thread).

    .venv-peers/sevenn/bin/python benchmarks/peers/sevenn_peer.py --structure /tmp/ethanol.json --json out.json

``--structure`` is a JSON object ``{"numbers": [...], "positions": [[x, y, z], ...]}`` (Angstrom).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--structure", required=True)
    parser.add_argument("--json", required=True)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args(argv)

    import openmm
    import openmm.app as app
    import torch
    from openmmml import MLPotential
    from sevenn.calculator import SevenNetCalculator

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    with open(args.structure) as fh:
        structure = json.load(fh)
    numbers = [int(z) for z in structure["numbers"]]
    positions = np.asarray(structure["positions"], dtype=np.float64)
    topology = app.Topology()
    residue = topology.addResidue("MOL", topology.addChain())
    for k, z in enumerate(numbers):
        element = app.Element.getByAtomicNumber(z)
        topology.addAtom(f"{element.symbol}{k}", element, residue)
    calculator = SevenNetCalculator("7net-0", device="cpu")
    system = MLPotential("ase").createSystem(topology, calculator=calculator)
    integrator = openmm.VerletIntegrator(0.5 * openmm.unit.femtosecond)
    context = openmm.Context(system, integrator, openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(positions / 10.0)
    context.setVelocitiesToTemperature(300.0, 1)
    integrator.step(args.warmup)
    start = time.perf_counter()
    integrator.step(args.steps)
    seconds = (time.perf_counter() - start) / args.steps
    import sevenn

    result = {
        "atoms": len(numbers),
        "steps_timed": args.steps,
        "ms_per_step": 1000.0 * seconds,
        "ns_per_day": 0.5e-6 * 86400.0 / seconds,
        "platform": "Reference",
        "model": "SevenNet-0 (7net-0) via openmmml MLPotential('ase')",
        "sevenn_version": getattr(sevenn, "__version__", "unknown"),
        "torch_version": torch.__version__,
    }
    with open(args.json, "w") as fh:
        json.dump(result, fh, indent=2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
