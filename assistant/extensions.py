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
    __import__("assistant.plugins", fromlist=["attach_plugins"]).attach_plugins(ctx)
    # After versions: a finished job registers its version and may promote it through the router.
    __import__("assistant.training_service", fromlist=["attach_training"]).attach_training(ctx)
