"""The batching engine with the tiny random Llama: streaming, batching == sequential, joins, cancels,
stop strings, limits, the bounded queue, threads, seeds.

The shared tiny model (tests/helpers.py) answers every prompt greedily with "\n\n\n...", which would let
a batch that mixed up its rows pass. So these tests build their own tiny random Llama with larger initial
weights (initializer_range=0.2): its greedy output is arbitrary text that differs per prompt and
rarely ends early, so any mix-up between batch rows, any lost or extra token shows.
To make batching deterministic, a test parks the worker thread between decode steps with a command
(`engine.call(gate.wait)`), queues requests, then lets it go.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest

from assistant.engine import Engine, RequestHandle, SamplingParams
from assistant.errors import InputTooLongError, QueueFullError
from tests.conftest import make_engine
from tests.helpers import save_random_llama

PROMPTS = [
    "What is the capital of France?",
    "Write a haiku about autumn leaves.",
    "Explain recursion to a five year old.",
    "List three prime numbers.",
    "Hi",
    "Translate 'good morning' into Spanish and German, please, with a short note on pronunciation.",
    "Why is the sky blue?",
    "Tell me a joke about databases.",
]
MAX_TOKENS = [12, 30, 7, 25, 18, 40, 9, 33]
TIMEOUT = 60.0


@pytest.fixture(scope="module")
def varied_model_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from assistant.model import load_tokenizer

    target = tmp_path_factory.mktemp("varied-llama")
    # Wider and with larger weights than the shared tiny model, so greedy output differs per prompt.
    save_random_llama(
        target, load_tokenizer(tiny_model_dir), hidden_size=32, intermediate_size=64, initializer_range=0.2
    )
    return target


@pytest.fixture(scope="module")
def engine(varied_model_dir: Path) -> Iterator[Engine]:
    """One engine for the module (tests leave it idle); tests that need other limits make their own."""
    eng = make_engine(varied_model_dir, threads=1)
    yield eng
    eng.stop()


def chat(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def greedy(max_tokens: int, **kw) -> SamplingParams:  # type: ignore[no-untyped-def]
    return SamplingParams(max_tokens=max_tokens, temperature=0.0, **kw)


@contextmanager
def paused(engine: Engine) -> Iterator[None]:
    """Park the worker between decode steps; whatever is submitted meanwhile is admitted together."""
    entered, gate = threading.Event(), threading.Event()

    def hold() -> None:
        entered.set()
        gate.wait(TIMEOUT)

    done = engine.call(hold)
    assert entered.wait(TIMEOUT), "the engine worker never ran the pause command"
    try:
        yield
    finally:
        gate.set()
        done.result(TIMEOUT)


def reference(engine: Engine, prompts: list[str], max_tokens: list[int]) -> list[tuple[str, int, str]]:
    """Each prompt alone (batch of one), one after the other: (text, tokens, finish_reason)."""
    out = []
    for prompt, n in zip(prompts, max_tokens, strict=True):
        handle = engine.submit(chat(prompt), greedy(n))
        text = handle.text(TIMEOUT)
        out.append((text, handle.result.completion_tokens, handle.result.finish_reason))
    return out


def outcome(handle: RequestHandle) -> tuple[str, int, str | None]:
    return handle.result.text, handle.result.completion_tokens, handle.result.finish_reason


def test_stream_deltas_concatenate_to_the_final_text(engine: Engine) -> None:
    handle = engine.submit(chat(PROMPTS[0]), greedy(24))
    deltas = list(handle.stream(TIMEOUT))
    assert handle.done.is_set()
    assert len(deltas) > 1, "a 24-token answer should stream in several pieces"
    assert all(deltas), "no empty deltas"
    assert "".join(deltas) == handle.result.text
    assert handle.result.finish_reason in ("stop", "length")
    assert handle.result.completion_tokens <= 24
    assert handle.result.first_token_at is not None
    # Greedy is deterministic: the same prompt again gives the same text.
    assert engine.generate(chat(PROMPTS[0]), greedy(24)) == handle.result.text


def test_batched_results_equal_sequential_greedy(engine: Engine) -> None:
    expected = reference(engine, PROMPTS, MAX_TOKENS)
    assert len({text for text, _, _ in expected}) >= 6, "the prompts should give different answers"
    steps_before = engine.steps
    with paused(engine):
        handles = [engine.submit(chat(p), greedy(n)) for p, n in zip(PROMPTS, MAX_TOKENS, strict=True)]
    for handle in handles:
        handle.text(TIMEOUT)
    steps = engine.steps - steps_before
    # All eight ran in one batch: the steps are those of the longest, not the sum of all.
    assert steps <= max(MAX_TOKENS), f"{steps} decode steps: the requests did not share a batch"
    assert [outcome(h) for h in handles] == expected


def test_join_and_cancel_mid_batch_leave_the_others_unchanged(engine: Engine) -> None:
    # Long answers, so that nothing ends on its own between the first token and the pause below,
    # however slowly this thread gets scheduled.
    kept, kept_limits = [PROMPTS[0], PROMPTS[2], PROMPTS[3]], [240, 200, 20]
    expected = reference(engine, kept, kept_limits)
    assert [reason for _, _, reason in expected] == ["length"] * 3
    with paused(engine):
        a = engine.submit(chat(kept[0]), greedy(kept_limits[0]))
        b = engine.submit(chat(PROMPTS[1]), greedy(1000))  # will be cancelled
        c = engine.submit(chat(kept[1]), greedy(kept_limits[1]))
    next(a.stream(TIMEOUT))  # the batch is decoding
    with paused(engine):
        running = engine.stats()["running"]
        assert not a.done.is_set() and not b.done.is_set() and not c.done.is_set()
        late = engine.submit(chat(kept[2]), greedy(kept_limits[2]))  # joins the running batch
        b.cancel()
    assert running == 3
    for handle in (a, c, late):
        handle.text(TIMEOUT)
    assert b.done.wait(TIMEOUT)
    assert b.result.finish_reason == "cancelled"
    assert 1 <= b.result.completion_tokens < 1000
    assert [outcome(a), outcome(c), outcome(late)] == expected


def test_cancel_frees_the_slot_at_once(varied_model_dir: Path) -> None:
    engine = make_engine(varied_model_dir, threads=1, max_batch_size=1)
    try:
        long = engine.submit(chat(PROMPTS[1]), greedy(1000))
        stream = long.stream(TIMEOUT)
        first = next(stream)  # it holds the only slot now
        waiting = engine.submit(chat(PROMPTS[0]), greedy(5))
        assert not waiting.done.is_set()
        long.cancel()
        assert long.done.wait(TIMEOUT)
        rest = list(stream)  # the stream ends cleanly
        assert long.result.finish_reason == "cancelled"
        assert long.result.completion_tokens < 1000
        assert long.result.text.startswith(first + "".join(rest))
        text = waiting.text(TIMEOUT)
        assert waiting.result.finish_reason in ("stop", "length")
        assert text == engine.generate(chat(PROMPTS[0]), greedy(5))
        assert engine.stats()["running"] == 0 and engine.stats()["waiting"] == 0
    finally:
        engine.stop()


def test_stop_strings_cut_per_request(engine: Engine) -> None:
    full = engine.generate(chat(PROMPTS[2]), greedy(40))
    assert len(full) > 20
    stop = full[12:16]
    assert stop.strip(), f"pick a visible stop string from {full!r}"
    cut = full[: full.find(stop)]
    with paused(engine):
        stopped = engine.submit(chat(PROMPTS[2]), greedy(40, stop=(stop,)))
        free = engine.submit(chat(PROMPTS[2]), greedy(40))
    deltas = list(stopped.stream(TIMEOUT))
    assert stopped.result.text == cut
    assert "".join(deltas) == cut, "the stop string must never be streamed, not even in part"
    assert stopped.result.finish_reason == "stop"
    assert free.text(TIMEOUT) == full, "the other request in the batch is not cut"
    assert free.result.finish_reason == "length"


def test_input_over_the_context_window_is_refused(engine: Engine) -> None:
    window = engine.context_window
    with pytest.raises(InputTooLongError) as info:
        engine.submit(prompt_ids=[100] * (window + 10), params=greedy(16))
    assert str(window) in str(info.value)
    # The budget is the window minus max_tokens: a prompt that fits alone can still be refused.
    with pytest.raises(InputTooLongError):
        engine.submit(prompt_ids=[100] * (window - 100), params=greedy(200))
    ok = engine.submit(prompt_ids=[100] * (window - 100), params=greedy(3))
    ok.text(TIMEOUT)
    assert ok.result.finish_reason in ("stop", "length")


def test_max_tokens_is_clamped_to_the_limit(varied_model_dir: Path) -> None:
    engine = make_engine(varied_model_dir, threads=1, max_tokens_limit=8, default_max_tokens=4)
    try:
        assert engine.clamp_max_tokens(500) == 8
        assert engine.clamp_max_tokens(None) == 4
        handle = engine.submit(chat(PROMPTS[1]), greedy(500))
        assert handle.params.max_tokens == 8
        handle.text(TIMEOUT)
        assert handle.result.completion_tokens == 8
        assert handle.result.finish_reason == "length"
    finally:
        engine.stop()


def test_bounded_queue_refuses_with_queue_full(varied_model_dir: Path) -> None:
    engine = make_engine(varied_model_dir, threads=1, queue_size=1, max_batch_size=1)
    try:
        accepted, refused = [], 0
        with paused(engine):
            for prompt in PROMPTS[:5]:
                try:
                    accepted.append(engine.submit(chat(prompt), greedy(500)))
                except QueueFullError as exc:
                    refused += 1
                    assert "busy" in str(exc)
        assert len(accepted) == 1 and refused == 4
        first = accepted[0]
        next(first.stream(TIMEOUT))  # admitted: the queue is empty again
        second = engine.submit(chat(PROMPTS[0]), greedy(3))
        with pytest.raises(QueueFullError):
            engine.submit(chat(PROMPTS[1]), greedy(3))
        first.cancel()
        second.text(TIMEOUT)
        assert first.result.finish_reason == "cancelled"
        assert second.result.finish_reason in ("stop", "length")
    finally:
        engine.stop()


@pytest.mark.parametrize("clients", [4, 8])
def test_concurrent_requests_from_threads_all_complete(engine: Engine, clients: int) -> None:
    expected = {i: engine.generate(chat(PROMPTS[i]), greedy(MAX_TOKENS[i])) for i in range(clients)}
    start = threading.Barrier(clients)

    def ask(i: int) -> tuple[str, str, str | None]:
        start.wait(TIMEOUT)
        handle = engine.submit(chat(PROMPTS[i]), greedy(MAX_TOKENS[i]))
        streamed = "".join(handle.stream(TIMEOUT))
        return streamed, handle.result.text, handle.result.finish_reason

    with ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(ask, range(clients)))
    for i, (streamed, text, reason) in enumerate(results):
        assert reason in ("stop", "length")
        assert streamed == text == expected[i]
    stats = engine.stats()
    assert stats["running"] == 0 and stats["waiting"] == 0


def test_seeds_reproduce_sampled_text(engine: Engine) -> None:
    def sampled(seed: int) -> SamplingParams:
        return SamplingParams(max_tokens=20, temperature=1.0, top_p=0.95, seed=seed)

    first = engine.generate(chat(PROMPTS[4]), sampled(123))
    # The same seed inside a batch with other (seeded and unseeded) requests: the same text.
    with paused(engine):
        again = engine.submit(chat(PROMPTS[4]), sampled(123))
        other = engine.submit(chat(PROMPTS[4]), sampled(7))
        noise = engine.submit(chat(PROMPTS[5]), SamplingParams(max_tokens=20, temperature=1.0))
    assert again.text(TIMEOUT) == first
    other.text(TIMEOUT)
    noise.text(TIMEOUT)
    seeds = {engine.generate(chat(PROMPTS[4]), sampled(s)) for s in (1, 2, 3)}
    assert len(seeds | {other.result.text, first}) > 1, "different seeds should sample differently"
