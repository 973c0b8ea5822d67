"""RemoteEngine: the engine's public API over an OpenAI-compatible server, so the GPUs can live elsewhere.

In production the backend is vLLM started with `--enable-lora` (and VLLM_ALLOW_RUNTIME_LORA_UPDATING=True);
another instance of this project works too (tests/test_remote_backend.py runs exactly that). This process
keeps the UI, the API, the ratings, the registry and the routing; the backend only generates.

    engine = RemoteEngine("http://gpu-box:8000", api_key="...", model_id="SmolLM2-135M-Instruct").start()
    handle = engine.submit(messages, SamplingParams(max_tokens=64))   # an engine.RequestHandle
    for delta in handle: ...
    engine.load_version("v0003", Path("data/adapters/v0003"))  # POST /v1/load_lora_adapter
    engine.set_live("v0003")                                    # new chats ask for model="v0003"
    engine.retire("v0002")          # POST /v1/unload_lora_adapter once its last request ends

A version is addressed by its immutable id (`model=<id>`), never by a reused name; the base model by its
name on the backend (`backend_model`, else read from the backend's /v1/models). The backend reads adapter
directories itself: mount the adapters directory on it at the same path, or give `adapters_dir_on_backend`
(ASSISTANT_BACKEND_ADAPTERS_DIR) to say where it is mounted there. One backend serves one registry: two
registries would both have a "v0001".

Requests stream on a small thread pool: plain HTTP, no torch in this process, so threads cost nothing
here; the backend does the batching. A request is pinned to the version live when it was submitted and
finishes on it; a retired version is unloaded on the backend after its last request, as in Engine.
"""

from __future__ import annotations

import itertools
import json
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from .engine import BASE, RequestChecks, RequestHandle, RequestTimeoutError, SamplingParams
from .errors import (
    AdapterRejectedError,
    AssistantError,
    InputTooLongError,
    InvalidRequestError,
    NotReadyError,
    QueueFullError,
    RequestCancelledError,
)
from .limits import queue_wait_s

log = logging.getLogger(__name__)


class RemoteBackendError(AssistantError):
    """The model backend failed or could not be reached; the message says which and how."""

    status = 502
    code = "backend_error"


class _NotOnBackend(RemoteBackendError):
    """The backend does not know the model asked for (404 before any token): it may have restarted."""


def error_message(response: httpx.Response) -> str:
    """The error text of an OpenAI-style ({"error": {"message"}}), vLLM-style ({"message"}) or plain reply."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:500] or f"HTTP {response.status_code}"
    if isinstance(body, dict):
        inner = body.get("error")
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
        for key in ("message", "detail", "error"):
            if body.get(key):
                return str(body[key])
    return json.dumps(body)[:500]


class RemoteEngine(RequestChecks):
    """Engine-compatible client of an OpenAI-compatible server. `start()` connects; `stop()` ends streams."""

    def __init__(
        self,
        base_url: str,
        *,
        model_id: str,
        api_key: str | None = None,
        backend_model: str | None = None,
        tokenizer: Any = None,
        context_window: int = 2048,
        max_tokens_limit: int = 1024,
        default_max_tokens: int = 256,
        max_concurrency: int = 8,
        queue_size: int = 64,
        request_timeout_s: float | None = None,
        connect_timeout_s: float = 10.0,
        startup_timeout_s: float = 30.0,
        admin_timeout_s: float = 300.0,
        adapters_dir: Path | None = None,
        adapters_dir_on_backend: str | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        url = base_url.rstrip("/")
        self.base_url = url[: -len("/v1")] if url.endswith("/v1") else url
        self.model_id = model_id
        self.api_key = api_key
        self.backend_model = backend_model
        self.tokenizer = tokenizer  # optional: local prompt-length checks and token counts
        self.context_window = context_window
        self.max_tokens_limit = max_tokens_limit
        self.default_max_tokens = default_max_tokens
        self.max_concurrency = max(1, max_concurrency)
        self.max_batch_size = self.max_concurrency
        self.queue_size = queue_size
        self.request_timeout_s = request_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.startup_timeout_s = startup_timeout_s
        self.admin_timeout_s = admin_timeout_s  # loading an adapter on a busy GPU server can take a while
        self.adapters_dir = Path(adapters_dir).resolve() if adapters_dir is not None else None
        self.adapters_dir_on_backend = adapters_dir_on_backend
        self.threads = 0  # the backend owns its cores; kept for Engine compatibility
        self.live_version = BASE
        # Replaced, never mutated: readers in other threads (the API's /v1/models) iterate it unlocked.
        self.loaded_versions: frozenset[str] = frozenset()
        self._paths: dict[str, Path] = {}  # version → adapter directory, to reload after a backend restart
        self._transport = transport
        self._client: httpx.Client | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._ids = itertools.count(1)
        self._cv = threading.Condition()  # guards the fields below (and, by name, routing's use of _retire)
        self._admin = threading.Lock()  # one load / unload / live switch at a time
        self._stopping = False
        self._queued: set[RequestHandle] = set()  # submitted, no thread yet
        self._streaming: set[RequestHandle] = set()
        self._pins: dict[str, int] = {}  # version → requests pinned to it (queued or streaming)
        self._retire: set[str] = set()  # versions to unload once nothing is pinned to them
        self.requests = 0
        self.errors = 0
        self.timeouts = 0
        self.tokens_generated = 0

    @classmethod
    def from_settings(cls, settings: Any, model_dir: Path | None, model_id: str) -> RemoteEngine:
        """Built from ASSISTANT_BACKEND_* settings; the local tokenizer (if any) checks prompt lengths."""
        if not settings.backend_url:
            raise RemoteBackendError(
                "the remote backend needs a URL: set ASSISTANT_BACKEND_URL (or --backend-url), e.g. "
                "http://gpu-box:8000 for a vLLM server"
            )
        tokenizer = None
        if model_dir is not None:
            try:
                from .model import load_tokenizer

                tokenizer = load_tokenizer(Path(model_dir))
            except Exception as exc:  # counts become estimates; the backend still checks lengths
                log.warning(
                    "no local tokenizer for %s (%s): prompt lengths are checked by the backend",
                    model_dir,
                    exc,
                )
        return cls(
            settings.backend_url,
            model_id=model_id,
            api_key=getattr(settings, "backend_api_key", None),
            backend_model=getattr(settings, "backend_model", None),
            tokenizer=tokenizer,
            context_window=settings.context_window,
            max_tokens_limit=settings.max_tokens_limit,
            default_max_tokens=settings.default_max_tokens,
            max_concurrency=settings.max_batch_size,
            queue_size=settings.queue_size,
            request_timeout_s=settings.request_timeout_s,
            adapters_dir=settings.adapters_dir,
            adapters_dir_on_backend=getattr(settings, "backend_adapters_dir", None),
        )

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> RemoteEngine:
        """Connect (retrying for `startup_timeout_s`: the backend may still be starting), learn the base
        model's name and the adapters already loaded there, start the stream threads."""
        if self._client is not None:
            return self
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        httpx_log = logging.getLogger("httpx")
        if httpx_log.level == logging.NOTSET:  # else one INFO line per chat in the server log
            httpx_log.setLevel(logging.WARNING)
        self._client = httpx.Client(
            base_url=self.base_url,
            headers=headers,
            timeout=httpx.Timeout(self.request_timeout_s or 300.0, connect=self.connect_timeout_s),
            limits=httpx.Limits(
                max_connections=self.max_concurrency + 4, max_keepalive_connections=self.max_concurrency + 4
            ),
            transport=self._transport,
        )
        try:
            self._discover()
        except BaseException:
            self._client.close()
            self._client = None
            raise
        self._pool = ThreadPoolExecutor(self.max_concurrency, thread_name_prefix="remote-stream")
        log.info(
            "remote backend %s: base model %r, adapters loaded there: %s",
            self.base_url,
            self.backend_model,
            sorted(self.loaded_versions) or "none",
        )
        return self

    def _discover(self) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        while True:
            try:
                response = self._http().get("/v1/models", timeout=self.connect_timeout_s)
                break
            except httpx.TransportError as exc:
                if time.monotonic() > deadline:
                    raise RemoteBackendError(
                        f"cannot reach the model backend at {self.base_url}/v1/models ({exc}); start it, or "
                        "fix ASSISTANT_BACKEND_URL"
                    ) from None
                time.sleep(0.5)
        if response.status_code in (401, 403):
            raise RemoteBackendError(
                f"the model backend at {self.base_url} refused the API key (HTTP {response.status_code}); "
                "set ASSISTANT_BACKEND_API_KEY to its key"
            )
        if response.is_error:
            raise RemoteBackendError(
                f"the model backend at {self.base_url} answered /v1/models with HTTP {response.status_code}: "
                f"{error_message(response)}"
            )
        models = [m for m in response.json().get("data", []) if isinstance(m, dict) and m.get("id")]
        base = self.backend_model or _base_model_name(models)
        if base is None:
            raise RemoteBackendError(
                f"the model backend at {self.base_url} lists no model; set ASSISTANT_BACKEND_MODEL"
            )
        self.backend_model = base
        with self._cv:
            self.loaded_versions = frozenset(m["id"] for m in models if _is_adapter(m, base))

    def stop(self) -> None:
        """Cancel every request (streams close, so the backend stops generating) and disconnect."""
        with self._cv:
            self._stopping = True
            queued, self._queued = list(self._queued), set()
            streaming = list(self._streaming)
        for handle in queued:
            self._release(handle, "cancelled", RequestCancelledError("the server is shutting down"))
        for handle in streaming:
            handle.cancel()  # each stream thread closes its connection at the next chunk
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        deadline = time.monotonic() + 5.0
        for handle in streaming:
            handle.done.wait(max(0.0, deadline - time.monotonic()))
        if self._client is not None:
            self._client.close()  # a stream still waiting on a silent backend fails now

    @property
    def running(self) -> bool:
        return self._client is not None and self._pool is not None and not self._stopping

    def stats(self) -> dict[str, Any]:
        with self._cv:
            return {
                "backend": self.base_url,
                "backend_model": self.backend_model,
                "running": len(self._streaming),
                "waiting": len(self._queued),
                "live_version": self.live_version,
                "loaded_versions": sorted(self.loaded_versions),
                "requests": self.requests,
                "errors": self.errors,
                "timeouts": self.timeouts,
                "tokens_generated": self.tokens_generated,
            }

    # ------------------------------------------------------------------ requests
    def submit(
        self,
        messages: list[dict[str, str]] | None = None,
        params: SamplingParams | None = None,
        *,
        prompt_ids: list[int] | None = None,
        version: str | None = None,
        timeout_s: float | None = None,
    ) -> RequestHandle:
        """Queue a chat; raises InputTooLongError, QueueFullError, NotReadyError at once, like Engine."""
        if not self.running:
            raise NotReadyError("the model backend is not connected yet; retry in a few seconds")
        if not messages:
            raise InvalidRequestError(
                "messages must hold at least one message (a remote backend takes messages, not token ids)"
            )
        params = self._checked_params(params)
        if prompt_ids is None and self.tokenizer is not None:
            prompt_ids = self.encode_chat(messages)
        self._check_fits(prompt_ids, params)
        deadline = self._deadline(timeout_s)
        pool = self._pool
        assert pool is not None
        with self._cv:
            if len(self._queued) >= self.queue_size:
                wait = queue_wait_s(len(self._queued), self.max_batch_size)
                raise QueueFullError(
                    f"the server is busy ({len(self._queued)} requests waiting); retry in {wait} s",
                    retry_after=wait,
                )
            pinned = version or self.live_version
            if pinned != BASE and pinned not in self.loaded_versions:
                raise InvalidRequestError(f"model version {pinned!r} is not loaded")
            handle = RequestHandle(next(self._ids), list(prompt_ids or []), params, pinned, deadline=deadline)
            self._pins[pinned] = self._pins.get(pinned, 0) + 1
            self._queued.add(handle)
            self.requests += 1
        pool.submit(self._serve, handle, [dict(m) for m in messages])
        return handle

    def generate(
        self, messages: list[dict[str, str]], params: SamplingParams | None = None, **kw: Any
    ) -> str:
        """Blocking convenience: the whole answer."""
        return self.submit(messages, params, **kw).text()

    def call(self, fn: Callable[[], Any]) -> Future[Any]:
        """Engine runs `fn` on its torch thread; there is none here, so it runs now, in the caller's."""
        future: Future[Any] = Future()
        try:
            future.set_result(fn())
        except BaseException as exc:
            future.set_exception(exc)
        return future

    def set_threads(self, threads: int) -> None:
        """Nothing to hand over: the backend's cores are its own (training here may use all of ours)."""
        self.threads = threads

    def _serve(self, handle: RequestHandle, messages: list[dict[str, str]]) -> None:
        with self._cv:
            if handle not in self._queued:  # stop() already finished it
                return
            self._queued.discard(handle)
            self._streaming.add(handle)
        reason, error = "stop", None
        try:
            if handle.cancelled.is_set():
                reason = "cancelled"
            else:
                try:
                    reason = self._stream(handle, messages)
                except _NotOnBackend:
                    if not self._reload(handle.version):
                        raise
                    reason = self._stream(handle, messages)  # nothing was streamed yet: safe to retry
        except AssistantError as exc:
            reason, error = ("timeout" if isinstance(exc, RequestTimeoutError) else "error"), exc
        except httpx.TimeoutException:
            reason, error = "timeout", RequestTimeoutError("the model backend did not answer in time")
        except httpx.HTTPError as exc:
            reason, error = "error", RemoteBackendError(f"the model backend at {self.base_url} failed: {exc}")
        except Exception as exc:  # a malformed stream: fail this request, never the server
            log.exception("remote request %s failed", handle.id)
            reason, error = "error", RemoteBackendError(f"bad reply from the model backend: {exc}")
        self._release(handle, reason, error)

    def _stream(self, handle: RequestHandle, messages: list[dict[str, str]]) -> str:
        """Stream one chat from the backend into the handle; returns the finish reason."""
        params, result = handle.params, handle.result
        model = self.backend_model if handle.version == BASE else handle.version
        body: dict[str, Any] = {
            "model": model,
            "messages": messages,
            "stream": True,
            "stream_options": {"include_usage": True},
            "max_tokens": params.max_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
        }
        if params.stop:
            body["stop"] = list(params.stop)
        if params.seed is not None:
            body["seed"] = params.seed
        reason: str | None = None
        deltas = 0
        usage: dict[str, Any] | None = None
        timeout = self._timeout(handle)
        with self._http().stream("POST", "/v1/chat/completions", json=body, timeout=timeout) as response:
            if response.is_error:
                response.read()
                raise self._chat_error(response, model)
            for line in response.iter_lines():
                if handle.cancelled.is_set():
                    return "cancelled"  # leaving the block closes the connection: the backend stops too
                if handle.deadline is not None and time.monotonic() > handle.deadline:
                    raise RequestTimeoutError("the request ran past its deadline and was cancelled")
                if not line.startswith("data:"):
                    continue
                data = line[len("data:") :].strip()
                if data == "[DONE]":
                    break
                chunk = json.loads(data)
                if "error" in chunk:  # reported in-band once the response has started
                    error = chunk["error"]
                    raise RemoteBackendError(str(error.get("message") if isinstance(error, dict) else error))
                if chunk.get("usage"):
                    usage = chunk["usage"]
                for choice in chunk.get("choices") or []:
                    text = (choice.get("delta") or {}).get("content")
                    if text:
                        if result.first_token_at is None:
                            result.first_token_at = time.monotonic()
                        result.text += text
                        deltas += 1
                        handle._emit(text)
                    if choice.get("finish_reason"):
                        reason = choice["finish_reason"]
        if usage:
            result.prompt_tokens = int(usage.get("prompt_tokens") or result.prompt_tokens)
            result.completion_tokens = int(usage.get("completion_tokens") or 0)
        elif self.tokenizer is not None:
            result.completion_tokens = len(self.tokenizer.encode(result.text, add_special_tokens=False))
        else:
            result.completion_tokens = deltas  # one delta per token on vLLM and on this project's server
        return reason or "stop"

    def _timeout(self, handle: RequestHandle) -> httpx.Timeout:
        read = self.request_timeout_s or 300.0
        if handle.deadline is not None:
            read = max(0.001, handle.deadline - time.monotonic())
        return httpx.Timeout(read, connect=self.connect_timeout_s)

    def _chat_error(self, response: httpx.Response, model: str | None) -> AssistantError:
        message = error_message(response)
        status = response.status_code
        if status == 429:
            return QueueFullError(f"the model backend is busy: {message}")
        if status in (401, 403):
            return RemoteBackendError(
                f"the model backend refused the API key ({message}); set ASSISTANT_BACKEND_API_KEY"
            )
        if status == 404:
            return _NotOnBackend(f"the model backend does not serve model {model!r}: {message}")
        if 400 <= status < 500:
            if "context" in message.lower() or "too long" in message.lower():
                return InputTooLongError(message)
            return InvalidRequestError(message)
        return RemoteBackendError(f"the model backend failed (HTTP {status}): {message}")

    def _release(self, handle: RequestHandle, reason: str, error: BaseException | None = None) -> None:
        version = handle.version
        with self._cv:
            self._streaming.discard(handle)
            self._pins[version] = self._pins.get(version, 1) - 1
            self.tokens_generated += handle.result.completion_tokens
            self.errors += reason == "error"
            self.timeouts += reason == "timeout"
            idle = version in self._retire and self._pins[version] <= 0
        handle._finish(reason, error)
        if idle:
            self._unload_if_idle(version)

    # ------------------------------------------------------------------ versions
    def load_version(self, version: str, path: Path) -> None:
        """POST /v1/load_lora_adapter {"lora_name": version, "lora_path": <path as the backend sees it>}."""
        with self._admin:
            with self._cv:
                self._paths[version] = Path(path)
                if version in self.loaded_versions:
                    self._retire.discard(version)
                    return
            self._post_load(version, Path(path))

    def _post_load(self, version: str, path: Path) -> None:
        """Load `version` on the backend (caller holds `_admin`); "already loaded" counts as loaded."""
        lora_path = self.backend_path(path)
        response = self._http().post(
            "/v1/load_lora_adapter",
            json={"lora_name": version, "lora_path": lora_path},
            timeout=self.admin_timeout_s,
        )
        message = error_message(response) if response.is_error else ""
        if response.status_code == 400 and "already" in message.lower():
            log.info("version %s was already loaded on the backend", version)  # ids are immutable
        elif response.status_code in (401, 403):
            raise RemoteBackendError(
                f"the model backend refused to load {version}: {message} "
                "(ASSISTANT_BACKEND_API_KEY must be its admin key)"
            )
        elif 400 <= response.status_code < 500:
            raise AdapterRejectedError(
                f"the model backend refused adapter {version} from {lora_path}: {message}"
            )
        elif response.is_error:
            raise RemoteBackendError(
                f"the model backend could not load {version} (HTTP {response.status_code}): {message}"
            )
        with self._cv:
            self.loaded_versions = self.loaded_versions | {version}
            self._retire.discard(version)
        log.info("loaded version %s on the backend from %s", version, lora_path)

    def _reload(self, version: str) -> bool:
        """The backend lost a version we serve (a restart drops runtime-loaded LoRAs): load it again."""
        with self._admin:
            path = self._paths.get(version)
            if path is None and self.adapters_dir is not None and (self.adapters_dir / version).is_dir():
                path = self.adapters_dir / version  # adopted at start-up: the registry's layout
            if version == BASE or path is None or version not in self.loaded_versions:
                return False
            log.warning("the model backend does not know version %s (restarted?): loading it again", version)
            self._post_load(version, path)
        return True

    def set_live(self, version: str) -> str:
        """New requests use `version` from now on; running ones finish on theirs. Returns the old one."""
        with self._admin, self._cv:
            if version != BASE and version not in self.loaded_versions:
                raise InvalidRequestError(f"version {version!r} is not loaded; load it first")
            old, self.live_version = self.live_version, version
            self._retire.discard(version)
            idle = old in self._retire and self._pins.get(old, 0) <= 0
        if idle:
            self._unload_if_idle(old)
        return old

    def retire(self, version: str) -> None:
        """Unload `version` on the backend after the last request pinned to it ends."""
        if version == BASE:
            return
        with self._cv:
            self._retire.add(version)
        self._unload_if_idle(version)

    def _unload_if_idle(self, version: str) -> None:
        """POST /v1/unload_lora_adapter once nothing uses `version`; a failure is logged (it stays loaded)."""
        with self._admin:
            with self._cv:
                if (
                    version not in self._retire
                    or self._pins.get(version, 0) > 0
                    or version == self.live_version
                    or self._client is None
                ):
                    return
            try:
                response = self._http().post(
                    "/v1/unload_lora_adapter", json={"lora_name": version}, timeout=self.admin_timeout_s
                )
            except httpx.HTTPError as exc:
                log.error("could not unload %s on the backend (%s); it stays loaded there", version, exc)
                return
            if response.is_error and response.status_code != 404:  # 404: not loaded there, already gone
                log.error(
                    "the backend refused to unload %s (HTTP %s): %s",
                    version,
                    response.status_code,
                    error_message(response),
                )
                return
            with self._cv:
                self.loaded_versions = self.loaded_versions - {version}
                self._retire.discard(version)
                self._paths.pop(version, None)
        log.info("unloaded version %s on the backend", version)

    def backend_path(self, path: Path | str) -> str:
        """Where the backend finds an adapter directory: the same path, or under adapters_dir_on_backend."""
        local = Path(path).resolve()
        if self.adapters_dir_on_backend and self.adapters_dir is not None:
            try:
                relative = local.relative_to(self.adapters_dir)
            except ValueError:
                return str(local)
            return f"{self.adapters_dir_on_backend.rstrip('/')}/{relative.as_posix()}"
        return str(local)

    def _http(self) -> httpx.Client:
        if self._client is None:
            raise NotReadyError("the remote engine is not started")
        return self._client


def _is_adapter(model: dict[str, Any], base: str) -> bool:
    """A LoRA on the backend: vLLM lists it with a `parent`; this project with `version` equal to its id."""
    if model["id"] in (base, "live"):
        return False
    parent = model.get("parent")
    if parent:
        return bool(parent == base)
    return bool(model.get("version") == model["id"])


def _base_model_name(models: list[dict[str, Any]]) -> str | None:
    """The backend's base model: this project marks it version "base"; vLLM lists it without a parent."""
    for model in models:
        if model.get("version") == BASE and model["id"] != "live":
            return str(model["id"])
    for model in models:
        if not model.get("parent") and model["id"] != "live" and "version" not in model:
            return str(model["id"])
    return str(models[0]["id"]) if models else None
