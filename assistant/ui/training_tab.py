"""Admin tab "Training": Train now, a progress bar with ETA, a live loss plot, the log tail, Cancel,
and the history of jobs. A timer refreshes the view every 2 s while the tab is open.

The progress bar is Markdown holding sanitised inline HTML, not `gr.HTML`: Gradio 6 renders `gr.HTML`
through a JavaScript template that it compiles at run time, which a Content-Security-Policy without
'unsafe-eval' blocks (the bar then shows an error instead)."""

from __future__ import annotations

import html
from typing import Any

import gradio as gr
import pandas as pd

from ..context import AppContext
from .session import is_admin, require_admin

HISTORY_COLUMNS = ["id", "status", "phase", "step", "total_steps", "loss", "version", "created_at", "error"]


def _service(ctx: AppContext) -> Any:
    service = ctx.extras.get("training")
    if service is None:
        raise gr.Error("Training is not available on this server (see the server log).")
    return service


def progress_html(job: dict[str, Any] | None, last: dict[str, Any] | None) -> str:
    if job is None:
        return "<p>No training job yet. Press <b>Train now</b>.</p>"
    total = job.get("total_steps") or 0
    step = job.get("step") or 0
    share = 100.0 if job["status"] == "succeeded" else (100.0 * step / total if total else 0.0)
    eta = (last or {}).get("eta_s")
    eta_text = f" · ETA {int(eta // 60)} min {int(eta % 60)} s" if eta and job["status"] == "running" else ""
    loss = job.get("loss")
    loss_text = f" · loss {loss:.4f}" if isinstance(loss, int | float) else ""
    detail = html.escape(
        f"{job['status']} · {job.get('phase') or '—'} · step {step}/{total}{loss_text}{eta_text}"
    )
    error = f"<p style='color:#b91c1c'>{html.escape(str(job['error']))}</p>" if job.get("error") else ""
    version = f" → version <code>{html.escape(job['version'])}</code>" if job.get("version") else ""
    return (
        f"<div id='train-progress'>"
        f"<div style='background:#e5e7eb;border-radius:6px;height:18px;width:100%'>"
        f"<div id='train-progress-fill' "
        f"style='background:#2563eb;height:18px;border-radius:6px;width:{share:.1f}%'></div></div>"
        f"<p>Job <code>{html.escape(job['id'])}</code>: {detail}{version}</p>{error}</div>"
    )


def training_view(
    ctx: AppContext, session: dict[str, Any], job_id: str | None
) -> tuple[str, pd.DataFrame, str, pd.DataFrame, Any]:
    require_admin(session)
    service = _service(ctx)
    jobs = service.jobs.list_jobs(limit=50)
    ids = [j["id"] for j in jobs]
    job = next((j for j in jobs if j["id"] == job_id), None) if job_id else (jobs[0] if jobs else None)
    rows = service.jobs.progress(job["id"]) if job else []
    losses = pd.DataFrame(
        [
            {"step": r["step"], "loss": r["loss"], "phase": r["phase"]}
            for r in rows
            if r.get("loss") is not None
        ],
        columns=["step", "loss", "phase"],
    )
    history = pd.DataFrame([{c: j.get(c) for c in HISTORY_COLUMNS} for j in jobs], columns=HISTORY_COLUMNS)
    log_tail = service.log_tail(job["id"]) if job else ""
    # The refresh only fills an empty pick: a refresh that was under way while Train now picked the new job
    # would otherwise put the old one back (and Cancel would then aim at the old job).
    selector = gr.update(choices=ids, value=job["id"]) if job and not job_id else gr.update(choices=ids)
    return progress_html(job, rows[-1] if rows else None), losses, log_tail, history, selector


def train_now(ctx: AppContext, session: dict[str, Any], max_steps: float | None) -> tuple[str, Any]:
    require_admin(session)
    # The browser sends 0 for an empty number box: 0 (or nothing) means the config's own step cap.
    overrides = {"sft": {"max_steps": int(max_steps)}} if max_steps and max_steps > 0 else None
    try:
        job_id = _service(ctx).start(overrides, by=session.get("user") or "admin")
    except Exception as exc:  # 409 / invalid config: show the reason
        raise gr.Error(str(exc)) from None
    return f"Started job `{job_id}`.", gr.update(choices=[job_id], value=job_id)


def cancel_job(ctx: AppContext, session: dict[str, Any], job_id: str | None) -> str:
    require_admin(session)
    if not job_id:
        raise gr.Error("Pick a job first.")
    job = _service(ctx).cancel(job_id)
    return f"Cancel requested for `{job_id}` (status: {job['status']})."


def build_training_tab(ctx: AppContext, session_state: gr.State) -> None:
    with gr.Row():
        train = gr.Button("Train now", variant="primary", elem_id="train-now")
        # minimum=0, not 1: an empty box reaches the server as 0, which a minimum of 1 refused (Train now
        # failed with "Value 0 is less than minimum value 1" unless the admin typed a number).
        max_steps = gr.Number(0, label="SFT max steps (0 = default)", precision=0, minimum=0)
        job_pick = gr.Dropdown([], label="Job", allow_custom_value=True, elem_id="job-pick")
        cancel = gr.Button("Cancel job", variant="stop", elem_id="cancel-job")
    message = gr.Markdown(elem_id="train-message")
    progress = gr.Markdown(progress_html(None, None), elem_id="train-status")
    loss_plot = gr.LinePlot(x="step", y="loss", color="phase", label="Training loss", elem_id="loss-plot")
    log_tail = gr.Code(label="Log (tail)", language=None, lines=10)
    history = gr.Dataframe(label="Jobs", wrap=True)
    timer = gr.Timer(2.0)

    outputs = [progress, loss_plot, log_tail, history, job_pick]

    def tick(session: dict[str, Any], job_id: str | None) -> Any:
        # The timer runs in every browser; only admins get data, others a no-op (not an error each tick).
        if not is_admin(session):
            return tuple(gr.skip() for _ in outputs)
        return training_view(ctx, session, job_id)

    timer.tick(tick, [session_state, job_pick], outputs, show_progress="hidden")
    train.click(lambda s, m: train_now(ctx, s, m), [session_state, max_steps], [message, job_pick])
    cancel.click(lambda s, j: cancel_job(ctx, s, j), [session_state, job_pick], [message])
