"""Admin tab "Data": what the model would learn from, and the human review queue.

Every handler calls `require_admin(session)` first (hidden tabs' handlers are still endpoints).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from ..context import AppContext
from .session import require_admin, session_rater

REVIEW_COLUMNS = ["id", "kind", "reasons", "raters", "preview"]


def _preview(payload: dict[str, Any]) -> str:
    for key in ("messages", "chosen", "completion"):
        value = payload.get(key)
        if isinstance(value, list) and value:
            text = str(value[-1].get("content", "")) if isinstance(value[-1], dict) else str(value[-1])
            return text[:200]
    return json.dumps(payload)[:200]


def _origins_line(by_origin: dict[str, dict[str, int]], shown: int = 8) -> str:
    """Items per origin, largest first: one client posing as many raters still shows as one origin."""
    totals = sorted(((sum(c.values()), o) for o, c in by_origin.items()), key=lambda t: (-t[0], t[1]))
    if not totals:
        return "—"
    more = f", … {len(totals) - shown} more" if len(totals) > shown else ""
    return ", ".join(f"{o} {n}" for n, o in totals[:shown]) + more


def data_view(ctx: AppContext, session: dict[str, Any], page: int) -> tuple[str, pd.DataFrame, pd.DataFrame]:
    """Dataset stats (per type, source, rater, dropped per filter) and a page of pending items."""
    require_admin(session)
    from feedback import review
    from feedback.datasets import curate_store, curation_config

    result = curate_store(ctx.store, curation_config(ctx.store, require_review=ctx.settings.require_review))
    report = result.report
    queue = review.counts(ctx.store)
    lines = [
        f"**Dataset `{result.dataset_hash[:12]}`** · train: "
        + ", ".join(f"{k} {v}" for k, v in report["train"].items()),
        "held-out: " + ", ".join(f"{k} {v}" for k, v in report["heldout"].items()),
        "review queue: " + ", ".join(f"{k} {v}" for k, v in queue.items()),
        "by source: " + (", ".join(f"{k} {v}" for k, v in report.get("by_source", {}).items()) or "—"),
        "by origin (account or address): " + _origins_line(report.get("by_origin", {})),
        "dropped per filter: " + (", ".join(f"{k} {v}" for k, v in report["dropped"].items() if v) or "none"),
    ]
    raters = pd.DataFrame([{"rater": r, **counts} for r, counts in report.get("by_rater", {}).items()])
    page = max(1, int(page or 1))
    rows = review.pending(ctx.store, limit=50, offset=(page - 1) * 50)
    table = pd.DataFrame(
        [
            {
                "id": r["id"],
                "kind": r["kind"],
                "reasons": ", ".join((r.get("source") or {}).get("review", [])),
                "raters": ", ".join((r.get("source") or {}).get("raters", [])),
                "preview": _preview(r.get("payload") or {}),
            }
            for r in rows
        ],
        columns=REVIEW_COLUMNS,
    )
    return "  \n".join(lines), raters, table


def decide_items(
    ctx: AppContext, session: dict[str, Any], ids_text: str, decision: str, reason: str, edited_json: str
) -> str:
    """Approve or reject the listed item ids (comma/space separated); an edit applies to one item."""
    require_admin(session)
    from feedback import review

    ids = [i for i in (ids_text or "").replace(",", " ").split() if i]
    if not ids:
        raise gr.Error("List the item ids to decide on (copy them from the table).")
    edited = None
    if edited_json.strip():
        try:
            edited = json.loads(edited_json)
        except json.JSONDecodeError as exc:
            raise gr.Error(f"The edited item is not valid JSON: {exc}") from None
    try:
        changed = review.decide(
            ctx.store,
            ctx.store.write,
            ids,
            decision,
            by=session_rater(session),
            edited_payload=edited,
            reason=(reason or "").strip() or None,
        )
    except (ValueError, LookupError) as exc:
        raise gr.Error(str(exc)) from None
    return f"{'Approved' if decision == 'approve' else 'Rejected'} {changed} item(s)."


def export_files(ctx: AppContext, session: dict[str, Any]) -> list[str]:
    """The curated datasets as downloadable JSONL files (written outside the data dir)."""
    require_admin(session)
    from feedback.datasets import build_datasets

    out = Path(tempfile.mkdtemp(prefix="datasets-"))
    build_datasets(ctx.store, ctx.settings, out)
    return sorted(str(p) for p in out.iterdir())


def build_data_tab(ctx: AppContext, session_state: gr.State) -> None:
    with gr.Row():
        page = gr.Number(1, label="Page", precision=0, minimum=1, scale=1)
        refresh = gr.Button("Refresh", variant="primary", elem_id="data-refresh", scale=1)
        download = gr.Button("Export datasets", scale=1)
    stats = gr.Markdown()
    files = gr.File(label="Datasets (JSONL + manifest)", file_count="multiple")
    raters = gr.Dataframe(label="Items per rater", wrap=True)
    queue = gr.Dataframe(label="Waiting for review", wrap=True, elem_id="review-table")
    with gr.Row():
        ids = gr.Textbox(label="Item ids", placeholder="id1, id2, ...", scale=3)
        reason = gr.Textbox(label="Reason (optional)", scale=2)
    edited = gr.Code(label="Edited item (optional, one id): TRL columns as JSON", language="json")
    with gr.Row():
        approve = gr.Button("Approve", variant="primary")
        reject = gr.Button("Reject", variant="stop")
    outcome = gr.Markdown()

    # Named endpoints: tests/reliability/test_access.py calls them by name (lambda_N numbers shift whenever a
    # lambda is added or removed anywhere in the Blocks).
    refresh.click(
        lambda s, p: data_view(ctx, s, p), [session_state, page], [stats, raters, queue], api_name="data_view"
    )
    download.click(lambda s: export_files(ctx, s), [session_state], [files], api_name="data_export")
    approve.click(
        lambda s, i, r, e: decide_items(ctx, s, i, "approve", r, e or ""),
        [session_state, ids, reason, edited],
        [outcome],
        api_name="data_approve",
    )
    reject.click(
        lambda s, i, r, e: decide_items(ctx, s, i, "reject", r, e or ""),
        [session_state, ids, reason, edited],
        [outcome],
        api_name="data_reject",
    )
