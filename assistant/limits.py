"""Per-client rate limits (token buckets), so no user or IP can take the whole server."""

from __future__ import annotations

import math
import threading
import time

from .errors import RateLimitedError


class RateLimiter:
    """`per_minute` requests per key, with bursts up to `burst`. Thread-safe; memory bounded."""

    def __init__(self, per_minute: int, burst: int | None = None, max_keys: int = 10_000) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(burst if burst is not None else max(1, per_minute))
        self.max_keys = max_keys
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def check(self, key: str, what: str = "requests") -> None:
        if self.rate <= 0:
            return
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens < 1.0:
                wait = (1.0 - tokens) / self.rate
                self._buckets[key] = (tokens, now)
                raise RateLimitedError(f"too many {what}; retry in {wait:.1f} s", retry_after=wait)
            self._buckets[key] = (tokens - 1.0, now)
            if len(self._buckets) > self.max_keys:  # forget the oldest keys
                for old in sorted(self._buckets, key=lambda k: self._buckets[k][1])[: self.max_keys // 10]:
                    del self._buckets[old]


def queue_wait_s(waiting: int, batch_slots: int, seconds_per_batch: float = 2.0) -> int:
    """A Retry-After hint for a full queue: the waiting requests drain one batch at a time.

    A rough figure (a batch of short answers takes a few seconds on CPU), clamped to 1..30 s so a client
    neither hammers the server nor gives up.
    """
    batches = math.ceil(waiting / max(1, batch_slots))
    return int(min(30, max(1, math.ceil(batches * seconds_per_batch))))
