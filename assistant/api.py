"""HTTP API on the same port as the UI: OpenAI-compatible chat, feedback, health, admin routes.

Errors use OpenAI's shape `{"error": {"message", "type", "param", "code"}}` so the official client
raises its own typed exceptions (BadRequestError, RateLimitError, ...). Admin routes need
`Authorization: Bearer <admin token>` (compared in constant time).

Who is calling /v1/chat/completions and /v1/feedback(/compare) (`identify_caller`): a per-user API key
(`Authorization: Bearer ak-...`, see feedback/users.py) makes the caller that account: rater `<account>`
(or `<account>/<user>` when the `user` field names someone else), origin `user:<account>`. An unknown or
revoked `ak-` key is a 401. Any other bearer value (the openai client always sends one) is anonymous: rater
= the `user` field or `anon:<address>`, origin `ip:<address>`. Curation caps each origin's share of a
dataset, so made-up `user` names from one address count as one voice.

Account names are reserved: a request without that account's key whose `user` is an account's name (or
one of its sub-labels, `<account>/...`) is a 403, and nothing is stored. With `allow_anonymous` off
(ASSISTANT_ALLOW_ANONYMOUS=false) those three routes need an API key or the admin token (else 401); the
admin token still identifies no account, so its calls are stored like anonymous ones.
"""

from __future__ import annotations

import functools
import hmac
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal

import anyio
from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from .chat import Turn, start_turn
from .context import AppContext
from .engine import BASE, SamplingParams
from .errors import AssistantError, InvalidRequestError, QueueFullError, RateLimitedError
from .limits import RateLimiter

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------- request schemas
class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "user", "assistant", "developer"]
    content: str | list[dict[str, Any]] = Field(..., description="text, or a list of text parts")


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str = "live"
    messages: list[ChatMessage] = Field(..., min_length=1, max_length=1000)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    stop: str | list[str] | None = None
    stream: bool = False
    n: int | None = Field(None, ge=1)
    seed: int | None = None
    user: str | None = Field(None, max_length=128)


class FeedbackRequest(BaseModel):
    message_id: str = Field(..., max_length=64)
    rating: Literal["up", "down"] | None = None
    stars: int | None = Field(None, ge=1, le=5)
    tags: list[str] = Field(default_factory=list, max_length=10)
    comment: str | None = Field(None, max_length=4000)
    correction: str | None = Field(None, max_length=16000)
    user: str | None = Field(None, max_length=128)


class CompareRequest(BaseModel):
    message_ids: list[str] = Field(..., min_length=2, max_length=2)
    winner: Literal["a", "b", "tie", "both_bad"]
    user: str | None = Field(None, max_length=128)


class NewUserRequest(BaseModel):
    name: str = Field(..., pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    role: Literal["user", "admin"] = "user"
    password: str | None = Field(None, min_length=8, max_length=1024, description="generated when left out")


# ---------------------------------------------------------------------------- helpers
def openai_error(
    status: int, message: str, code: str, param: str | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    kind = "invalid_request_error" if 400 <= status < 500 else "server_error"
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


def client_key(request: Request, user: str | None) -> str:
    host = request.client.host if request.client else "unknown"
    return f"user:{user}" if user else f"ip:{host}"


def rater_id(request: Request, user: str | None) -> str:
    """Every rating has a rater: the named user, else the caller's address."""
    if user:
        return user
    host = request.client.host if request.client else "unknown"
    return f"anon:{host}"


@dataclass(frozen=True)
class Caller:
    """Who sent a /v1 request, as far as the server can tell."""

    rater: str  # what ratings are stored under (and the conversation's owner)
    origin: str  # 'user:<account>' (API key) or 'ip:<address>' (anonymous): curation caps each one's share
    limit_key: str  # the rate-limit bucket
    account: str | None = None  # the API key's account


def _bearer(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def _is_admin_token(ctx: AppContext, token: str | None) -> bool:
    return bool(token and ctx.admin_token and hmac.compare_digest(token.encode(), ctx.admin_token.encode()))


def _as_api_key(token: str | None) -> str | None:
    """The bearer token if it claims to be an API key ('ak-...'), else None (an admin token that happens
    to start with 'ak-' is told apart in `identify_caller`)."""
    from feedback.users import is_api_key

    return token if token is not None and is_api_key(token) else None


def identify_caller(ctx: AppContext, request: Request, user: str | None) -> Caller:
    """An `ak-` API key makes the caller its account (401 if unknown or revoked); anything else is anonymous.

    Without an account's key: 401 when anonymous use is off (`settings.allow_anonymous`) and the admin
    token was not sent either; 403 when `user` names an account (or `<account>/...`): only that account's
    key rates as it. With a key or a `user` it reads the database (one indexed lookup): call it off the
    event loop then (`needs_database`).
    """
    from feedback.users import account_of_rater, verify_api_key

    token = _bearer(request)
    admin = _is_admin_token(ctx, token)
    key = _as_api_key(token)
    if key is not None and not admin:
        account = verify_api_key(ctx.store, key)
        if account is None:
            raise _InvalidApiKey()
        name = account["name"]
        # The `user` field only labels who, under this account, gave the rating.
        rater = name if not user or user == name else f"{name}/{user}"
        return Caller(rater=rater, origin=f"user:{name}", limit_key=f"key:{name}", account=name)
    if not admin and not ctx.settings.allow_anonymous:
        raise _ApiKeyRequired()
    if user:
        owner = account_of_rater(ctx.store, user)
        if owner is not None:
            raise _ReservedRater(user, owner)
    host = request.client.host if request.client else "unknown"
    # The admin token names no account: its calls are stored like anonymous ones.
    return Caller(rater=rater_id(request, user), origin=f"ip:{host}", limit_key=client_key(request, user))


def needs_database(request: Request, user: str | None) -> bool:
    """Whether `identify_caller` will read the database (an API key to verify, a `user` name to check)."""
    return bool(user) or _as_api_key(_bearer(request)) is not None


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AssistantError)
    async def _assistant_error(request: Request, exc: AssistantError) -> JSONResponse:
        headers = None
        if isinstance(exc, (RateLimitedError, QueueFullError)):
            headers = {"Retry-After": str(max(1, round(exc.retry_after)))}
        param = getattr(exc, "param", None)
        return openai_error(exc.status, str(exc), exc.code, param=param, headers=headers)

    # The store's own checks (unknown message, tag, ...) are the caller's mistakes, not server errors.
    from feedback.store import NotFoundError as StoreNotFound
    from feedback.store import ValidationError as StoreInvalid

    @app.exception_handler(StoreNotFound)
    async def _store_not_found(request: Request, exc: StoreNotFound) -> JSONResponse:
        return openai_error(404, str(exc), "not_found")

    @app.exception_handler(StoreInvalid)
    async def _store_invalid(request: Request, exc: StoreInvalid) -> JSONResponse:
        status = 400 if request.url.path.startswith("/v1/chat") else 422
        return openai_error(status, str(exc), "invalid_value")

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        message = f"{where}: {first.get('msg', 'invalid value')}" if where else str(first.get("msg"))
        status = 400 if request.url.path.startswith("/v1/chat") else 422
        return openai_error(status, message, "invalid_request_error", param=where or None)


# Gradio's own routes (queue/join carries the whole chat history; uploads) get this many times the API's
# limit: bounded too, or anyone could post gigabytes to /gradio_api/* without signing in.
GRADIO_BODY_FACTOR = 4


def install_body_limit(app: FastAPI, max_bytes: int) -> None:
    """Refuse oversized bodies before anything parses them: declared (Content-Length) or streamed."""
    app.add_middleware(_BodyLimit, max_bytes=max_bytes)


class _BodyLimit:
    """Pure ASGI, so a chunked upload is counted as it arrives (a Content-Length check alone misses it)."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes * (GRADIO_BODY_FACTOR if scope["path"].startswith("/gradio_api") else 1)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            if not declared.isdigit() or int(declared) > limit:
                await self._refuse(scope, receive, send, limit)
                return
            await self.app(scope, receive, send)
            return
        # No length given: read up to the limit before the app sees a byte, then replay what was read.
        buffered: list[Any] = []
        size = 0
        while True:
            message = await receive()
            buffered.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > limit:
                await self._refuse(scope, receive, send, limit)
                return
            if not message.get("more_body", False):
                break

        async def replay() -> Any:
            return buffered.pop(0) if buffered else await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Any, receive: Any, send: Any, limit: int) -> None:
        response = openai_error(413, f"request body over {limit} bytes", "body_too_large")
        await response(scope, receive, send)


# ---------------------------------------------------------------------------- routes
def build_router(ctx: AppContext) -> APIRouter:
    router = APIRouter()
    settings = ctx.settings
    chat_limiter = RateLimiter(settings.chat_rate_per_minute)
    feedback_limiter = RateLimiter(settings.feedback_rate_per_minute)

    require_admin = ctx.extras.get("require_admin") or make_require_admin(ctx)

    @router.get("/health")
    def health() -> dict[str, Any]:
        engine = ctx.engine
        return {
            "status": "ready" if engine is not None and engine.running else "loading",
            "model": ctx.model_id,
            "live_version": engine.live_version if engine is not None else None,
            **({"engine": engine.stats()} if engine is not None else {}),
        }

    @router.get("/v1/models")
    def models() -> dict[str, Any]:
        created = int(time.time())
        data = [
            {
                "id": "live",
                "object": "model",
                "created": created,
                "owned_by": "assistant",
                "version": ctx.engine.live_version,
            }
        ]
        data.append(
            {
                "id": ctx.model_id,
                "object": "model",
                "created": created,
                "owned_by": "assistant",
                "version": BASE,
            }
        )
        for version in sorted(ctx.engine.loaded_versions):
            data.append(
                {
                    "id": version,
                    "object": "model",
                    "created": created,
                    "owned_by": "assistant",
                    "version": version,
                }
            )
        return {"object": "list", "data": data}

    @router.post("/v1/chat/completions", response_model=None)
    async def chat_completions(body: ChatCompletionRequest, request: Request) -> Any:
        if body.n is not None and body.n > 1:
            raise InvalidRequestError("n > 1 is not supported; send separate requests")
        if not needs_database(request, body.user):
            caller = identify_caller(ctx, request, body.user)
        else:  # a database read: off the event loop
            caller = await anyio.to_thread.run_sync(identify_caller, ctx, request, body.user)
        chat_limiter.check(caller.limit_key, "chat requests")
        version = resolve_model_name(ctx, body.model)
        stop = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
        params = SamplingParams(
            max_tokens=ctx.engine.clamp_max_tokens(body.max_completion_tokens or body.max_tokens),
            temperature=0.7 if body.temperature is None else body.temperature,
            top_p=1.0 if body.top_p is None else body.top_p,
            stop=tuple(stop),
            seed=body.seed,
        )
        messages: list[dict[str, Any]] = [
            {"role": "system" if m.role == "developer" else m.role, "content": m.content}
            for m in body.messages
        ]
        # start_turn writes the user's turn to SQLite and waits for the commit: off the event loop, so a
        # slow or locked database holds up this request only, not every other one (health, UI, SSE).
        turn = await anyio.to_thread.run_sync(
            functools.partial(
                start_turn,
                ctx,
                messages,
                params,
                owner=caller.rater,
                source="api",
                version=version,
            )
        )
        if body.stream:
            return StreamingResponse(
                _sse(turn, ctx),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
        return await _complete(turn, ctx)

    @router.post("/v1/feedback")
    def feedback(body: FeedbackRequest, request: Request) -> dict[str, Any]:
        caller = identify_caller(ctx, request, body.user)
        rater = caller.rater
        feedback_limiter.check(caller.limit_key, "ratings")
        rating_id = ctx.store.add_rating(
            message_id=body.message_id,
            rater=rater,
            origin=caller.origin,
            rating=body.rating,
            stars=body.stars,
            tags=tuple(body.tags),
            comment=body.comment,
            correction=body.correction,
        )
        return {"id": rating_id, "message_id": body.message_id, "rater": rater, "saved": True}

    @router.post("/v1/feedback/compare")
    def compare(body: CompareRequest, request: Request) -> dict[str, Any]:
        caller = identify_caller(ctx, request, body.user)
        feedback_limiter.check(caller.limit_key, "ratings")
        comparison_id = ctx.store.add_comparison(
            message_a=body.message_ids[0],
            message_b=body.message_ids[1],
            winner=body.winner,
            rater=caller.rater,
            origin=caller.origin,
        )
        return {"id": comparison_id, "saved": True}

    @router.get("/admin/feedback")
    def admin_feedback(
        _: str = Depends(require_admin),
        rater: str | None = None,
        tag: str | None = None,
        rating: Literal["up", "down"] | None = None,
        version: str | None = None,
        since: str | None = None,
        limit: int = Query(50, ge=1, le=500),
        offset: int = Query(0, ge=0, le=2**62),  # past 64 bits SQLite raises OverflowError (a 500)
    ) -> dict[str, Any]:
        rows = ctx.store.list_feedback(
            rater=rater,
            tag=tag,
            rating=rating,
            adapter_version=version,
            since=since,
            limit=limit,
            offset=offset,
        )
        return {"data": rows, "limit": limit, "offset": offset, "counts": ctx.store.feedback_counts()}

    @router.get("/admin/users")
    def admin_users(_: str = Depends(require_admin)) -> dict[str, Any]:
        from feedback.users import list_users

        return {"data": list_users(ctx.store)}

    @router.post("/admin/users", status_code=201)
    def admin_create_user(body: NewUserRequest, _: str = Depends(require_admin)) -> dict[str, Any]:
        """A new account with an API key; the key (and a generated password) are shown only in this answer."""
        from feedback.users import create_user, new_api_key

        password = body.password or secrets.token_urlsafe(12)
        create_user(ctx.store, body.name, password, body.role)
        out: dict[str, Any] = {
            "name": body.name,
            "role": body.role,
            "api_key": new_api_key(ctx.store, body.name),
        }
        if body.password is None:
            out["password"] = password
        return out

    @router.post("/admin/users/{name}/api-key")
    def admin_new_api_key(name: str, _: str = Depends(require_admin)) -> dict[str, Any]:
        """A new API key for the account; its old key stops working."""
        from feedback.users import new_api_key

        return {"name": name, "api_key": new_api_key(ctx.store, name)}

    @router.delete("/admin/users/{name}/api-key")
    def admin_revoke_api_key(name: str, _: str = Depends(require_admin)) -> dict[str, Any]:
        from feedback.users import revoke_api_key

        return {"name": name, "revoked": revoke_api_key(ctx.store, name)}

    return router


def make_require_admin(ctx: AppContext) -> Any:
    """A FastAPI dependency: the admin bearer token, compared in constant time."""

    def require_admin(request: Request) -> str:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not _is_admin_token(ctx, token):
            raise _Unauthorized()
        return "admin"

    return require_admin


class _InvalidApiKey(AssistantError):
    status = 401
    code = "invalid_api_key"

    def __init__(self) -> None:
        super().__init__(
            "API key not recognised (unknown or revoked): ask an admin for a new one "
            "(`python -m assistant users key NAME` or POST /admin/users/NAME/api-key), "
            "or send no 'ak-' key to call anonymously"
        )


class _ApiKeyRequired(AssistantError):
    status = 401
    code = "api_key_required"

    def __init__(self) -> None:
        super().__init__(
            "this server takes no anonymous chats or ratings (ASSISTANT_ALLOW_ANONYMOUS=false): send your "
            "API key as 'Authorization: Bearer ak-...'. An admin makes an account and its key with "
            "`python -m assistant users add NAME` or POST /admin/users"
        )


class _ReservedRater(AssistantError):
    status = 403
    code = "reserved_user"
    param = "user"

    def __init__(self, user: str, account: str) -> None:
        if user == account:
            message = f"{user!r} is an account: send its API key to rate as {user}, or leave `user` out"
        else:
            message = (
                f"{user!r} is under the account {account!r}: send {account}'s API key to rate as {user}, "
                "or leave `user` out"
            )
        super().__init__(message)


class _Unauthorized(AssistantError):
    status = 401
    code = "unauthorized"

    def __init__(self) -> None:
        super().__init__("admin token required: send 'Authorization: Bearer <token>' (see data/admin-token)")


def resolve_model_name(ctx: AppContext, name: str | None) -> str | None:
    """`live` (or the base model's id) → routing decides; a version id pins that version."""
    if name in (None, "", "live"):
        return None
    if name in (ctx.model_id, BASE):
        return BASE
    if name in ctx.engine.loaded_versions:
        return name
    raise _ModelNotFound(name)


class _ModelNotFound(AssistantError):
    status = 404
    code = "model_not_found"

    def __init__(self, name: str) -> None:
        super().__init__(f"model {name!r} does not exist; GET /v1/models lists what can be addressed")


def _completion_body(turn: Turn, ctx: AppContext) -> dict[str, Any]:
    result = turn.handle.result
    return {
        "id": turn.message_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": turn.version if turn.version != BASE else ctx.model_id,
        "system_fingerprint": turn.version,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": result.text},
                "finish_reason": "stop" if result.finish_reason in ("stop", None) else result.finish_reason,
            }
        ],
        "usage": {
            "prompt_tokens": result.prompt_tokens,
            "completion_tokens": result.completion_tokens,
            "total_tokens": result.prompt_tokens + result.completion_tokens,
        },
        "conversation_id": turn.conversation_id,
    }


async def _complete(turn: Turn, ctx: AppContext) -> dict[str, Any]:
    try:
        async for _ in turn.handle.astream(ctx.settings.request_timeout_s):
            pass
    finally:
        await _finish(turn)
    return _completion_body(turn, ctx)


async def _finish(turn: Turn) -> None:
    """Cancel if still running (client gone), then store the answer off the event loop."""
    import anyio

    if not turn.handle.done.is_set():
        turn.handle.cancel()
        await anyio.to_thread.run_sync(turn.handle.done.wait, 30)
    await anyio.to_thread.run_sync(turn.store)


async def _sse(turn: Turn, ctx: AppContext) -> AsyncIterator[str]:
    created = int(time.time())
    model = turn.version if turn.version != BASE else ctx.model_id

    def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
        body = {
            "id": turn.message_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "system_fingerprint": turn.version,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        return f"data: {json.dumps(body)}\n\n"

    try:
        yield chunk({"role": "assistant", "content": ""})
        try:
            async for delta in turn.handle.astream(ctx.settings.request_timeout_s):
                yield chunk({"content": delta})
        except AssistantError as exc:  # headers are gone: report in-band, as OpenAI does
            yield f"data: {json.dumps({'error': {'message': str(exc), 'code': exc.code}})}\n\n"
        await _finish(turn)  # stored before the last chunk: a rating sent right after [DONE] finds it
        reason = turn.handle.result.finish_reason
        yield chunk({}, "stop" if reason in ("stop", None) else reason)
        yield "data: [DONE]\n\n"
    finally:
        await _finish(turn)
