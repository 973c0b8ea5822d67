"""Per-browser session state and sign-in. The role lives server-side in gr.State, set only by a
successful sign-in, so a caller posting to a hidden admin endpoint with a fresh session is anonymous."""

from __future__ import annotations

import uuid
from typing import Any

import gradio as gr

from ..context import AppContext


def new_session() -> dict[str, Any]:
    return {"id": uuid.uuid4().hex[:16], "user": None, "role": "anonymous", "conversations": []}


def session_rater(session: dict[str, Any]) -> str:
    """Every rating has a rater: the signed-in user, else this browser session."""
    return session.get("user") or f"anon:{session.get('id', 'unknown')}"


def session_origin(session: dict[str, Any], request: gr.Request | None = None) -> str:
    """Where this session's ratings come from: 'user:<name>' when signed in, else 'ip:<client address>'.

    Anonymous sessions are cheap (each page load is a new rater), so curation caps them per address.
    """
    if session.get("user"):
        return f"user:{session['user']}"
    client = getattr(request, "client", None) if request is not None else None
    host = getattr(client, "host", None) if client is not None else None
    return f"ip:{host or 'unknown'}"


def is_admin(session: dict[str, Any] | None) -> bool:
    return bool(session) and session.get("role") == "admin"  # type: ignore[union-attr]


def require_admin(session: dict[str, Any] | None) -> None:
    """Call first in every admin handler: Gradio exposes every handler as an endpoint."""
    if not is_admin(session):
        raise gr.Error("Admins only: sign in with an admin account.")


SIGN_IN_FIRST = (
    "Sign in first: this server does not take anonymous chats or ratings. Use the sign-in box on the "
    "Account tab (an admin makes accounts: `python -m assistant users add NAME`)."
)


def anonymous_refused(ctx: AppContext, session: dict[str, Any] | None) -> bool:
    """Whether this session may not chat or rate: anonymous use is off and nobody signed in."""
    return not ctx.settings.allow_anonymous and not (session or {}).get("user")


def require_signed_in(ctx: AppContext, session: dict[str, Any] | None) -> None:
    """Call first in every chat and rating handler: hidden or not, Gradio serves each one to anyone."""
    if anonymous_refused(ctx, session):
        raise gr.Error(SIGN_IN_FIRST)


def sign_in(ctx: AppContext, session: dict[str, Any], name: str, password: str) -> tuple[dict[str, Any], str]:
    from feedback.users import verify_user

    user = verify_user(ctx.store, (name or "").strip(), password or "")
    if user is None:
        raise gr.Error("Wrong user name or password.")
    return {
        **session,
        "user": user["name"],
        "role": user["role"],
    }, f"Signed in as **{user['name']}** ({user['role']})."


def sign_out(session: dict[str, Any]) -> tuple[dict[str, Any], str]:
    return {**new_session(), "conversations": []}, "Signed out."


def session_from_request(ctx: AppContext, request: gr.Request | None) -> dict[str, Any]:
    """With Gradio's own login on (anonymous chat off), the user comes from the request."""
    session = new_session()
    username = getattr(request, "username", None) if request is not None else None
    if username:
        from feedback.users import get_role

        session.update(user=username, role=get_role(ctx.store, username) or "user")
    return session
