"""The engine: one worker thread owns every torch call.

Callers (HTTP handlers, Gradio callbacks, the CLI) `submit()` a request and iterate its handle for text
deltas; they never touch torch. The worker runs a dynamic batch: new requests are prefilled and join
the running batch at a step boundary, finished or cancelled ones leave it, and every row keeps its own
sampling parameters, stop strings, limits and adapter version.

Why one thread: once a second Python thread has run torch ops, generation in the process runs ~1.7×
slower, and PEFT's active adapter is global state. Adapter loads, swaps and thread-count changes are
therefore commands executed by the same worker, between decode steps.

Why our own loop rather than transformers' continuous batching: that serves one active adapter only,
and a swap must let running requests finish on the version they started with. PEFT's per-row
`adapter_names` gives that in a plain forward; when the whole batch uses one adapter we merge it into
the weights instead (an unmerged LoRA decodes ~16 % slower).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import queue
import threading
import time
from collections import deque
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

log = logging.getLogger(__name__)

BASE = "base"  # the version name of the base model (no adapter)
_PEFT_BASE = "__base__"  # PEFT's name for "no adapter" in a mixed batch


def adapter_name(version: str) -> str:
    """PEFT adapter names are matched by substring in places: make them unmistakable."""
    return f"ver_{version}"


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


@dataclass
class Completion:
    """What a finished request produced; filled in by the worker."""

    text: str = ""
    finish_reason: str | None = None  # stop | length | cancelled | error
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

    def __init__(self, request_id: int, prompt_ids: list[int], params: SamplingParams, version: str):
        self.id = request_id
        self.prompt_ids = prompt_ids
        self.params = params
        self.result = Completion(prompt_tokens=len(prompt_ids), version=version, started_at=time.monotonic())
        self._deltas: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.cancelled = threading.Event()
        self.done = threading.Event()
        self._notify: Callable[[], None] | None = None  # wakes an asyncio consumer

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
        while True:
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                item = self._deltas.get(timeout=wait)
            except queue.Empty:
                self.cancel()
                raise AssistantError(f"no answer within {timeout:.0f} s; the request was cancelled") from None
            if item is _DONE:
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
        while True:
            wake.clear()  # before draining: a put after the drain sets it again
            while True:
                try:
                    item = self._deltas.get_nowait()
                except queue.Empty:
                    break
                if item is _DONE:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
            remaining = None if deadline is None else deadline - loop.time()
            try:
                await asyncio.wait_for(wake.wait(), remaining)
            except TimeoutError:
                self.cancel()
                raise AssistantError(f"no answer within {timeout:.0f} s; the request was cancelled") from None

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
    """A request inside the running batch."""

    handle: RequestHandle
    generated: list[int] = field(default_factory=list)
    emitted_chars: int = 0
    generator: Any = None  # torch.Generator for per-request seeds


class Engine:
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
        self.eos_ids = self._eos_ids()
        self.live_version = BASE
        self.loaded_versions: set[str] = set()
        self._ids = itertools.count(1)
        self._pending: deque[RequestHandle] = deque()
        self._commands: deque[tuple[Callable[[], Any], Future[Any]]] = deque()
        self._cv = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._rows: list[_Row] = []
        self._cache: Any = None
        self._mask: Any = None
        self._merged: str | None = None  # adapter currently merged into the weights
        self._pins: dict[str, int] = {}  # version → requests pinned to it (pending or running)
        self._retire: set[str] = set()  # versions to unload once nothing is pinned to them
        self.steps = 0
        self.tokens_generated = 0

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
            return {
                "running": len(self._rows),
                "waiting": len(self._pending),
                "live_version": self.live_version,
                "loaded_versions": sorted(self.loaded_versions),
                "merged": self._merged,
                "steps": self.steps,
                "tokens_generated": self.tokens_generated,
            }

    def encode_chat(self, messages: list[dict[str, str]]) -> list[int]:
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

    def submit(
        self,
        messages: list[dict[str, str]] | None = None,
        params: SamplingParams | None = None,
        *,
        prompt_ids: list[int] | None = None,
        version: str | None = None,
    ) -> RequestHandle:
        """Queue a chat. Raises InputTooLongError, QueueFullError or NotReadyError at once."""
        if not self.running:
            raise NotReadyError("the model is not running yet; retry in a few seconds")
        params = params or SamplingParams(max_tokens=self.default_max_tokens)
        params.max_tokens = min(params.max_tokens, self.max_tokens_limit)
        if prompt_ids is None:
            if not messages:
                raise InvalidRequestError("messages must hold at least one message")
            prompt_ids = self.encode_chat(messages)
        budget = self.context_window - params.max_tokens
        if len(prompt_ids) > budget:
            raise InputTooLongError(
                f"the conversation is {len(prompt_ids)} tokens but at most {budget} fit "
                f"(context window {self.context_window} minus max_tokens {params.max_tokens}); "
                "shorten it, start a new conversation, or lower max_tokens"
            )
        with self._cv:
            if len(self._pending) >= self.queue_size:
                raise QueueFullError(
                    f"the server is busy ({len(self._pending)} requests waiting); retry shortly"
                )
            pinned = version or self.live_version
            if pinned != BASE and pinned not in self.loaded_versions:
                raise InvalidRequestError(f"model version {pinned!r} is not loaded")
            handle = RequestHandle(next(self._ids), list(prompt_ids), params, pinned)
            self._pins[pinned] = self._pins.get(pinned, 0) + 1
            self._pending.append(handle)
            self._cv.notify_all()
        return handle

    def generate(self, messages: list[dict[str, str]], params: SamplingParams | None = None, **kw: Any) -> str:
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
        self.call(lambda: self._load_adapter(version, path)).result()

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
        import os

        import torch

        self.threads = threads
        torch.set_num_threads(threads if threads > 0 else max(1, os.cpu_count() or 1))

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
                while not (self._stopping or self._commands or self._pending or self._rows):
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
                self._admit()
                if self._rows:
                    self._decode_step()
                self._unload_retired()
            except Exception as exc:  # a failed step fails its rows, never the server
                log.exception("decode step failed")
                for row in self._rows:
                    self._release(row.handle, "error", AssistantError(f"generation failed: {exc}"))
                self._rows, self._cache, self._mask = [], None, None
        for row in self._rows:
            self._release(row.handle, "cancelled", RequestCancelledError("the server is shutting down"))
        for handle in self._pending:
            self._release(handle, "cancelled", RequestCancelledError("the server is shutting down"))

    def _release(self, handle: RequestHandle, reason: str, error: BaseException | None = None) -> None:
        with self._cv:
            version = handle.version
            self._pins[version] = self._pins.get(version, 1) - 1
        handle._finish(reason, error)

    def _admit(self) -> None:
        """Prefill waiting requests one by one and add them to the running batch."""
        while len(self._rows) < self.max_batch_size:
            with self._cv:
                if not self._pending:
                    return
                handle = self._pending.popleft()
            if handle.cancelled.is_set():
                self._release(handle, "cancelled")
                continue
            self._prefill(handle)

    def _forward(self, input_ids: Any, mask: Any, positions: Any, cache: Any, versions: list[str]) -> Any:
        extra = self._prepare_adapters(versions)
        return self.model(
            input_ids=input_ids,
            attention_mask=mask,
            position_ids=positions,
            cache=cache,
            use_cache=True,
            logits_to_keep=1,  # only the last position's logits are sampled
            **extra,
        )

    def _prepare_adapters(self, versions: list[str]) -> dict[str, Any]:
        """Merge a lone adapter for speed; unmerge and route per row when versions differ."""
        if not self.loaded_versions:
            return {}
        wanted = set(versions)
        if self.merge_single_adapter and len(wanted) == 1 and BASE not in wanted:
            (only,) = wanted
            if self._merged != only:
                self._unmerge()
                self.model.set_adapter(adapter_name(only))
                self.model.merge_adapter()
                self._merged = only
            return {}
        self._unmerge()
        names = [_PEFT_BASE if v == BASE else adapter_name(v) for v in versions]
        return {"adapter_names": names}

    def _unmerge(self) -> None:
        if self._merged is not None:
            self.model.unmerge_adapter()
            self._merged = None

    def _prefill(self, handle: RequestHandle) -> None:
        import torch

        ids = torch.tensor([handle.prompt_ids], dtype=torch.long)
        mask = torch.ones_like(ids)
        positions = torch.arange(ids.shape[1]).unsqueeze(0)
        from transformers import DynamicCache

        cache = DynamicCache()
        out = self._forward(ids, mask, positions, cache, [handle.version])
        row = _Row(handle)
        if handle.params.seed is not None:
            row.generator = torch.Generator().manual_seed(handle.params.seed)
        token = self._sample(out.logits[:, -1, :], [row])[0]
        self._merge_into_batch(out.cache, mask)
        self._rows.append(row)
        self._accept(row, token)
        self._drop_finished()

    def _merge_into_batch(self, cache: Any, mask: Any) -> None:
        """Left-pad the shorter of (batch, new row) and concatenate along the batch dimension."""
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
        positions = (self._mask.sum(dim=1, keepdim=True) - 1).long()
        out = self._forward(last, self._mask, positions, self._cache, [r.handle.version for r in self._rows])
        self._cache = out.cache
        tokens = self._sample(out.logits[:, -1, :], self._rows)
        self.steps += 1
        for row, token in zip(self._rows, tokens, strict=True):
            self._accept(row, token)
        self._drop_finished()

    def _sample(self, logits: Any, rows: list[_Row]) -> list[int]:
        import torch

        chosen = []
        for i, row in enumerate(rows):
            p = row.handle.params
            if p.temperature <= 1e-5:
                chosen.append(int(torch.argmax(logits[i])))
                continue
            probs = torch.softmax(logits[i].float() / p.temperature, dim=-1)
            if p.top_p < 1.0:
                sorted_probs, order = torch.sort(probs, descending=True)
                keep = torch.cumsum(sorted_probs, dim=-1) - sorted_probs < p.top_p
                sorted_probs = sorted_probs * keep
                probs = torch.zeros_like(probs).scatter(0, order, sorted_probs)
            chosen.append(int(torch.multinomial(probs, 1, generator=row.generator)))
        return chosen

    def _accept(self, row: _Row, token: int) -> None:
        """Record a sampled token, stream the new text, decide whether the row is finished."""
        handle = row.handle
        if handle.result.first_token_at is None:
            handle.result.first_token_at = time.monotonic()
        if token in self.eos_ids:
            self._set_text(row, final=True)
            handle.result.finish_reason = "stop"
            return
        row.generated.append(token)
        self.tokens_generated += 1
        handle.result.completion_tokens = len(row.generated)
        if self._set_text(row, final=False):
            handle.result.finish_reason = "stop"
        elif len(row.generated) >= handle.params.max_tokens or len(handle.prompt_ids) + len(row.generated) >= self.context_window:
            self._set_text(row, final=True)
            handle.result.finish_reason = "length"

    def _set_text(self, row: _Row, final: bool) -> bool:
        """Decode, cut at a stop string, emit what is safe to show. True when a stop string hit."""
        handle = row.handle
        text = self.tokenizer.decode(row.generated, skip_special_tokens=True)
        hit = False
        for stop in handle.params.stop:
            at = text.find(stop)
            if at != -1:
                text, hit = text[:at], True
        handle.result.text = text
        safe = len(text)
        if not (final or hit):
            if text.endswith("\ufffd"):  # half of a multi-byte character: wait for the rest
                safe = len(text.rstrip("\ufffd"))
            hold = max((len(s) - 1 for s in handle.params.stop), default=0)
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

    # Adapters (worker thread only).
    def _load_adapter(self, version: str, path: Path) -> None:
        from peft import PeftModel

        name = adapter_name(version)
        if version in self.loaded_versions:
            return
        self._unmerge()
        if isinstance(self.model, PeftModel):
            self.model.load_adapter(str(path), adapter_name=name)
        else:
            self.model = PeftModel.from_pretrained(self.model, str(path), adapter_name=name)
            self.model.eval()
        with self._cv:
            self.loaded_versions.add(version)

    def _unload_retired(self) -> None:
        with self._cv:
            ready = [v for v in self._retire if self._pins.get(v, 0) <= 0 and v != self.live_version]
        for version in ready:
            self._unmerge()
            if version in self.loaded_versions:
                if len(self.loaded_versions) == 1:
                    self.model = self.model.unload()  # back to the plain base model
                else:
                    self.model.delete_adapter(adapter_name(version))
            with self._cv:
                self.loaded_versions.discard(version)
                self._retire.discard(version)
            log.info("unloaded version %s", version)
