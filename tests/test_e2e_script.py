"""bench/e2e_preference.py --quick: the whole tuning loop through the product's interfaces, on the tiny model.

A server subprocess, simulated users rating through the openai client and /v1/feedback(/compare), one job via
POST /admin/train, its gate, a promotion and the before/after table. ~45 s on 2 busy cores.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.server import REPO


def test_e2e_preference_quick_runs_the_whole_loop(tiny_model_dir: Path, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "e2e_preference.py"), "--quick", "--data-dir", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    assert "users done: 20 prompts rated" in out
    assert "job job_" in out and "succeeded" in out
    assert "gate: " in out and "criterion" in out  # the gate report was printed
    assert "promoted v0001" in out
    table = out[out.index("held-out prompts:") :]
    assert "metric" in table and "before" in table and "after" in table
    for row in ("preference (In short: + one sentence)", "key fact mentioned", "mean words"):
        assert row in table
