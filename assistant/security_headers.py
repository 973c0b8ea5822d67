"""Security headers on every response: a Content-Security-Policy and the usual hardening headers.

Markdown in the chat is sanitised by Gradio; the policy is the second line of defence if some HTML slips
through: no scripts or frames from other origins, no plugins, no framing of the UI by another site
(clickjacking of the admin tabs), and no data sent to other origins. Gradio's page bootstraps with an
inline script and inline styles, so those two stay allowed; everything else is 'self'. Gradio's charts
(Vega: the Feedback, Models and Training tabs) compile their expressions with `new Function`, so script-src
also allows 'unsafe-eval'; without it every chart stays blank (tests/browser/test_browser_flows.py). Next
to 'unsafe-inline', which the page needs anyway, it widens little.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self' 'unsafe-inline' 'unsafe-eval'",
        "style-src 'self' 'unsafe-inline' https://fonts.googleapis.com",
        "font-src 'self' data: https://fonts.gstatic.com",
        "img-src 'self' data: blob:",
        "media-src 'self' data: blob:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)

HEADERS: list[tuple[bytes, bytes]] = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]


class SecurityHeadersMiddleware:
    """Pure ASGI (not BaseHTTPMiddleware), so streamed answers pass through untouched."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(name, value) for name, value in HEADERS if name not in present]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def install_security_headers(app: Any) -> None:
    app.add_middleware(SecurityHeadersMiddleware)
