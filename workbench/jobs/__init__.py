"""Design campaigns and batch jobs: job files, the runner, the SQLite result store and executors.

>>> from workbench.jobs import JobConfig
>>> JobConfig().proposers[0].type
'library'
"""

from workbench.jobs.executors import make_executor
from workbench.jobs.jobfile import JobConfig, load_job
from workbench.jobs.runner import CampaignResult, run
from workbench.jobs.store import ResultStore

__all__ = ["JobConfig", "load_job", "run", "CampaignResult", "ResultStore", "make_executor"]
