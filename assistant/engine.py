"""The engine: one worker thread owns every torch call.

Callers (HTTP handlers, Gradio callbacks, the CLI) `submit()` a request and iterate its handle for text
deltas; they never touch torch. The worker runs a dynamic batch:

- Admission is FIFO and bounded: at most `queue_size` requests wait, at most `max_batch_size` run.
  Waiting requests are taken in arrival order as a *group*, left-padded and prefilled together in one
  forward (in chunks of at most `prefill_chunk_tokens`, with a decode step of the running batch between
  chunks, so a long prompt never stalls the others for long). A prefilled group joins the running batch's
  KV cache by left-padding; finished, cancelled or timed-out rows leave it via `batch_select_indices`.
- Every row keeps its own sampling parameters, stop strings, limits, deadline and adapter version.
  Greedy rows are sampled with one vectorised argmax; sampled rows with vectorised temperature/top-p
  (a per-row `torch.Generator` only where a request gave a seed).
- Text is detokenised incrementally (a prefix offset, as in TGI/vLLM): each step decodes a few tokens,
  never the whole answer again.

Why one thread: once a second Python thread has run torch ops, generation in the process runs ~1.7×
slower, and PEFT's active adapter is global state. Adapter loads, swaps and thread-count changes are
therefore commands executed by the same worker, between decode steps.

Why our own loop rather than transformers' continuous batching: that serves one active adapter only,
and a swap must let running requests finish on the version they started with. PEFT's per-row
`adapter_names` gives that in a plain forward. When every active row uses one adapter we merge it: the
merged weights are computed into new tensors and swapped in (the originals are kept, not modified), so
unmerging is exact and instant, even in bfloat16, however often versions alternate.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import queue
import threading
import time
import warnings
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import (
    AssistantError,
    InputTooLongError,
    InvalidRequestError,
    NotReadyError,
    QueueFullError,
    RequestCancelledError,
)
from .limits import queue_wait_s

log = logging.getLogger(__name__)

BASE = "base"  # the version name of the base model (no adapter)
_PEFT_BASE = "__base__"  # PEFT's name for "no adapter" in a mixed batch
_GREEDY_BELOW = 1e-5  # temperatures at or below this are greedy


def adapter_name(version: str) -> str:
    """PEFT adapter names are matched by substring in places: make them unmistakable."""
    return f"ver_{version}"


class RequestTimeoutError(AssistantError):
    """A request ran past its deadline (`request_timeout_s`); the engine ended it."""

    status = 504
    code = "timeout"


@dataclass
class SamplingParams:
    max_tokens: int = 256
    temperature: float = 0.7
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise InvalidRequestError("max_tokens must be at least 1")
        if not 0.0 <= self.temperature <= 2.0:
            raise InvalidRequestError("temperature must be between 0 and 2")
        if not 0.0 < self.top_p <= 1.0:
            raise InvalidRequestError("top_p must be in (0, 1]")
        if len(self.stop) > 4 or any(not s or len(s) > 64 for s in self.stop):
            raise InvalidRequestError("stop: at most 4 non-empty strings of at most 64 characters")

    @property
    def greedy(self) -> bool:
        return self.temperature <= _GREEDY_BELOW


@dataclass
class Completion:
    """What a finished request produced; filled in by the worker."""

    text: str = ""
    finish_reason: str | None = None  # stop | length | cancelled | error | timeout
    prompt_tokens: int = 0
    completion_tokens: int = 0
    version: str = BASE
    started_at: float = 0.0
    first_token_at: float | None = None
    finished_at: float | None = None
    error: str | None = None

    @property
    def latency_ms(self) -> float:
        end = self.finished_at or time.monotonic()
        return round((end - self.started_at) * 1000, 1)


_DONE = object()


class RequestHandle:
    """A submitted request. Iterate it for text deltas; `cancel()` frees its batch slot."""

    def __init__(
        self,
        request_id: int,
        prompt_ids: list[int],
        params: SamplingParams,
        version: str,
        deadline: float | None = None,
    ):
        self.id = request_id
        self.prompt_ids = prompt_ids
        self.params = params
        self.result = Completion(prompt_tokens=len(prompt_ids), version=version, started_at=time.monotonic())
        self.deadline = deadline  # time.monotonic() after which the engine ends the request
        self._deltas: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.cancelled = threading.Event()
        self.done = threading.Event()
        self._ended = False  # the consumer has read everything: iterating again ends at once
        self._notify: Callable[[], Any] | None = None  # wakes an asyncio consumer

    @property
    def version(self) -> str:
        return self.result.version

    def cancel(self) -> None:
        self.cancelled.set()

    def __iter__(self) -> Iterator[str]:
        return self.stream()

    def stream(self, timeout: float | None = None) -> Iterator[str]:
        """Yield text deltas as they are produced; raise if the request failed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._ended:
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                item = self._deltas.get(timeout=wait)
            except queue.Empty:
                self.cancel()
                raise RequestTimeoutError(
                    f"no answer within {timeout:.0f} s; the request was cancelled"
                ) from None
            if item is _DONE:
                self._ended = True
                break
            if isinstance(item, BaseException):
                raise item
            yield item

    async def astream(self, timeout: float | None = None) -> AsyncIterator[str]:
        """The same deltas for asyncio code, without holding a thread per stream."""
        loop = asyncio.get_running_loop()
        wake = asyncio.Event()
        self._notify = lambda: loop.call_soon_threadsafe(wake.set)
        deadline = None if timeout is None else loop.time() + timeout
        while not self._ended:
            wake.clear()  # before draining: a put after the drain sets it again
            while True:
                try:
                    item = self._deltas.get_nowait()
                except queue.Empty:
                    break
                if item is _DONE:
                    self._ended = True
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
            remaining = None if deadline is None else deadline - loop.time()
            try:
                await asyncio.wait_for(wake.wait(), remaining)
            except TimeoutError:
                self.cancel()
                raise RequestTimeoutError(
                    f"no answer within {timeout:.0f} s; the request was cancelled"
                ) from None

    def text(self, timeout: float | None = None) -> str:
        for _ in self.stream(timeout):
            pass
        return self.result.text

    # Worker side.
    def _emit(self, delta: str) -> None:
        if delta:
            self._deltas.put(delta)
            if self._notify is not None:
                self._notify()

    def _finish(self, reason: str, error: BaseException | None = None) -> None:
        self.result.finish_reason = reason
        self.result.finished_at = time.monotonic()
        if error is not None:
            self.result.error = str(error)
            self._deltas.put(error)
        self._deltas.put(_DONE)
        self.done.set()
        if self._notify is not None:
            self._notify()


@dataclass
class _Row:
    """A request inside the running batch (or the group being prefilled)."""

    handle: RequestHandle
    generated: list[int] = field(default_factory=list)
    # Incremental detokenisation: text == decode(generated) is built from decode(generated[prefix:])
    # minus decode(generated[prefix:read]) — a few tokens per step, whatever the answer's length.
    text: str = ""
    prefix_offset: int = 0
    read_offset: int = 0
    emitted_chars: int = 0
    stop_scan_from: int = 0  # stop strings cannot start before this character
    generator: Any = None  # torch.Generator for per-request seeds


@dataclass
class _Prefill:
    """A group of admitted requests being prefilled together (left-padded), chunk by chunk."""

    rows: list[_Row]
    ids: Any  # (B, L) long: what is left to run, left-padded (the prompts after any cached prefix)
    mask: Any  # (B, P + L) long: attention mask over the cached prefix (P columns) and `ids`
    positions: Any  # (B, L) long
    cache: Any
    prefix_len: int = 0  # P: columns that came from the prefix cache
    done: int = 0  # columns of `ids` already run


@dataclass
class _Prepared:
    """An adapter read from disk off the worker thread (numpy arrays: no torch outside the worker)."""

    signature: Any  # what must match for its weights to be copied into a spare slot
    weights: dict[str, Any]


_SHAPE_KEYS = (
    "peft_type",
    "r",
    "lora_alpha",
    "use_rslora",
    "use_dora",
    "target_modules",
    "bias",
    "fan_in_fan_out",
    "modules_to_save",
    "rank_pattern",
    "alpha_pattern",
    "layers_to_transform",
    "layers_pattern",
    "lora_bias",
    "exclude_modules",
    "target_parameters",
    "alora_invocation_tokens",
)


def _read_adapter(path: Path) -> _Prepared | None:
    """Read a LoRA saved by peft (adapter_config.json + adapter_model.safetensors) without torch; None
    when it can't be (another format, bfloat16 weights, a variant such as DoRA): PEFT loads it then."""
    import json

    try:
        from safetensors.numpy import load_file

        config = json.loads((path / "adapter_config.json").read_text())
        if config.get("peft_type") != "LORA" or config.get("use_dora") or config.get("modules_to_save"):
            return None
        weights = load_file(str(path / "adapter_model.safetensors"))
    except Exception:  # unreadable here: the slow path reports real problems with PEFT's own errors
        return None
    shape = {k: config.get(k) for k in _SHAPE_KEYS}
    if isinstance(shape["target_modules"], list):
        shape["target_modules"] = sorted(shape["target_modules"])
    signature = (
        json.dumps(shape, sort_keys=True, default=str),
        tuple(sorted((k, tuple(v.shape)) for k, v in weights.items())),
    )
    return _Prepared(signature, weights)


class RequestChecks:
    """Prompt encoding and the limits every request meets, shared by the local Engine and RemoteEngine.

    Subclasses set: tokenizer (may be None for a remote backend), context_window, max_tokens_limit,
    default_max_tokens, request_timeout_s.
    """

    tokenizer: Any
    context_window: int
    max_tokens_limit: int
    default_max_tokens: int
    request_timeout_s: float | None

    def encode_chat(self, messages: list[dict[str, str]]) -> list[int]:
        if self.tokenizer is None:
            raise AssistantError("no local tokenizer: this remote engine cannot count prompt tokens")
        ids = self.tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=True)
        if hasattr(ids, "input_ids"):
            ids = ids["input_ids"]
        return list(ids)

    def clamp_max_tokens(self, requested: int | None) -> int:
        if requested is None:
            return self.default_max_tokens
        if requested < 1:
            raise InvalidRequestError("max_tokens must be at least 1")
        return min(requested, self.max_tokens_limit)

    def _checked_params(self, params: SamplingParams | None) -> SamplingParams:
        params = params or SamplingParams(max_tokens=self.default_max_tokens)
        params.max_tokens = min(params.max_tokens, self.max_tokens_limit)
        return params

    def _check_fits(self, prompt_ids: list[int] | None, params: SamplingParams) -> None:
        budget = self.context_window - params.max_tokens
        if prompt_ids and len(prompt_ids) > budget:
            raise InputTooLongError(
                f"the conversation is {len(prompt_ids)} tokens but at most {budget} fit "
                f"(context window {self.context_window} minus max_tokens {params.max_tokens}); "
                "shorten it, start a new conversation, or lower max_tokens"
            )

    def _deadline(self, timeout_s: float | None) -> float | None:
        timeout = self.request_timeout_s if timeout_s is None else timeout_s
        return time.monotonic() + timeout if timeout else None


class Engine(RequestChecks):
    """Owns the model. Start with `start()`; everything torch happens on `self._thread`."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        model_id: str,
        context_window: int = 2048,
        max_tokens_limit: int = 1024,
        default_max_tokens: int = 256,
        max_batch_size: int = 8,
        queue_size: int = 64,
        threads: int = 0,
        merge_single_adapter: bool = True,
        request_timeout_s: float | None = None,
        prefill_chunk_tokens: int = 512,
        prefix_cache_tokens: int = 4096,
        spare_slots: int = 2,
        batch_window_s: float = 0.015,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.model_id = model_id
        model_max = int(getattr(model.config, "max_position_embeddings", context_window) or context_window)
        self.context_window = min(context_window, model_max)
        self.max_tokens_limit = max_tokens_limit
        self.default_max_tokens = default_max_tokens
        self.max_batch_size = max_batch_size
        self.queue_size = queue_size
        self.threads = threads
        self.merge_single_adapter = merge_single_adapter
        self.request_timeout_s = request_timeout_s
        self.prefill_chunk_tokens = max(16, prefill_chunk_tokens)
        self.prefix_cache_tokens = prefix_cache_tokens  # 0 disables the prefix cache
        self.spare_slots = spare_slots  # unloaded adapters kept for reuse by the next load of that shape
        # An idle engine waits this long after the latest arrival (at most 4× in all) before prefilling,
        # so a burst of requests is prefilled as one group rather than one, then the rest.
        self.batch_window_s = batch_window_s
        self.eos_ids = self._eos_ids()
        pad = getattr(tokenizer, "pad_token_id", None)
        self.pad_id = pad if isinstance(pad, int) else min(self.eos_ids, default=0)
        self.live_version = BASE
        self.loaded_versions: set[str] = set()
        self._ids = itertools.count(1)
        self._pending: deque[RequestHandle] = deque()
        self._commands: deque[tuple[Callable[[], Any], Future[Any]]] = deque()
        self._cv = threading.Condition()
        self._stopping = False
        # When the last request arrived (monotonic): the training service lends idle cores to a job.
        self.last_request_at = float("-inf")
        self._thread: threading.Thread | None = None
        self._rows: list[_Row] = []
        self._prefill: _Prefill | None = None
        self._cache: Any = None
        self._mask: Any = None
        self._pins: dict[str, int] = {}  # version → requests pinned to it (pending or running)
        self._retire: set[str] = set()  # versions to unload once nothing is pinned to them
        # Adapter state (worker only).
        self._merged: str | None = None  # adapter whose merged weights are swapped in
        self._swapped: list[tuple[Any, Any]] = []  # (base layer, original weight) while merged
        self._lora_on: bool | None = None  # LoRA layers enabled (None: unknown, set on next forward)
        self._single: str | None = None  # PEFT's active adapter when running one adapter unmerged
        self._lora_layers: list[Any] = []
        self._peft_names: dict[str, str] = {}  # version → the PEFT adapter (slot) holding it
        self._signatures: dict[str, Any] = {}  # PEFT adapter → shape signature (None: not reusable)
        self._spare: list[tuple[str, Any]] = []  # PEFT adapters holding no version, ready for reuse
        self._spare_source: tuple[Any, Path] | None = None  # (signature, file) to build spares from
        self._spare_serial = itertools.count(1)
        # Prefix cache: the KV of a prompt's first message (the system prompt, shared by most requests),
        # per version, LRU-bounded in tokens. Filled for free from full prefills; used when a whole
        # group shares the prefix.
        self._prefixes: OrderedDict[tuple[str, tuple[int, ...]], list[tuple[Any, Any]]] = OrderedDict()
        self._prefix_tokens = 0
        self.prefix_hits = 0
        # Auto threads (threads=0): what torch uses now, and the CPU counters of the last check.
        self._torch_threads = 0
        self._cpu_sample: tuple[float, float, float] | None = None
        self._quiet_checks = 0
        self.steps = 0
        self.prefills = 0
        self.tokens_generated = 0
        self.timeouts = 0

    # ------------------------------------------------------------------ public, any thread
    def start(self) -> Engine:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="engine", daemon=True)
            self._thread.start()
            self.call(lambda: None).result()  # worker ready (threads set)
        return self

    def stop(self) -> None:
        with self._cv:
            self._stopping = True
            self._cv.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=30)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and not self._stopping

    def stats(self) -> dict[str, Any]:
        with self._cv:
            prefill = self._prefill
            return {
                "running": len(self._rows),
                "prefilling": len(prefill.rows) if prefill is not None else 0,
                "waiting": len(self._pending),
                "live_version": self.live_version,
                "loaded_versions": sorted(self.loaded_versions),
                "merged": self._merged,
                "spare_slots": len(self._spare),
                "threads": self.threads,
                "torch_threads": self._torch_threads,
                "prefix_cache_entries": len(self._prefixes),
                "prefix_hits": self.prefix_hits,
                "steps": self.steps,
                "prefills": self.prefills,
                "tokens_generated": self.tokens_generated,
                "timeouts": self.timeouts,
            }

    def submit(
        self,
        messages: list[dict[str, str]] | None = None,
        params: SamplingParams | None = None,
        *,
        prompt_ids: list[int] | None = None,
        version: str | None = None,
        timeout_s: float | None = None,
    ) -> RequestHandle:
        """Queue a chat. Raises InputTooLongError, QueueFullError or NotReadyError at once.

        `timeout_s` (default: the engine's `request_timeout_s`) bounds the whole request, waiting
        included; past it the engine ends the request with a RequestTimeoutError.
        """
        if not self.running:
            raise NotReadyError("the model is not running yet; retry in a few seconds")
        params = self._checked_params(params)
        if prompt_ids is None:
            if not messages:
                raise InvalidRequestError("messages must hold at least one message")
            prompt_ids = self.encode_chat(messages)
        if not prompt_ids:
            raise InvalidRequestError("the prompt is empty")
        self._check_fits(prompt_ids, params)
        deadline = self._deadline(timeout_s)
        with self._cv:
            if len(self._pending) >= self.queue_size:
                wait = queue_wait_s(len(self._pending), self.max_batch_size)
                raise QueueFullError(
                    f"the server is busy ({len(self._pending)} requests waiting); retry in {wait} s",
                    retry_after=wait,
                )
            self.last_request_at = time.monotonic()
            pinned = version or self.live_version
            if pinned != BASE and pinned not in self.loaded_versions:
                raise InvalidRequestError(f"model version {pinned!r} is not loaded")
            handle = RequestHandle(next(self._ids), list(prompt_ids), params, pinned, deadline)
            self._pins[pinned] = self._pins.get(pinned, 0) + 1
            self._pending.append(handle)
            self._cv.notify_all()
        return handle

    def generate(
        self, messages: list[dict[str, str]], params: SamplingParams | None = None, **kw: Any
    ) -> str:
        """Blocking convenience: the whole answer."""
        return self.submit(messages, params, **kw).text()

    def call(self, fn: Callable[[], Any]) -> Future[Any]:
        """Run `fn` on the worker thread between decode steps (adapter loads, thread counts)."""
        future: Future[Any] = Future()
        with self._cv:
            self._commands.append((fn, future))
            self._cv.notify_all()
        return future

    # Adapter management: each runs on the worker, so PEFT's global state is never raced.
    def load_version(self, version: str, path: Path) -> None:
        """Load an adapter as `version` (it serves requests that name it, or all once `set_live`).

        The file is read here, on the caller's thread; the worker then only copies the weights into a
        spare slot of the same shape (a few ms between two decode steps), or has PEFT build the modules.
        """
        prepared = _read_adapter(Path(path))
        self.call(lambda: self._load_adapter(version, Path(path), prepared)).result()

    def set_live(self, version: str) -> str:
        """New requests use `version` from now on; running ones finish on theirs. Returns the old one."""
        with self._cv:
            if version != BASE and version not in self.loaded_versions:
                raise InvalidRequestError(f"version {version!r} is not loaded; load it first")
            old, self.live_version = self.live_version, version
            self._retire.discard(version)
        return old

    def retire(self, version: str) -> None:
        """Unload `version` after the last request pinned to it ends."""
        if version == BASE:
            return
        with self._cv:
            self._retire.add(version)
            self._cv.notify_all()

    def set_threads(self, threads: int) -> None:
        self.call(lambda: self._apply_threads(threads)).result()

    # ------------------------------------------------------------------ worker thread
    def _apply_threads(self, threads: int) -> None:
        """`threads` > 0: exactly that many. 0: auto — one thread while other processes keep the CPU
        busy, every core when it is ours (see `_auto_threads`); starts at one."""
        self.threads = threads
        self._cpu_sample, self._quiet_checks = None, 0
        self._use_threads(threads if threads > 0 else 1)

    def _use_threads(self, n: int) -> None:
        import torch

        if n != self._torch_threads:
            torch.set_num_threads(n)
            self._torch_threads = n

    def _auto_threads(self) -> None:
        """Measured on this machine: with another process busy, 2 torch threads on 2 cores ran 4–30×
        slower than 1 (a thread waits at every barrier for a descheduled sibling), while on an idle
        machine all cores are faster. So, about once a second, look at how much CPU the *other*
        processes used (/proc/stat minus our own time): above ~0.3 of a core → 1 thread; after three
        quiet seconds in a row → all cores."""
        cores = os.cpu_count() or 1
        if self.threads != 0 or cores <= 1:
            return
        now = time.monotonic()
        if self._cpu_sample is not None and now - self._cpu_sample[0] < 1.0:
            return
        try:
            with open("/proc/stat") as fh:
                fields = [int(x) for x in fh.readline().split()[1:]]
        except (OSError, ValueError):
            return  # not Linux: keep one thread, the safe choice
        tick = os.sysconf("SC_CLK_TCK")
        # user nice system idle iowait irq softirq steal (guest time is already inside user/nice)
        busy = (sum(fields[:8]) - sum(fields[3:5])) / tick
        times = os.times()
        ours = times.user + times.system
        previous, self._cpu_sample = self._cpu_sample, (now, busy, ours)
        if previous is None:
            return
        others = ((busy - previous[1]) - (ours - previous[2])) / max(1e-3, now - previous[0])
        if others > 0.3:
            self._quiet_checks = 0
            self._use_threads(1)
        else:
            self._quiet_checks += 1
            if self._quiet_checks >= 3:
                self._use_threads(cores)

    def _eos_ids(self) -> set[int]:
        ids = set()
        for candidate in (self.tokenizer.eos_token_id, getattr(self.model.config, "eos_token_id", None)):
            if isinstance(candidate, int):
                ids.add(candidate)
            elif isinstance(candidate, list):
                ids.update(candidate)
        for token in ("<|im_end|>", "<|endoftext|>", "<|eot_id|>"):
            tid = self.tokenizer.convert_tokens_to_ids(token)
            if isinstance(tid, int) and tid != self.tokenizer.unk_token_id and tid >= 0:
                ids.add(tid)
        return ids

    def _run(self) -> None:
        import torch

        self._apply_threads(self.threads)
        torch.set_grad_enabled(False)
        while True:
            with self._cv:
                while not (
                    self._stopping
                    or self._commands
                    or self._pending
                    or self._rows
                    or self._prefill
                    or self._retirable()
                    or self._spare_due()
                ):
                    self._cv.wait()
                if self._stopping:
                    break
                commands = list(self._commands)
                self._commands.clear()
            for fn, future in commands:
                try:
                    future.set_result(fn())
                except BaseException as exc:  # reported to the caller, the loop goes on
                    future.set_exception(exc)
            try:
                self._auto_threads()
                self._expire()
                if self._prefill is None:
                    self._prefill = self._start_prefill()
                if self._prefill is not None:
                    self._prefill_chunk()
                if self._rows:
                    self._decode_step()
                self._unload_retired()
                if self._spare_due() and not (self._rows or self._prefill or self._pending):
                    self._make_spare()  # idle: nobody waits for these few hundred ms
            except Exception as exc:  # a failed step fails its rows, never the server
                log.exception("decode step failed")
                failed = self._rows + (self._prefill.rows if self._prefill is not None else [])
                for row in failed:
                    self._release(row.handle, "error", AssistantError(f"generation failed: {exc}"))
                self._rows, self._cache, self._mask, self._prefill = [], None, None, None
        for row in self._rows + (self._prefill.rows if self._prefill is not None else []):
            self._release(row.handle, "cancelled", RequestCancelledError("the server is shutting down"))
        with self._cv:
            pending, self._pending = list(self._pending), deque()
        for handle in pending:
            self._release(handle, "cancelled", RequestCancelledError("the server is shutting down"))

    def _release(self, handle: RequestHandle, reason: str, error: BaseException | None = None) -> None:
        with self._cv:
            version = handle.version
            self._pins[version] = self._pins.get(version, 1) - 1
        handle._finish(reason, error)

    def _expire(self) -> None:
        """Drop cancelled and timed-out requests from the queue; mark timed-out running rows."""
        now = time.monotonic()
        dropped: list[tuple[RequestHandle, str]] = []
        with self._cv:
            expired = [
                h.cancelled.is_set() or (h.deadline is not None and now > h.deadline) for h in self._pending
            ]
            if any(expired):
                keep: deque[RequestHandle] = deque()
                for h in self._pending:
                    if h.cancelled.is_set():
                        dropped.append((h, "cancelled"))
                    elif h.deadline is not None and now > h.deadline:
                        dropped.append((h, "timeout"))
                    else:
                        keep.append(h)
                self._pending = keep
        for handle, reason in dropped:
            if reason == "timeout":
                self._finish_timeout(handle)
            else:
                self._release(handle, "cancelled")
        for row in self._rows:
            h = row.handle
            if h.deadline is not None and now > h.deadline and h.result.finish_reason is None:
                h.result.finish_reason = "timeout"
        if self._rows and any(r.handle.result.finish_reason for r in self._rows):
            self._drop_finished()

    def _finish_timeout(self, handle: RequestHandle) -> None:
        self.timeouts += 1
        waited = time.monotonic() - handle.result.started_at
        self._release(
            handle,
            "timeout",
            RequestTimeoutError(
                f"the request ran past its {waited:.0f} s time limit and was ended; retry, or ask for fewer "
                "tokens (max_tokens)"
            ),
        )

    # Admission: FIFO groups, prefilled together.
    def _start_prefill(self) -> _Prefill | None:
        """Take waiting requests in arrival order into one left-padded prefill group."""
        free = self.max_batch_size - len(self._rows)
        if free <= 0:
            return None
        taken: list[RequestHandle] = []
        longest = real = 0
        with self._cv:
            if not self._rows and self.batch_window_s > 0:
                self._batch_window(free)
            while self._pending and len(taken) < free:
                handle = self._pending[0]
                width = max(longest, len(handle.prompt_ids))
                # Bound the padding: a prompt much longer or shorter than the group's waits for the next
                # group rather than padding every other one to its length (arrival order is kept).
                real += len(handle.prompt_ids)
                if taken and width * (len(taken) + 1) > max(self.prefill_chunk_tokens, 1.5 * real):
                    break
                taken.append(self._pending.popleft())
                longest = width
        if not taken:
            return None
        try:
            return self._build_prefill(taken)
        except Exception as exc:  # they left the queue: fail them here, or nobody would
            for handle in taken:
                self._release(handle, "error", AssistantError(f"generation failed: {exc}"))
            raise

    def _build_prefill(self, taken: list[RequestHandle]) -> _Prefill:
        import torch
        from transformers import DynamicCache

        rows = []
        for handle in taken:
            row = _Row(handle)
            if handle.params.seed is not None and not handle.params.greedy:
                row.generator = torch.Generator().manual_seed(handle.params.seed)
            rows.append(row)
        prefix = self._shared_prefix(rows)
        p = len(prefix)
        # Layout of row i: [cached prefix (p)] [padding] [rest of its prompt]. Holes in the attention
        # mask are fine, and positions continue from p, so each row computes what it would alone.
        rests = [row.handle.prompt_ids[p:] for row in rows]
        width = max(len(r) for r in rests)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), p + width), dtype=torch.long)
        mask[:, :p] = 1
        for i, rest in enumerate(rests):
            ids[i, width - len(rest) :] = torch.tensor(rest, dtype=torch.long)
            mask[i, p + width - len(rest) :] = 1
        positions = (mask[:, p:].cumsum(dim=1) - 1).clamp(min=0) + p
        cache = DynamicCache()
        if p:
            entries = [self._prefixes[row.handle.version, prefix] for row in rows]
            cache = DynamicCache(
                [
                    (torch.cat([e[layer][0] for e in entries]), torch.cat([e[layer][1] for e in entries]))
                    for layer in range(len(entries[0]))
                ]
            )
            self.prefix_hits += len(rows)
        return _Prefill(rows, ids, mask, positions, cache, prefix_len=p)

    def _batch_window(self, free: int) -> None:
        """Idle engine, requests waiting: let a burst finish arriving (call with self._cv held)."""
        if not self._pending:
            return
        first = self._pending[0].result.started_at
        while self._pending and len(self._pending) < free and not (self._stopping or self._commands):
            latest = self._pending[-1].result.started_at
            wait = min(latest + self.batch_window_s, first + 4 * self.batch_window_s) - time.monotonic()
            if wait <= 0:
                return
            self._cv.wait(wait)

    # Prefix cache (worker only).
    def _first_message(self, prompt_ids: list[int]) -> tuple[int, ...]:
        """The prompt up to the end of its first message (the end-of-turn token), if that is a proper,
        worthwhile prefix; else ()."""
        limit = min(len(prompt_ids) - 1, 1024)
        for i in range(limit):
            if prompt_ids[i] in self.eos_ids:
                return tuple(prompt_ids[: i + 1]) if i + 1 >= 8 else ()
        return ()

    def _shared_prefix(self, rows: list[_Row]) -> tuple[int, ...]:
        """The cached first message that every row of the group starts with, or ()."""
        if not self.prefix_cache_tokens:
            return ()
        prefix = self._first_message(rows[0].handle.prompt_ids)
        if not prefix:
            return ()
        p = len(prefix)
        for row in rows:
            if tuple(row.handle.prompt_ids[:p]) != prefix or len(row.handle.prompt_ids) <= p:
                return ()
            if (row.handle.version, prefix) not in self._prefixes:
                return ()
        for row in rows:
            self._prefixes.move_to_end((row.handle.version, prefix))
        return prefix

    def _remember_prefixes(self, group: _Prefill) -> None:
        """After a full prefill, keep each row's first-message KV (a slice of what was just computed)."""
        width = group.mask.shape[1]
        for i, row in enumerate(group.rows):
            prefix = self._first_message(row.handle.prompt_ids)
            key = (row.handle.version, prefix)
            if not prefix or key in self._prefixes or len(prefix) > self.prefix_cache_tokens // 2:
                continue
            start = width - len(row.handle.prompt_ids)
            end = start + len(prefix)
            self._prefixes[key] = [
                (layer.keys[i : i + 1, :, start:end].clone(), layer.values[i : i + 1, :, start:end].clone())
                for layer in group.cache.layers
            ]
            self._prefix_tokens += len(prefix)
            while self._prefix_tokens > self.prefix_cache_tokens:
                (_, old), _ = self._prefixes.popitem(last=False)
                self._prefix_tokens -= len(old)

    def _forget_prefixes(self, versions: set[str]) -> None:
        for key in [k for k in self._prefixes if k[0] in versions]:
            del self._prefixes[key]
            self._prefix_tokens -= len(key[1])

    def _prefill_chunk(self) -> None:
        """Run the next chunk of the group's prompt; when it is complete, join the running batch."""
        group = self._prefill
        assert group is not None
        batch, width = group.ids.shape
        cols = max(1, self.prefill_chunk_tokens // batch)
        start, end = group.done, min(width, group.done + cols)
        versions = [r.handle.version for r in group.rows]
        out = self._forward(
            group.ids[:, start:end],
            group.mask[:, : group.prefix_len + end],
            group.positions[:, start:end],
            group.cache,
            versions,
        )
        group.cache, group.done = out.cache, end
        if end < width:
            return
        tokens = self._sample(out.logits[:, -1, :], group.rows)
        if group.prefix_len == 0 and self.prefix_cache_tokens:
            self._remember_prefixes(group)
        self._merge_into_batch(group.cache, group.mask)
        self._rows.extend(group.rows)
        self._prefill = None
        self.prefills += 1
        now = time.monotonic()
        for row, token in zip(group.rows, tokens, strict=True):
            row.handle.result.first_token_at = now
            self._accept(row, token)
        self._drop_finished()

    def _active_versions(self) -> set[str]:
        versions = {r.handle.version for r in self._rows}
        if self._prefill is not None:
            versions.update(r.handle.version for r in self._prefill.rows)
        return versions

    def _forward(self, input_ids: Any, mask: Any, positions: Any, cache: Any, versions: list[str]) -> Any:
        import torch

        extra = self._prepare_adapters(versions)
        # Without PEFT's per-row routing, call the transformers model itself: it skips PeftModel's
        # wrapper and its per-call hook (de)registration.
        net = self.model
        if not extra and self._lora_layers and hasattr(self.model, "get_base_model"):
            net = self.model.get_base_model()
        with torch.inference_mode():
            return net(
                input_ids=input_ids,
                attention_mask=mask,
                position_ids=positions,
                cache=cache,
                use_cache=True,
                logits_to_keep=1,  # only the last position's logits are sampled
                **extra,
            )

    # Adapters (worker thread only).
    def _prepare_adapters(self, versions: list[str]) -> dict[str, Any]:
        """Pick the cheapest exact way to run the active versions; return the forward's extra kwargs.

        - only the base is active: LoRA layers off, original weights;
        - one adapter is active (and mergeable): its merged weights swapped in, LoRA layers off;
        - otherwise: LoRA layers on; one adapter via PEFT's active adapter, several via `adapter_names`.
        """
        if not self._lora_layers:
            return {}
        active = self._active_versions() | set(versions)
        if active <= {BASE}:
            self._unmerge()
            self._set_lora(False)
            return {}
        if len(active) == 1:
            (only,) = active
            if self.merge_single_adapter and (self._merged == only or self._mergeable(only)):
                if self._merged != only:
                    self._unmerge()
                    self._merge(only)
                self._set_lora(False)
                return {}
            self._unmerge()
            self._set_lora(True)
            if self._single != only:
                self.model.set_adapter(self._peft_names[only])
                self._single = only
            return {}
        self._unmerge()
        self._set_lora(True)
        names = [_PEFT_BASE if v == BASE else self._peft_names[v] for v in versions]
        return {"adapter_names": names}

    def _set_lora(self, enabled: bool) -> None:
        if self._lora_on is enabled:
            return
        for layer in self._lora_layers:
            layer.enable_adapters(enabled)
        self._lora_on = enabled
        self._single = None  # enable_adapters re-activates PEFT's own active adapter

    def _mergeable(self, version: str) -> bool:
        from peft.tuners.lora import Linear as LoraLinear

        name = self._peft_names[version]
        layers = [m for m in self._lora_layers if name in getattr(m, "lora_A", {})]
        return (
            bool(layers)
            and all(
                isinstance(m, LoraLinear)
                and name not in getattr(m, "lora_variant", {})
                and not getattr(m, "lora_bias", {}).get(name, False)
                for m in layers
            )
            and not any(name in getattr(m, "lora_embedding_A", {}) for m in self._lora_layers)
        )

    def _merge(self, version: str) -> None:
        """Swap in W + ΔW as new tensors; the original weights stay untouched for an exact unmerge."""
        name = self._peft_names[version]
        swapped = []
        for module in self._lora_layers:
            if name not in getattr(module, "lora_A", {}):
                continue
            base = module.get_base_layer()
            original = base.weight.data
            base.weight.data = original + module.get_delta_weight(name).to(original.dtype)
            swapped.append((base, original))
        self._swapped = swapped
        self._merged = version

    def _unmerge(self) -> None:
        for base, original in self._swapped:
            base.weight.data = original
        self._swapped = []
        self._merged = None

    def _refresh_lora_layers(self) -> None:
        from peft.tuners.tuners_utils import BaseTunerLayer

        self._lora_layers = [m for m in self.model.modules() if isinstance(m, BaseTunerLayer)]
        self._lora_on = None
        self._single = None

    def _slot_params(self, name: str) -> dict[str, Any]:
        """PEFT adapter `name`'s LoRA weights under the keys its saved file uses."""
        params = {}
        for module_name, module in self.model.named_modules():
            for kind in ("lora_A", "lora_B"):
                holder = getattr(module, kind, None)
                if holder is not None and hasattr(holder, "keys") and name in holder:
                    params[f"{module_name}.{kind}.weight"] = holder[name].weight
        return params

    def _load_adapter(self, version: str, path: Path, prepared: _Prepared | None = None) -> None:
        """Load a version: into a spare slot of the same shape when there is one (a weight copy, a few
        ms), else through PEFT (hundreds of ms: it rebuilds modules and walks the model many times)."""
        from peft import PeftModel

        with self._cv:
            self._retire.discard(version)  # loading it again cancels a pending retirement
            if version in self.loaded_versions:
                return
        self._single = None
        if prepared is not None:  # the merged weights (if any) stay: a slot copy touches no base weight
            for i, (slot, signature) in enumerate(self._spare):
                if signature == prepared.signature and self._fill_slot(slot, prepared):
                    del self._spare[i]
                    self._finish_load(version, slot, prepared.signature)
                    return
        name = adapter_name(version)
        taken = set(self._peft_names.values()) | {slot for slot, _ in self._spare}
        serial = 1
        while name in taken:  # a spare slot or a reloaded version may hold the plain name already
            serial += 1
            name = adapter_name(f"{version}~{serial}")
        # low_cpu_mem_usage: the new LoRA weights are created empty and filled from the file, skipping
        # a random initialisation that would only be overwritten.
        self._unmerge()  # PEFT rebuilds modules: let it see the original weights
        if isinstance(self.model, PeftModel):
            self.model.load_adapter(str(path), adapter_name=name, low_cpu_mem_usage=True)
        else:
            self.model = PeftModel.from_pretrained(
                self.model, str(path), adapter_name=name, low_cpu_mem_usage=True
            )
            self.model.eval()
        self._refresh_lora_layers()
        signature = None
        if prepared is not None and set(self._slot_params(name)) == set(prepared.weights):
            signature = prepared.signature
            self._spare_source = (signature, path)
        self._finish_load(version, name, signature)

    def _finish_load(self, version: str, name: str, signature: Any) -> None:
        self._peft_names[version] = name
        self._signatures[name] = signature
        with self._cv:
            self.loaded_versions.add(version)

    def _spare_due(self) -> bool:
        if self._spare_source is None or not self._lora_layers:
            return False
        signature = self._spare_source[0]
        return sum(1 for _, sig in self._spare if sig == signature) < self.spare_slots

    def _make_spare(self) -> None:
        """Build an empty slot shaped like the last adapter loaded, so the next swap is a weight copy.
        Runs only while the engine is idle."""
        assert self._spare_source is not None
        signature, path = self._spare_source
        name = adapter_name(f"spare{next(self._spare_serial)}")
        try:
            self.model.load_adapter(str(path), adapter_name=name, low_cpu_mem_usage=True)
        except Exception as exc:  # the file went away: no spare, swaps take PEFT's path
            log.warning("could not prepare a spare adapter slot from %s: %s", path, exc)
            self._spare_source = None
            return
        self._refresh_lora_layers()
        self._signatures[name] = signature
        self._spare.append((name, signature))

    def _fill_slot(self, name: str, prepared: _Prepared) -> bool:
        import torch

        params = self._slot_params(name)
        if set(params) != set(prepared.weights) or any(
            tuple(params[k].shape) != tuple(v.shape) for k, v in prepared.weights.items()
        ):
            return False
        for key, array in prepared.weights.items():
            params[key].data.copy_(torch.from_numpy(array))
        return True

    def _retirable(self) -> list[str]:
        """Versions to unload now: retired, not live, no request pinned (call with self._cv held)."""
        return [v for v in self._retire if self._pins.get(v, 0) <= 0 and v != self.live_version]

    def _unload_retired(self) -> None:
        if not self._retire:
            return
        with self._cv:
            ready = self._retirable()
            # Unlisted before unloading: from here on, a request naming it is refused, not half-run.
            loaded = [v for v in ready if v in self.loaded_versions]
            self.loaded_versions.difference_update(ready)
            self._retire.difference_update(ready)
        if not loaded:
            return
        self._forget_prefixes(set(loaded))
        if self._merged in loaded or not self.loaded_versions:
            self._unmerge()  # else the live version stays merged: deleting another adapter can't touch it
        self._single = None
        if not self.loaded_versions:
            self.model = self.model.unload()  # no adapter left: back to the plain base model
            self._lora_layers, self._lora_on = [], None
            self._peft_names, self._signatures, self._spare = {}, {}, []
            self._spare_source = None
        else:
            for version in loaded:
                name = self._peft_names.pop(version)
                signature = self._signatures.get(name)
                if signature is not None and len(self._spare) < self.spare_slots:
                    self._spare.append((name, signature))  # kept: the next version of this shape reuses it
                    continue
                self._signatures.pop(name, None)
                with warnings.catch_warnings():  # "adapter X was active, now Y is": we route per row
                    warnings.simplefilter("ignore", UserWarning)
                    self.model.delete_adapter(name)
                self._refresh_lora_layers()
        log.info("unloaded versions %s", ", ".join(loaded))

    # The running batch.
    def _merge_into_batch(self, cache: Any, mask: Any) -> None:
        """Left-pad the shorter of (batch, new rows) and concatenate along the batch dimension."""
        import torch
        import torch.nn.functional as F
        from transformers import DynamicCache

        if self._cache is None:
            self._cache, self._mask = cache, mask
            return
        old_len, new_len = self._mask.shape[1], mask.shape[1]
        width = max(old_len, new_len)
        layers = []
        for old_layer, new_layer in zip(self._cache.layers, cache.layers, strict=True):
            pair = []
            for old_t, new_t in ((old_layer.keys, new_layer.keys), (old_layer.values, new_layer.values)):
                old_t = F.pad(old_t, (0, 0, width - old_len, 0))
                new_t = F.pad(new_t, (0, 0, width - new_len, 0))
                pair.append(torch.cat([old_t, new_t], dim=0))
            layers.append((pair[0], pair[1]))
        self._cache = DynamicCache(layers)
        self._mask = torch.cat(
            [F.pad(self._mask, (width - old_len, 0)), F.pad(mask, (width - new_len, 0))], dim=0
        )

    def _decode_step(self) -> None:
        import torch

        last = torch.tensor([[row.generated[-1]] for row in self._rows], dtype=torch.long)
        self._mask = torch.cat([self._mask, torch.ones((len(self._rows), 1), dtype=self._mask.dtype)], dim=1)
        positions = self._mask.sum(dim=1, keepdim=True) - 1
        out = self._forward(last, self._mask, positions, self._cache, [r.handle.version for r in self._rows])
        self._cache = out.cache
        tokens = self._sample(out.logits[:, -1, :], self._rows)
        self.steps += 1
        for row, token in zip(self._rows, tokens, strict=True):
            self._accept(row, token)
        self._drop_finished()

    def _sample(self, logits: Any, rows: list[_Row]) -> list[int]:
        """Greedy rows: one argmax over the batch. Sampled rows: vectorised temperature and top-p."""
        import torch

        chosen = logits.argmax(dim=-1)
        sampled = [i for i, row in enumerate(rows) if not row.handle.params.greedy]
        if sampled:
            index = torch.tensor(sampled, dtype=torch.long)
            temps = torch.tensor([rows[i].handle.params.temperature for i in sampled]).unsqueeze(1)
            probs = torch.softmax(logits[index].float() / temps, dim=-1)
            top_ps = [rows[i].handle.params.top_p for i in sampled]
            if min(top_ps) < 1.0:
                sorted_probs, order = torch.sort(probs, dim=-1, descending=True)
                keep = torch.cumsum(sorted_probs, dim=-1) - sorted_probs < torch.tensor(top_ps).unsqueeze(1)
                probs = torch.zeros_like(probs).scatter(1, order, sorted_probs * keep)
            seeded = [j for j, i in enumerate(sampled) if rows[i].generator is not None]
            free = [j for j, i in enumerate(sampled) if rows[i].generator is None]
            picks = torch.empty(len(sampled), dtype=torch.long)
            if free:
                picks[free] = torch.multinomial(probs[free], 1).squeeze(1)
            for j in seeded:
                picks[j] = torch.multinomial(probs[j], 1, generator=rows[sampled[j]].generator)[0]
            chosen[index] = picks
        return chosen.tolist()

    def _accept(self, row: _Row, token: int) -> None:
        """Record a sampled token, stream the new text, decide whether the row is finished."""
        handle = row.handle
        if token in self.eos_ids:
            self._set_text(row, final=True)
            handle.result.finish_reason = "stop"
            return
        row.generated.append(token)
        self.tokens_generated += 1
        handle.result.completion_tokens = len(row.generated)
        self._detokenize(row)
        if self._set_text(row, final=False):
            handle.result.finish_reason = "stop"
        elif (
            len(row.generated) >= handle.params.max_tokens
            or len(handle.prompt_ids) + len(row.generated) >= self.context_window
        ):
            self._set_text(row, final=True)
            handle.result.finish_reason = "length"

    def _detokenize(self, row: _Row) -> None:
        """Append the text of the newest token(s), decoding only the last few tokens."""
        decode = self.tokenizer.decode
        prefix = decode(row.generated[row.prefix_offset : row.read_offset], skip_special_tokens=True)
        full = decode(row.generated[row.prefix_offset :], skip_special_tokens=True)
        if len(full) > len(prefix) and not full.endswith("\ufffd"):
            row.text += full[len(prefix) :]
            row.prefix_offset, row.read_offset = row.read_offset, len(row.generated)

    def _pending_text(self, row: _Row) -> str:
        """Text of the tokens not yet appended (an incomplete multi-byte character)."""
        decode = self.tokenizer.decode
        prefix = decode(row.generated[row.prefix_offset : row.read_offset], skip_special_tokens=True)
        return decode(row.generated[row.prefix_offset :], skip_special_tokens=True)[len(prefix) :]

    def _set_text(self, row: _Row, final: bool) -> bool:
        """Cut at a stop string, emit what is safe to show. True when a stop string hit."""
        handle = row.handle
        text = row.text
        if final and row.read_offset < len(row.generated):  # the answer ends inside a character
            text += self._pending_text(row)
        hit = False
        stops = handle.params.stop
        if stops:
            for stop in stops:
                at = text.find(stop, row.stop_scan_from)
                if at != -1:
                    text, hit = text[:at], True
            if not hit:
                longest = max(len(s) for s in stops)
                row.stop_scan_from = max(0, len(text) - longest + 1)
        handle.result.text = text
        safe = len(text)
        if not (final or hit):
            hold = max((len(s) - 1 for s in stops), default=0)
            safe = max(row.emitted_chars, safe - hold)  # a stop string may still be forming
        if safe > row.emitted_chars:
            handle._emit(text[row.emitted_chars : safe])
            row.emitted_chars = safe
        return hit

    def _drop_finished(self) -> None:
        import torch

        keep = []
        for i, row in enumerate(self._rows):
            handle = row.handle
            if handle.cancelled.is_set() and handle.result.finish_reason is None:
                handle.result.finish_reason = "cancelled"
            if handle.result.finish_reason is None:
                keep.append(i)
            elif handle.result.finish_reason == "timeout":
                self._finish_timeout(handle)
            else:
                if handle.result.finish_reason != "cancelled":
                    self._set_text(row, final=True)
                self._release(handle, handle.result.finish_reason)
        if len(keep) == len(self._rows):
            return
        if not keep:
            self._rows, self._cache, self._mask = [], None, None
            return
        index = torch.tensor(keep, dtype=torch.long)
        self._rows = [self._rows[i] for i in keep]
        self._cache.batch_select_indices(index)
        self._mask = self._mask[index]
        # Columns that are padding for every remaining row are dead weight: crop them.
        live_cols = self._mask.any(dim=0).nonzero()
        start = int(live_cols[0]) if len(live_cols) else 0
        if start > 0:
            self._mask = self._mask[:, start:]
            for layer in self._cache.layers:
                layer.keys = layer.keys[:, :, start:, :]
                layer.values = layer.values[:, :, start:, :]
