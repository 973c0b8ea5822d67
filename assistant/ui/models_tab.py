"""The Models admin tab: versions with lineage, metrics and gate result; promote, canary, rollback; 👍 rate
per version over time. Handlers are plain functions (tested without a browser); each calls
`require_admin(session)` first, because Gradio exposes every handler as an endpoint, hidden tab or not."""

from __future__ import annotations

from typing import Any

import gradio as gr
import pandas as pd

from ..context import AppContext
from ..errors import AssistantError
from .session import require_admin

VERSION_COLUMNS = [
    "version", "serving", "status", "parent", "lineage", "gate", "metrics", "dataset", "created_at",
]
DAILY_COLUMNS = ["day", "adapter_version", "up", "down", "rate"]


def _parts(ctx: AppContext) -> tuple[Any, Any, Any]:
    registry = ctx.extras.get("registry")
    router = ctx.extras.get("router")
    if registry is None or router is None:
        raise gr.Error("Versions are not available: the registry did not start (see the server log).")
    return registry, router, ctx.extras.get("canary_monitor")


def _who(session: dict[str, Any]) -> str:
    return str(session.get("user") or "admin")


def summarize_metrics(metrics: dict[str, Any], limit: int = 4) -> str:
    """A few numbers from a manifest's metrics ({stage: {name: value}} or flat) for a table cell."""
    items: list[str] = []

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), inner)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            items.append(f"{prefix}={value:.3g}")

    walk("", metrics or {})
    return ", ".join(items[:limit]) + (" …" if len(items) > limit else "")


def _gate_cell(row: dict[str, Any]) -> str:
    if row["gate_passed"] is None:
        return "— not evaluated"
    gate = row.get("gate")
    note = (gate.get("summary") or gate.get("reasons") or "") if isinstance(gate, dict) else ""
    if isinstance(note, list):
        note = "; ".join(map(str, note))
    return ("✅ passed" if row["gate_passed"] else "❌ failed") + (f": {note}" if note else "")


def models_view(ctx: AppContext, session: dict[str, Any]) -> tuple[pd.DataFrame, Any, pd.DataFrame, str]:
    """Versions table, the version picker's choices, 👍 rate per day per version, a one-line summary."""
    require_admin(session)
    registry, router, monitor = _parts(ctx)
    registry.sync()
    state = router.state()
    rows = []
    for row in reversed(registry.list_versions()):  # newest first
        badges = []
        if row["id"] == state["live"]:
            badges.append("🟢 live")
        if row["id"] == state["canary"]:
            badges.append(f"🐤 canary {state['canary_share']:.0%}")
        rows.append({
            "version": row["id"],
            "serving": " ".join(badges),
            "status": row["status"],
            "parent": row["parent"] or "base",
            "lineage": " ← ".join(registry.lineage(row["id"])),
            "gate": _gate_cell(row),
            "metrics": summarize_metrics(row["metrics"]),
            "dataset": (row["dataset_hash"] or "")[:12],
            "created_at": row["created_at"],
        })
    table = pd.DataFrame(rows, columns=VERSION_COLUMNS)
    daily = pd.DataFrame(ctx.store.daily_up_rate(), columns=DAILY_COLUMNS)
    live = state["live"] or "base"
    summary = f"Live: **{live}**"
    if state["canary"]:
        summary += f" · canary **{state['canary']}** on {state['canary_share']:.0%} of new conversations"
        if monitor is not None:
            verdict = monitor.decide()
            summary += f" · monitor: **{verdict['decision']}** ({verdict['reason']})"
    summary += f" · {len(rows)} versions"
    picker = gr.update(choices=[r["version"] for r in rows])
    return table, picker, daily, summary


def _act(action: Any) -> str:
    try:
        return str(action())
    except AssistantError as exc:
        raise gr.Error(str(exc)) from None


def promote_action(ctx: AppContext, session: dict[str, Any], version: str | None, force: bool) -> str:
    require_admin(session)
    _, router, _ = _parts(ctx)
    if not version:
        raise gr.Error("Pick a version first.")
    _act(lambda: router.promote(version, by=_who(session), force=bool(force)))
    return f"**{version}** is live{' (gate overridden)' if force else ''}."


def canary_action(
    ctx: AppContext, session: dict[str, Any], version: str | None, share: float, force: bool
) -> str:
    require_admin(session)
    _, router, _ = _parts(ctx)
    if not version:
        raise gr.Error("Pick a version first.")
    _act(lambda: router.start_canary(version, float(share), by=_who(session), force=bool(force)))
    return f"Canary **{version}** serves {float(share):.0%} of new conversations."


def stop_canary_action(ctx: AppContext, session: dict[str, Any]) -> str:
    require_admin(session)
    _, router, _ = _parts(ctx)
    old = router.canary_version
    _act(lambda: router.stop_canary(by=_who(session)))
    return f"Canary **{old}** stopped." if old else "No canary was running."


def rollback_action(ctx: AppContext, session: dict[str, Any], version: str | None) -> str:
    require_admin(session)
    _, router, _ = _parts(ctx)
    if not version:
        raise gr.Error("Pick a version first (or use 'Roll back to base').")
    _act(lambda: router.rollback(version, by=_who(session)))
    return f"Rolled back: **{version}** is live."


def rollback_base_action(ctx: AppContext, session: dict[str, Any]) -> str:
    require_admin(session)
    _, router, _ = _parts(ctx)
    _act(lambda: router.rollback(None, by=_who(session)))
    return "Rolled back: the **base model** is live."


def build_models_tab(ctx: AppContext, session_state: gr.State) -> None:
    summary = gr.Markdown(elem_id="models-summary")
    table = gr.Dataframe(label="Versions (newest first)", wrap=True, interactive=False,
                         elem_id="models-table")
    with gr.Row():
        version = gr.Dropdown(choices=[], label="Version", scale=2, elem_id="models-version")
        share = gr.Slider(0.05, 1.0, value=ctx.settings.canary_share or 0.2, step=0.05,
                          label="Canary share of new conversations", scale=2)
        force = gr.Checkbox(label="Force (ignore a failed gate)", value=False, scale=1)
    with gr.Row():
        refresh = gr.Button("Refresh", elem_id="models-refresh")
        promote = gr.Button("Promote", variant="primary", elem_id="models-promote")
        canary = gr.Button("Start canary", elem_id="models-canary")
        stop = gr.Button("Stop canary", elem_id="models-stop-canary")
        rollback = gr.Button("Roll back to this version", elem_id="models-rollback")
        rollback_base = gr.Button("Roll back to base", variant="stop", elem_id="models-rollback-base")
    status = gr.Markdown(elem_id="models-status")
    daily = gr.LinePlot(x="day", y="rate", color="adapter_version", label="👍 rate per day by version")

    view_outputs = [table, version, daily, summary]

    def view(session: dict[str, Any]) -> tuple[Any, ...]:
        return models_view(ctx, session)

    refresh.click(view, [session_state], view_outputs)
    promote.click(lambda s, v, f: promote_action(ctx, s, v, f), [session_state, version, force],
                  [status]).then(view, [session_state], view_outputs)
    canary.click(lambda s, v, sh, f: canary_action(ctx, s, v, sh, f), [session_state, version, share, force],
                 [status]).then(view, [session_state], view_outputs)
    stop.click(lambda s: stop_canary_action(ctx, s), [session_state], [status]).then(
        view, [session_state], view_outputs)
    rollback.click(lambda s, v: rollback_action(ctx, s, v), [session_state, version], [status]).then(
        view, [session_state], view_outputs)
    rollback_base.click(lambda s: rollback_base_action(ctx, s), [session_state], [status]).then(
        view, [session_state], view_outputs)
