"""A transformers ``TrainerCallback`` that logs the trainer's numbers to a ``liquid_shared`` tracked run.

TRL's own ``report_to="mlflow"`` would use MLflow's global active run and its own tracking-URI
lookup; ours goes through ``liquid_shared.tracking`` like every other component (explicit run ids,
the project's tracking URI, a local copy of every metric), so a fine-tuning run nests under an
experiment's run when one is open.
"""

from __future__ import annotations

import math
from typing import Any

from transformers import TrainerCallback


class TrackingCallback(TrainerCallback):
    def __init__(self, run: Any):
        self.run = run

    def on_log(self, args, state, control, logs=None, **kwargs):
        numbers = {k: float(v) for k, v in (logs or {}).items()
                   if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(float(v))}
        if numbers:
            self.run.log_metrics(numbers, step=int(state.global_step))
