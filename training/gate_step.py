"""The gate as the last phase of a training job: score the new version against its parent, in the job's
own process (it already holds the cores, and the server's torch thread stays free).

The report goes to `jobs/<id>/gate.json`; the server registers the version with it and applies the
promotion policy. The automatic gate answers a deterministic sample of the regression suite (a full run:
`python -m assistant eval VERSION`); with fewer items per category one changed answer moves a rate
further, so its tolerance is wider.
"""

from __future__ import annotations

import json
import os
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

AUTO_GATE_ITEMS = int(os.environ.get("ASSISTANT_GATE_SUITE_ITEMS", "40"))
AUTO_GATE_TOKENS = int(os.environ.get("ASSISTANT_GATE_MAX_NEW_TOKENS", "64"))
AUTO_GATE_TOLERANCE = 0.15


def run_gate(
    job_dir: Path,
    adapters_dir: Path,
    model_dir: Path,
    version: str,
    parent: str | None,
    datasets_dir: Path | None,
    threads: int,
    progress: Callable[[dict[str, Any]], None],
    step: int,
) -> dict[str, Any]:
    """Evaluate `version` against `parent` (None: the base); never raises: a crash is a failed gate."""
    progress({"phase": "gate", "step": step, "total_steps": step})
    try:
        from training.evaluate import GateConfig, evaluate, format_report

        config = GateConfig(
            max_suite_items=AUTO_GATE_ITEMS,
            max_new_tokens=AUTO_GATE_TOKENS,
            regression_tolerance=AUTO_GATE_TOLERANCE,
            threads=threads,
        )
        live_dir = adapters_dir / parent if parent and (adapters_dir / parent).is_dir() else None
        report = evaluate(adapters_dir / version, live_dir, model_dir, datasets_dir, config)
        print(format_report(report), flush=True)
        result = report.to_dict()
    except Exception as exc:  # the version stays; it just may not be promoted without a new gate run
        traceback.print_exc()
        result = {"passed": False, "error": f"the gate could not run: {type(exc).__name__}: {exc}"}
    tmp = job_dir / "gate.json.tmp"
    tmp.write_text(json.dumps(result, indent=2, default=str))
    os.replace(tmp, job_dir / "gate.json")
    progress({"phase": "gate", "step": step, "total_steps": step})
    return result
