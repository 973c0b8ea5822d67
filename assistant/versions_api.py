"""Admin REST routes for adapter versions, plus vLLM-compatible LoRA load/unload; and `attach_versions`.

All routes need `Authorization: Bearer <admin token>` (data/admin-token):

    GET  /admin/versions                      versions with lineage, gate, status; live/canary; monitor
    POST /admin/versions/{id}/promote         {"force": false}   409 when its gate failed (unless force)
    POST /admin/versions/{id}/canary          {"share": 0.2, "force": false}
    POST /admin/canary/stop                   {"reject": false}
    POST /admin/rollback                      {"version": "v0002" | null}   null = the base model
    POST /v1/load_lora_adapter                {"lora_name": "v0003", "lora_path": "data/adapters/v0003"}
    POST /v1/unload_lora_adapter              {"lora_name": "v0003"}

vLLM clients name an adapter themselves; here the name must be the version id in its manifest, because a
name reused for other weights is exactly how stale adapters get served. A loaded version is addressable as
`model=<id>` in /v1/chat/completions and listed by GET /v1/models.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field

from .api import make_require_admin
from .context import AppContext
from .errors import AssistantError

log = logging.getLogger(__name__)


class PromoteRequest(BaseModel):
    force: bool = False


class CanaryRequest(BaseModel):
    share: float = Field(0.2, gt=0.0, le=1.0)
    force: bool = False


class StopCanaryRequest(BaseModel):
    reject: bool = False


class RollbackRequest(BaseModel):
    version: str | None = Field(None, max_length=64)


class LoadLoraRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    lora_name: str = Field(..., min_length=1, max_length=64)
    lora_path: str = Field(..., min_length=1, max_length=4096)


class UnloadLoraRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    lora_name: str = Field(..., min_length=1, max_length=64)


class _BadRequest(AssistantError):
    status = 400
    code = "invalid_request_error"


class _NotFound(AssistantError):
    status = 404
    code = "not_found"


def build_versions_router(ctx: AppContext) -> APIRouter:
    router = APIRouter()

    def admin(request: Request) -> str:
        # api.build_router sets ctx.extras["require_admin"] after extensions attach: look it up per call.
        check = ctx.extras.get("require_admin") or make_require_admin(ctx)
        return str(check(request))

    def parts() -> tuple[Any, Any, Any]:
        return ctx.extras["registry"], ctx.extras["router"], ctx.extras.get("canary_monitor")

    @router.get("/admin/versions")
    def list_versions(who: str = Depends(admin)) -> dict[str, Any]:
        registry, version_router, monitor = parts()
        registry.sync()
        state = version_router.state()
        data = []
        for row in registry.list_versions():
            row["live"] = row["id"] == state["live"]
            row["canary"] = row["id"] == state["canary"]
            row["loaded"] = state["loaded"] is not None and row["id"] in state["loaded"]
            data.append(row)
        return {
            "data": data,
            **state,
            "history": registry.history(limit=50),
            "monitor": monitor.decide() if monitor is not None else None,
        }

    @router.post("/admin/versions/{version}/promote")
    def promote(
        version: str, body: PromoteRequest | None = None, who: str = Depends(admin)
    ) -> dict[str, Any]:
        _, version_router, _ = parts()
        force = bool(body and body.force)
        return {"promoted": version, "forced": force, **version_router.promote(version, by=who, force=force)}

    @router.post("/admin/versions/{version}/canary")
    def canary(version: str, body: CanaryRequest | None = None, who: str = Depends(admin)) -> dict[str, Any]:
        _, version_router, _ = parts()
        body = body or CanaryRequest.model_validate({})
        return version_router.start_canary(version, body.share, by=who, force=body.force)

    @router.post("/admin/canary/stop")
    def stop_canary(body: StopCanaryRequest | None = None, who: str = Depends(admin)) -> dict[str, Any]:
        _, version_router, _ = parts()
        return version_router.stop_canary(by=who, reject=bool(body and body.reject))

    @router.post("/admin/rollback")
    def rollback(body: RollbackRequest | None = None, who: str = Depends(admin)) -> dict[str, Any]:
        _, version_router, _ = parts()
        return version_router.rollback(body.version if body else None, by=who)

    @router.post("/v1/load_lora_adapter", response_class=PlainTextResponse)
    def load_lora_adapter(body: LoadLoraRequest, who: str = Depends(admin)) -> str:
        registry, version_router, _ = parts()
        if ctx.engine is not None and body.lora_name in ctx.engine.loaded_versions:
            raise _BadRequest(f"The lora adapter '{body.lora_name}' has already been loaded.")
        try:
            path = Path(body.lora_path).expanduser()
            manifest = registry.validate(path)  # before anything is copied or loaded
        except (OSError, RuntimeError) as exc:  # an unreadable path (too long, unknown ~user, ...)
            raise _BadRequest(f"cannot read lora_path {body.lora_path!r}: {exc}") from None
        if manifest["id"] != body.lora_name:
            raise _BadRequest(
                f"lora_name {body.lora_name!r} must be the adapter's version id {manifest['id']!r} "
                "(from its manifest.json): a name never points at other weights"
            )
        registry.register(path)
        version_router.load(body.lora_name)
        log.info("%s loaded LoRA adapter %s from %s", who, body.lora_name, path)
        return f"Success: LoRA adapter '{body.lora_name}' added successfully."

    @router.post("/v1/unload_lora_adapter", response_class=PlainTextResponse)
    def unload_lora_adapter(body: UnloadLoraRequest, who: str = Depends(admin)) -> str:
        _, version_router, _ = parts()
        if ctx.engine is None or body.lora_name not in ctx.engine.loaded_versions:
            raise _NotFound(f"The lora adapter '{body.lora_name}' cannot be found.")
        version_router.unload(body.lora_name)
        log.info("%s unloaded LoRA adapter %s", who, body.lora_name)
        return f"Success: LoRA adapter '{body.lora_name}' removed successfully."

    return router


def attach_versions(ctx: AppContext, *, start_monitor: bool = True) -> None:
    """Registry + router + canary monitor + routes; serve what the database says is live."""
    from training.registry import Registry

    from .routing import CanaryMonitor, VersionRouter

    registry = Registry.for_model(ctx.store, ctx.settings.adapters_dir, ctx.model_dir)
    version_router = VersionRouter(registry, ctx.engine, ctx.store)
    extra = ctx.settings.extra
    monitor = CanaryMonitor(
        ctx.store,
        registry,
        version_router,
        min_samples=int(extra.get("canary_min_samples", 30)),
        confidence=float(extra.get("canary_confidence", 0.95)),
        auto=ctx.settings.auto_promote,
    )
    ctx.extras["registry"] = registry
    ctx.extras["router"] = version_router
    ctx.extras["canary_monitor"] = monitor
    ctx.extras.setdefault("routers", []).append(build_versions_router(ctx))
    report = version_router.on_startup()
    if report["live"] or report["errors"]:
        log.info(
            "versions: live %s, canary %s, errors %s",
            report["live"] or "base",
            report["canary"],
            report["errors"] or "none",
        )
    if start_monitor and ctx.engine is not None:
        monitor.start(float(extra.get("canary_check_interval_s", 60.0)))
