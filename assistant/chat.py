"""One chat turn, shared by the HTTP API and the UI: route to a version, stream, store the answer.

The answer's message id exists before the first token, so stream chunks and ratings can name it. The
answer is stored when generation ends (finished, stopped or cancelled) with the exact prompt, presets,
sampling parameters, model id, adapter version, token counts and latency.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Generator
from dataclasses import dataclass, field, replace
from typing import Any

from .context import AppContext
from .engine import BASE, RequestHandle, SamplingParams
from .errors import InvalidRequestError
from .presets import Presets

log = logging.getLogger(__name__)


def new_message_id() -> str:
    return "msg_" + uuid.uuid4().hex[:24]


def validate_messages(
    messages: list[dict[str, Any]], max_messages: int, max_chars: int
) -> list[dict[str, str]]:
    """Normalise OpenAI/Gradio message shapes to {"role","content": str}; reject what we can't serve."""
    if not isinstance(messages, list) or not messages:
        raise InvalidRequestError("messages must be a non-empty list")
    if len(messages) > max_messages:
        raise InvalidRequestError(f"at most {max_messages} messages per request; start a new conversation")
    clean = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise InvalidRequestError(f"messages[{i}] must be an object with role and content")
        role = message.get("role")
        if role not in ("system", "user", "assistant"):
            raise InvalidRequestError(f"messages[{i}].role must be system, user or assistant")
        content = message.get("content")
        if isinstance(content, list):  # OpenAI / Gradio content parts
            texts = [p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"]
            if len(texts) != len(content) or not all(isinstance(t, str) for t in texts):
                raise InvalidRequestError(f"messages[{i}].content: only text parts (string text) are allowed")
            content = "".join(texts)
        if not isinstance(content, str):
            raise InvalidRequestError(f"messages[{i}].content must be a string")
        if len(content) > max_chars:
            raise InvalidRequestError(f"messages[{i}] is {len(content)} characters; the limit is {max_chars}")
        clean.append({"role": role, "content": content})
    if clean[-1]["role"] != "user":
        raise InvalidRequestError("the last message must come from the user")
    return clean


# Sampling values the engine's torch code cannot take: a seed outside 64 bits, a top_p that rounds to 0
# in float32 (nothing left to sample). Both made a request hang on the worker instead of failing.
_SEED_MIN, _SEED_MAX = -(2**63), 2**64 - 1
_TOP_P_FLOOR = 1e-6


def sanitize_sampling(params: SamplingParams) -> SamplingParams:
    if params.seed is not None and not _SEED_MIN <= params.seed <= _SEED_MAX:
        raise InvalidRequestError(f"seed must be a 64-bit integer ({_SEED_MIN}..{_SEED_MAX})")
    if params.top_p < _TOP_P_FLOOR:  # as good as greedy: the top token alone is kept
        params = replace(params, top_p=_TOP_P_FLOOR)
    return params


@dataclass
class Turn:
    """A chat turn in flight: iterate `deltas()`; the answer is stored when it ends."""

    ctx: AppContext
    handle: RequestHandle
    message_id: str
    conversation_id: str
    user_message_id: str | None
    prompt: list[dict[str, str]]
    presets: dict[str, Any]
    sampling: dict[str, Any]
    source: str
    owner: str
    parent_id: str | None
    stored: bool = False
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def version(self) -> str:
        return self.handle.version

    def deltas(self, timeout: float | None = None) -> Generator[str, None, None]:
        try:
            yield from self.handle.stream(timeout)
        finally:
            # A client that disconnects closes this generator: free the slot, keep what was said.
            if not self.handle.done.is_set():
                self.handle.cancel()
                self.handle.done.wait(timeout=30)
            self.store()

    def text(self, timeout: float | None = None) -> str:
        for _ in self.deltas(timeout):
            pass
        return self.handle.result.text

    def store(self) -> None:
        if self.stored or self.ctx.store is None:
            return
        self.stored = True
        result = self.handle.result
        try:
            self.ctx.store.record_message(
                id=self.message_id,
                conversation_id=self.conversation_id,
                role="assistant",
                content=result.text,
                parent_id=self.user_message_id,
                prompt=self.prompt,
                presets=self.presets,
                sampling=self.sampling,
                model_id=self.ctx.model_id,
                adapter_version=None if result.version == BASE else result.version,
                prompt_tokens=result.prompt_tokens,
                completion_tokens=result.completion_tokens,
                latency_ms=result.latency_ms,
                finish_reason=result.finish_reason,
                source=self.source,
                created_by=self.owner,
            )
        except Exception:  # never lose the answer to the user because storage failed
            log.exception("could not store message %s", self.message_id)
            raise


def start_turn(
    ctx: AppContext,
    messages: list[dict[str, Any]],
    params: SamplingParams,
    *,
    owner: str,
    source: str,
    conversation_id: str | None = None,
    presets: Presets | None = None,
    version: str | None = None,
    user_message_id: str | None = None,
) -> Turn:
    """Submit a chat to the engine (raising 4xx errors at once) and record the user's turn."""
    prompt = validate_messages(messages, ctx.settings.max_messages, ctx.settings.max_message_chars)
    params = sanitize_sampling(params)
    router = ctx.extras.get("router")
    if version is None and router is not None:
        version = router.version_for(conversation_id)
    handle = ctx.engine.submit(prompt, params, version=version)
    store = ctx.store
    if store is not None:
        known = conversation_id and store.query("SELECT 1 FROM conversations WHERE id = ?", [conversation_id])
        if not known:
            conversation_id = store.create_conversation(owner=owner, id=conversation_id)
        if user_message_id is None:
            user_message_id = store.record_message(
                conversation_id=conversation_id,
                role="user",
                content=prompt[-1]["content"],
                source=source,
                created_by=owner,
            )
    sampling = {
        "max_tokens": params.max_tokens,
        "temperature": params.temperature,
        "top_p": params.top_p,
        "stop": list(params.stop),
        "seed": params.seed,
    }
    return Turn(
        ctx=ctx,
        handle=handle,
        message_id=new_message_id(),
        conversation_id=conversation_id or uuid.uuid4().hex,
        user_message_id=user_message_id,
        prompt=prompt,
        presets=presets.as_dict() if presets else {},
        sampling=sampling,
        source=source,
        owner=owner,
        parent_id=user_message_id,
    )
