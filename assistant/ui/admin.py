"""Admin tabs. Every handler calls `require_admin(session)` first: Gradio exposes hidden tabs'
handlers as endpoints too. Each tab is a builder registered in ADMIN_TABS."""

from __future__ import annotations

from typing import Any

import gradio as gr
import pandas as pd

from ..context import AppContext
from .chat import TAG_CHOICES
from .data_tab import build_data_tab
from .models_tab import build_models_tab
from .session import require_admin
from .training_tab import build_training_tab

FEEDBACK_COLUMNS = ["created_at", "rater", "rating", "stars", "tags", "comment", "adapter_version", "content"]


def feedback_view(
    ctx: AppContext, session: dict[str, Any], rater: str, tag: str | None, rating: str | None, version: str,
    page: int,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, str]:
    require_admin(session)
    page = max(1, int(page or 1))
    rows = ctx.store.list_feedback(
        rater=(rater or "").strip() or None, tag=tag or None, rating=rating or None,
        adapter_version=(version or "").strip() or None, limit=50, offset=(page - 1) * 50,
    )
    table = pd.DataFrame(
        [{c: (", ".join(r.get(c) or []) if c == "tags" else r.get(c)) for c in FEEDBACK_COLUMNS}
         for r in rows],
        columns=FEEDBACK_COLUMNS,
    )
    counts = ctx.store.feedback_counts()
    by_tag = pd.DataFrame(
        [{"tag": t, "count": n} for t, n in (counts.get("by_tag") or {}).items()], columns=["tag", "count"]
    )
    daily = pd.DataFrame(ctx.store.daily_up_rate(), columns=["day", "adapter_version", "up", "down", "rate"])
    if not daily.empty:
        daily["adapter_version"] = daily["adapter_version"].fillna("base")
    summary = f"{counts.get('ratings', 0)} ratings · page {page}"
    return table, by_tag, daily, summary


def build_feedback_tab(ctx: AppContext, session_state: gr.State) -> None:
    with gr.Row():
        rater = gr.Textbox(label="Rater", scale=1)
        tag = gr.Dropdown([("any", ""), *TAG_CHOICES], value="", label="Tag", scale=1)
        rating = gr.Dropdown([("any", ""), ("👍", "up"), ("👎", "down")], value="", label="Verdict", scale=1)
        version = gr.Textbox(label="Model version", scale=1)
        page = gr.Number(1, label="Page", precision=0, minimum=1, scale=1)
        refresh = gr.Button("Refresh", variant="primary", elem_id="feedback-refresh")
    summary = gr.Markdown()
    table = gr.Dataframe(label="Ratings", wrap=True, elem_id="feedback-table")
    with gr.Row():
        by_tag = gr.BarPlot(x="tag", y="count", label="Ratings by reason tag")
        daily = gr.LinePlot(x="day", y="rate", color="adapter_version", label="👍 rate per day per version")
    refresh.click(
        lambda s, *a: feedback_view(ctx, s, *a),
        [session_state, rater, tag, rating, version, page],
        [table, by_tag, daily, summary],
        api_name="feedback_refresh",
    )


ADMIN_TABS: list[tuple[str, Any]] = [
    ("Feedback", build_feedback_tab),
    ("Data", build_data_tab),
    ("Training", build_training_tab),
    ("Models", build_models_tab),
]
