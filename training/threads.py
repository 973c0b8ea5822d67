"""CPU thread budget for a training job process.

The job runs in its own process; its thread count is fixed twice: in the environment before the process
starts (OpenMP/MKL read it once, at import) and with `torch.set_num_threads` inside it. FACTS.md: asking
for more threads than there are free cores made a batch 30x slower, so the count is explicit, never "auto"
inside torch.
"""

from __future__ import annotations

import os
from pathlib import Path

_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def available_cores() -> int:
    """Cores this process may run on (respects taskset / cgroup affinity, unlike os.cpu_count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def resolve_threads(requested: int) -> int:
    """0 means every available core; otherwise the request, capped at the available cores."""
    cores = available_cores()
    return cores if requested <= 0 else min(requested, cores)


def thread_env(threads: int) -> dict[str, str]:
    """Environment variables that pin the native thread pools of a child process to `threads`."""
    env = {name: str(threads) for name in _THREAD_VARS}
    # Tokenizers' own pool would add threads on top of torch's budget.
    env["TOKENIZERS_PARALLELISM"] = "false"
    return env


def apply_threads(threads: int) -> None:
    """Pin torch in this process to `threads` intra-op threads and one inter-op thread."""
    import torch

    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass  # only settable before the first parallel op; harmless if torch already started


class ThreadBudget:
    """A job's thread count that the server can change while the job runs, through a file in the job dir.

    The server writes a number to `jobs/<id>/threads` (JobManager.set_threads) when chats need cores or
    leave them idle; the job calls `poll()` between optimizer steps and applies a change at once.
    """

    def __init__(self, path: Path, threads: int) -> None:
        self.path = path
        self.threads = threads
        self._seen: float | None = None

    def poll(self) -> int | None:
        """The new thread count if the file changed since the last poll (and applies it), else None."""
        try:
            mtime = self.path.stat().st_mtime
        except FileNotFoundError:
            return None
        if mtime == self._seen:
            return None
        self._seen = mtime
        try:
            wanted = resolve_threads(int(self.path.read_text().strip()))
        except ValueError:
            return None  # half-written or garbage: keep the current count
        if wanted == self.threads:
            return None
        self.threads = wanted
        apply_threads(wanted)
        return wanted
