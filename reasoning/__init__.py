"""reasoning: a compact molecular reasoning language model (design spec -> reasoning steps -> SMILES).

The model reads a :class:`DesignSpec`, writes an explicit trace (restated constraints, a scaffold,
substituents added one at a time with running property estimates, a check of every constraint) and
then a SMILES whose every token is constrained by RDKit chemistry rules, so each answer is a valid
molecule. Proposals are validated and spec-checked by the chemistry core, and failures are fed back.

>>> from reasoning import Proposer, DesignSpec
>>> spec = DesignSpec(properties={"mw": [200, 350]}, require=["C(=O)N"])
>>> proposals = Proposer.default(backend="compact").propose(spec, n=2, seed=0)  # doctest: +SKIP
>>> [(p.molecule.smiles, p.spec_report.ok) for p in proposals]  # doctest: +SKIP

Importing this package is cheap; torch loads on first use of the model.
"""

from __future__ import annotations

from workbench.chem.spec import DesignSpec

__all__ = ["Proposer", "Proposal", "ProposalList", "DesignSpec"]


def __getattr__(name: str):
    if name in ("Proposer", "Proposal", "ProposalList"):
        from reasoning import proposer

        return getattr(proposer, name)
    raise AttributeError(f"module 'reasoning' has no attribute {name!r}")
