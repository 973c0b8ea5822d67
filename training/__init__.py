"""How the model changes: LoRA training jobs (SFT → DPO or KTO) that produce immutable adapter versions.

    from training.jobs import JobManager          # launch / watch / cancel / resume a job subprocess
    from training.pipeline import run_pipeline    # one job's stages, in-process (what the subprocess runs)

Importing this package is cheap: torch, transformers and TRL load only inside the job process.
"""

from __future__ import annotations


class TrainingError(Exception):
    """Base class of the training errors; each message says what to do."""


class NotEnoughDataError(TrainingError):
    """Too little curated feedback for any training stage; `counts` and `needed` say how much of each."""

    def __init__(self, counts: dict[str, int], needed: dict[str, int]) -> None:
        self.counts = dict(counts)
        self.needed = dict(needed)
        super().__init__(
            "not enough curated feedback to train: "
            f"{counts.get('sft', 0)} SFT examples (need {needed['sft']}), "
            f"{counts.get('dpo', 0)} preference pairs (need {needed['dpo']}), "
            f"{counts.get('kto', 0)} rated answers (need {needed['kto']}). "
            "Collect more corrections and ratings, or lower min_sft_items / min_pref_items / min_kto_items "
            "in the job config."
        )


class TrainingCancelled(TrainingError):
    """A job stopped early because a cancel was requested; its partial output is discarded."""


class JobAlreadyRunningError(TrainingError):
    """Only one training job runs at a time (two would fight over the same cores)."""


class JobNotFoundError(TrainingError, KeyError):
    """No training job has that id."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""
