"""The Blocks: chat for everyone; admin tabs hidden unless the session is an admin's."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gradio as gr

from ..context import AppContext
from .chat import build_chat_tab
from .session import anonymous_refused, is_admin, new_session, session_from_request, sign_in, sign_out

# Admin tab builders: (title, builder(ctx, session_state)). Later parts register theirs here.
AdminTab = tuple[str, Callable[[AppContext, gr.State], None]]


def admin_tabs() -> list[AdminTab]:
    from .admin import ADMIN_TABS

    return list(ADMIN_TABS)


def signed_in_line(ctx: AppContext, session: dict[str, Any]) -> str:
    if session.get("user"):
        return f"Signed in as **{session['user']}**."
    if anonymous_refused(ctx, session):
        return "Not signed in: sign in on the **Account** tab to chat and rate."
    return "Not signed in."


def build_ui(ctx: AppContext) -> gr.Blocks:
    with gr.Blocks(title="Assistant", analytics_enabled=False) as demo:
        session_state = gr.State(new_session)  # a callable: a fresh session (and rater id) per client
        with gr.Row():
            gr.Markdown(f"### Assistant · `{ctx.model_id}`")
            signed = gr.Markdown(signed_in_line(ctx, new_session()), elem_id="signed-in")
        with gr.Tabs():
            with gr.Tab("Chat", id="chat"):
                build_chat_tab(ctx, session_state)
            tabs = []
            for title, builder in admin_tabs():
                with gr.Tab(title, visible=False, id=title.lower()) as tab:
                    builder(ctx, session_state)
                tabs.append(tab)
            with gr.Tab("Account", id="account"):
                name = gr.Textbox(label="User name", elem_id="login-name")
                password = gr.Textbox(label="Password", type="password", elem_id="login-password")
                with gr.Row():
                    login = gr.Button("Sign in", variant="primary", elem_id="login")
                    logout = gr.Button("Sign out", elem_id="logout")

        def show_tabs(session: dict[str, Any]) -> list[Any]:
            return [gr.update(visible=is_admin(session)) for _ in tabs]

        def do_sign_in(session: dict, n: str, p: str) -> list[Any]:
            session, message = sign_in(ctx, session, n, p)
            return [session, message, *show_tabs(session)]

        def do_sign_out(session: dict) -> list[Any]:
            session, message = sign_out(session)
            if anonymous_refused(ctx, session):
                message = f"{message} {signed_in_line(ctx, session)}"
            return [session, message, *show_tabs(session)]

        def on_load(request: gr.Request) -> list[Any]:
            session = session_from_request(ctx, request)
            return [session, signed_in_line(ctx, session), *show_tabs(session)]

        login.click(do_sign_in, [session_state, name, password], [session_state, signed, *tabs])
        logout.click(do_sign_out, [session_state], [session_state, signed, *tabs])
        demo.load(on_load, None, [session_state, signed, *tabs])
    return demo
