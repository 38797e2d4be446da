"""Continual learning from the datastore: teach a bundle a new structure (a new or updated
expert, then the gate over all of them) from labels submitted through the MONAI Label API, and
serve the result only if a non-forgetting guard accepts it.

- :mod:`~medmoe.continual.config`: the request, the settings, the job's spec;
- :mod:`~medmoe.continual.selection`: which labels train which gate class, which scans are
  held back (pure);
- :mod:`~medmoe.continual.crops`: label crops and replay crops (the serving model's own masks);
- :mod:`~medmoe.continual.guard`: the before/after table and the decision;
- :mod:`~medmoe.continual.pipeline`: one job; :mod:`~medmoe.continual.worker` runs it in its own
  process; :mod:`~medmoe.continual.runner` runs one worker at a time for the server;
- :mod:`~medmoe.continual.versions`: the versioned bundle folders.
"""

from medmoe.continual.config import CaseSpec, ContinualConfig, JobSpec, TrainRequest
from medmoe.continual.guard import GuardDecision, GuardRow, decide
from medmoe.continual.runner import JobBusy, TrainRunner
from medmoe.continual.selection import Plan, label_values, plan_job

__all__ = [
    "CaseSpec",
    "ContinualConfig",
    "GuardDecision",
    "GuardRow",
    "JobBusy",
    "JobSpec",
    "Plan",
    "TrainRequest",
    "TrainRunner",
    "decide",
    "label_values",
    "plan_job",
]
