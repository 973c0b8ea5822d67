"""Load (bench/load.py run short): raters and chatters at once; 0 5xx, 0 lost ratings, TTFT reported.

Quick: 8 raters + 2 chatters for 8 s on the shared tiny-model server. Full: 32 + 8 for 60 s.
"""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType
from typing import Any

import pytest

from tests.reliability.conftest import FULL, QUICK
from tests.server import REPO, Server


def bench_load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_load", REPO / "bench" / "load.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
@pytest.mark.parametrize(
    "scale",
    [
        pytest.param(QUICK, id="quick"),
        pytest.param(FULL, id="full", marks=[pytest.mark.full, pytest.mark.timeout(900)]),
    ],
)
def test_raters_and_chatters_under_load(tiny_server: Server, scale: dict[str, Any]) -> None:
    load = bench_load()
    result = load.run_load(
        tiny_server.base_url,
        tiny_server.db_path,
        raters=scale["raters"],
        chatters=scale["chatters"],
        seconds=scale["load_s"],
    )
    print("\n" + load.table(result))
    figures = result.as_dict()
    assert figures["server_errors"] == 0, figures["status_codes"]
    assert not result.transport_errors, result.transport_errors[:5]
    assert set(result.rating_codes) == {200} and set(result.chat_codes) == {200}, figures["status_codes"]
    assert figures["lost_ratings"] == 0 and figures["changed_ratings"] == 0
    assert figures["ratings_ok"] >= 10 * scale["raters"] and figures["chats_ok"] >= scale["chatters"]
    assert figures["ttft_p95_ms"] is not None
