"""Attach the optional parts of the running app (training jobs, version registry, routing).

Each part adds routers to ctx.extras["routers"] and objects to ctx.extras; a part whose module is not
present is skipped, so the server runs with whatever is installed.
"""

from __future__ import annotations

import logging

from .context import AppContext

log = logging.getLogger(__name__)


def attach_all(ctx: AppContext) -> None:
    ctx.extras.setdefault("routers", [])
    __import__("assistant.versions_api", fromlist=["attach_versions"]).attach_versions(ctx)
