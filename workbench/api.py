"""The notebook-first facade behind ``import workbench as wb``.

>>> import workbench as wb
>>> callable(wb.campaign)
True
"""

from __future__ import annotations

import os
from typing import Any

from workbench.jobs import CampaignResult, JobConfig, run

__all__ = ["campaign"]


def campaign(
    job: JobConfig | dict[str, Any] | str | os.PathLike,
    store: str | os.PathLike = "workbench-results.db",
    *,
    resume: bool = False,
    workers: int | None = None,
    executor: str = "local",
    progress: bool = True,
) -> CampaignResult:
    """Run a design campaign from a :class:`JobConfig`, a dict, YAML text or a job file path.

    Returns a :class:`CampaignResult` that renders as a ranked molecule grid in Jupyter and exports with
    ``.to_pandas()`` / ``.molecules().to_sdf(...)``.
    """
    if isinstance(job, dict):
        job = JobConfig.model_validate(job)
    elif isinstance(job, str) and not os.path.exists(job) and ("\n" in job or ":" in job):
        job = JobConfig.from_text(job)
    return run(job, store, resume=resume, executor=executor, workers=workers, progress=progress)
