"""Serving speed on the real model: the server under concurrent streaming load vs naive `generate`.

    .venv/bin/python bench/serving.py            # 16 requests x 64 tokens per level, concurrency 1/4/8/16
    .venv/bin/python bench/serving.py --quick    # 8 requests x 32 tokens, concurrency 1 and 8 (~4 min)
    options: --requests N --max-tokens N --concurrency 1,4,8,16 --dtype float32|bfloat16
             --server-threads N (default: the baseline's; 0 = the engine's auto mode)
             --no-docs (don't rewrite docs/serving.md and docs/serving.png)

One process tree, one run, the same prompts (distinct "write a long essay" chats, greedy) and the same
max_tokens everywhere:

- naive: sequential `model.generate` in a separate, persistent subprocess. A probe first times torch's
  default thread count (what naive code gets) against 1 thread on the first prompts; the faster one is
  the baseline, so ratios credit the engine, not a thread setting the baseline happened to get wrong.
  The server runs with the same thread count (like for like; --server-threads 0 gives it the engine's
  auto mode, which follows the load: see docs/serving.md);
- server: `python -m assistant serve` as a subprocess on a free port with a temp data dir (its
  model-cache is a symlink to .test-cache/model-cache: nothing is converted), driven over HTTP
  streaming (/v1/chat/completions, stream=true) by 1, 4, 8 and 16 client threads;
- llama.cpp (same GGUF, sequential, streamed), only if `llama_cpp` is importable.

The machine's 2 cores are shared and its load drifts by tens of percent within minutes, so each
concurrency level is measured in rounds that alternate the naive baseline and the server on the same
prompts (c prompts per round, at least 2); "× naive" divides the server's tokens/s by the naive
tokens/s of *those* rounds.

Per level: aggregate generated tokens/s (tokens counted by re-tokenising the answers), the paired naive
tokens/s and the ratio, p50/p95 time to first token, p95 gap between tokens, and the server's memory
(VmRSS after the level; VmHWM = its peak so far, from /proc). "same text" counts answers identical to
the naive baseline's (greedy float32 must match). The table is printed and, unless --no-docs, written
into docs/serving.md between the result markers, with a chart in docs/serving.png (drawn with Pillow,
which Gradio already depends on).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import queue
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

TOPICS = ["the history of Rome", "the ocean", "volcanoes", "bread baking", "the moon", "chess", "bees",
          "trains", "glaciers", "the printing press", "coffee", "lighthouses", "deserts", "violins",
          "the Silk Road", "rainforests", "bicycles", "comets", "tea", "bridges", "owls", "jazz", "salt",
          "windmills"]
GOALS = "c8 >= 4x naive, c1 >= 1.2x naive, p95 TTFT at c8 <= 1 s, server RSS <= 1.5 GB"
MARK_START, MARK_END = "<!-- serving-results:start -->", "<!-- serving-results:end -->"


def prompts(n: int) -> list[str]:
    return [f"Write a long, detailed essay about {TOPICS[i % len(TOPICS)]}." for i in range(n)]


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def loadavg() -> float:
    return os.getloadavg()[0]


# ---------------------------------------------------------------------------- naive baseline (subprocess)
PROTOCOL = "@@ "  # the worker's answers on stdout start with this; anything else there is ignored


def naive_worker(args: argparse.Namespace) -> int:
    """Sequential `model.generate`, one request after another, as naive code would serve. Reads
    {"texts": [...], "max_tokens": n} lines on stdin, answers one JSON line per batch of work."""
    import torch

    from assistant.model import load_model, load_tokenizer, prepare_model_dir

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    model_dir, _ = prepare_model_dir(None, ROOT / ".test-cache")
    tokenizer = load_tokenizer(model_dir)
    model = load_model(model_dir, args.dtype)

    def run(text: str, max_tokens: int) -> str:
        ids = tokenizer.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                            return_tensors="pt")["input_ids"]
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_tokens,
                             do_sample=False, pad_token_id=tokenizer.pad_token_id)
        return tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)

    run("Hello", 4)  # warm-up, as the server gets one
    print(PROTOCOL + json.dumps({"ready": True, "threads": torch.get_num_threads()}), flush=True)
    for line in sys.stdin:
        job = json.loads(line)
        results = []
        started = time.perf_counter()
        for text in job["texts"]:
            t0 = time.perf_counter()
            results.append({"text": run(text, job["max_tokens"]), "latency": time.perf_counter() - t0})
        wall = time.perf_counter() - started
        print(PROTOCOL + json.dumps({"wall": wall, "results": results}), flush=True)
    return 0


class Naive:
    """A persistent naive-baseline subprocess (model loaded once)."""

    def __init__(self, threads: int, dtype: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--naive-worker", "--threads", str(threads), "--dtype", dtype],
            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.threads = self._read()["threads"]

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith(PROTOCOL):
                return dict(json.loads(line[len(PROTOCOL):]))
        raise SystemExit("the naive baseline worker died")

    def run(self, texts: list[str], max_tokens: int) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"texts": texts, "max_tokens": max_tokens}) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def run_llama_cpp(args: argparse.Namespace) -> dict[str, Any] | None:
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        return None
    out = Path(tempfile.mkstemp(suffix=".json")[1])
    subprocess.run([sys.executable, __file__, "--llama-worker", str(out), "--requests", str(args.requests),
                    "--max-tokens", str(args.max_tokens)], check=True, stderr=subprocess.DEVNULL, cwd=ROOT)
    data = json.loads(out.read_text())
    out.unlink()
    return data


def llama_worker(args: argparse.Namespace) -> int:
    from llama_cpp import Llama

    from assistant.model import bundled_gguf

    llm = Llama(model_path=str(bundled_gguf()), n_ctx=2048, n_threads=os.cpu_count() or 1, verbose=False)
    results = []
    started = time.perf_counter()
    for text in prompts(args.requests):
        t0 = time.perf_counter()
        first = None
        chunks = []
        messages = [{"role": "user", "content": text}]
        for part in llm.create_chat_completion(messages, max_tokens=args.max_tokens, temperature=0.0,
                                               stream=True):
            delta = part["choices"][0]["delta"].get("content")
            if delta:
                first = first or time.perf_counter() - t0
                chunks.append(delta)
        results.append({"text": "".join(chunks), "latency": time.perf_counter() - t0, "ttft": first})
    wall = time.perf_counter() - started
    Path(args.llama_worker).write_text(json.dumps({"wall": wall, "results": results}))
    return 0


# ---------------------------------------------------------------------------- the server
class Server:
    def __init__(self, args: argparse.Namespace) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="bench-serving-"))
        (self.tmp / "model-cache").symlink_to(ROOT / ".test-cache" / "model-cache")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ, ASSISTANT_DATA_DIR=str(self.tmp), ASSISTANT_PORT=str(self.port),
                   ASSISTANT_CHAT_RATE_PER_MINUTE="100000000", ASSISTANT_DTYPE=args.dtype,
                   ASSISTANT_THREADS=str(args.server_threads), ASSISTANT_ADMIN_PASSWORD="bench-password")
        self.log = (self.tmp / "server.log").open("w")
        self.proc = subprocess.Popen([sys.executable, "-m", "assistant", "serve"], cwd=ROOT, env=env,
                                     stdout=self.log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 300) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"the server exited ({self.proc.returncode}); see {self.tmp / 'server.log'}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).json().get("status") == "ready":
                    return
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.5)
        raise SystemExit(f"the server was not ready in {timeout:.0f} s; see {self.tmp / 'server.log'}")

    def memory(self) -> tuple[float, float]:
        """(VmRSS, VmHWM) in MB."""
        values = {}
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) / 1024
        return values.get("VmRSS", float("nan")), values.get("VmHWM", float("nan"))

    def engine_stats(self) -> dict[str, Any]:
        import httpx

        try:
            return dict(httpx.get(f"{self.url}/health", timeout=5).json().get("engine") or {})
        except (httpx.HTTPError, ValueError):
            return {}

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


def stream_one(client: Any, url: str, text: str, max_tokens: int, user: str) -> dict[str, Any]:
    body = {"model": "live", "messages": [{"role": "user", "content": text}], "stream": True,
            "temperature": 0.0, "max_tokens": max_tokens, "user": user}
    t0 = time.perf_counter()
    stamps: list[float] = []
    chunks: list[str] = []
    with client.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=600) as response:
        if response.status_code != 200:
            response.read()
            raise RuntimeError(f"HTTP {response.status_code}: {response.text[:200]}")
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            data = json.loads(line[6:])
            if "error" in data:
                raise RuntimeError(str(data["error"]))
            delta = data["choices"][0]["delta"].get("content")
            if delta:
                stamps.append(time.perf_counter())
                chunks.append(delta)
    end = time.perf_counter()
    return {"text": "".join(chunks), "ttft": (stamps[0] - t0) if stamps else end - t0,
            "gaps": [b - a for a, b in itertools.pairwise(stamps)], "latency": end - t0}


def drive(server: Server, texts: list[str], concurrency: int, max_tokens: int) -> dict[str, Any]:
    import httpx

    work: queue.Queue[tuple[int, str]] = queue.Queue()
    for item in enumerate(texts):
        work.put(item)
    results: dict[int, dict[str, Any]] = {}
    errors: list[str] = []

    def client(worker: int) -> None:
        with httpx.Client() as http:
            while True:
                try:
                    index, text = work.get_nowait()
                except queue.Empty:
                    return
                try:
                    results[index] = stream_one(http, server.url, text, max_tokens, f"bench-{worker}")
                except Exception as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(w,)) for w in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"wall": time.perf_counter() - started, "results": [results[i] for i in sorted(results)],
            "errors": errors}


# ---------------------------------------------------------------------------- report
def count_tokens(tokenizer: Any, text: str) -> int:
    return len(tokenizer.encode(text, add_special_tokens=False).ids)


def tokens_of(tokenizer: Any, results: list[dict[str, Any]]) -> int:
    return sum(count_tokens(tokenizer, r["text"]) for r in results)


def fmt(value: float | None, spec: str, unit: str = "") -> str:
    return "–" if value is None or value != value else f"{value:{spec}}{unit}"


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| run | requests | tokens/s | naive tokens/s (same rounds) | × naive | TTFT p50 | TTFT p95 "
             "| gap p95 | server RSS (peak) | same text | errors |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        rss = "–" if r.get("rss") is None else f"{r['rss']:.0f} MB ({r['hwm']:.0f} MB)"
        same = "–" if r.get("same") is None else f"{r['same']}/{r['requests']}"
        gap = r.get("gap_p95")
        lines.append(
            f"| {r['name']} | {r['requests']} | {r['tps']:.1f} | {fmt(r.get('naive_tps'), '.1f')} "
            f"| {fmt(r.get('ratio'), '.2f', '×')} | {fmt(r.get('ttft_p50'), '.2f', ' s')} "
            f"| {fmt(r.get('ttft_p95'), '.2f', ' s')} "
            f"| {fmt(None if gap is None else gap * 1000, '.0f', ' ms')} "
            f"| {rss} | {same} | {r.get('errors', 0)} |")
    return "\n".join(lines)


def goals(rows: list[dict[str, Any]]) -> list[str]:
    by = {r["name"]: r for r in rows}
    out = []

    def check(label: str, ok: bool | None, detail: str) -> None:
        out.append(f"- {label}: {detail} → {'met' if ok else 'MISSED' if ok is not None else 'not run'}")

    c8, c1 = by.get("server c=8"), by.get("server c=1")
    check("c8 aggregate >= 4× naive", c8 and c8["ratio"] >= 4, fmt(c8 and c8["ratio"], ".2f", "×"))
    check("c1 >= 1.2× naive", c1 and c1["ratio"] >= 1.2, fmt(c1 and c1["ratio"], ".2f", "×"))
    check("p95 TTFT at c8 <= 1 s", c8 and c8["ttft_p95"] <= 1.0, fmt(c8 and c8["ttft_p95"], ".2f", " s"))
    peak = max((r["hwm"] for r in rows if r.get("hwm") is not None), default=None)
    check("server RSS <= 1.5 GB", peak is not None and peak <= 1536, fmt(peak, ".0f", " MB peak"))
    return out


def measure_level(server: Server, naive: Naive, texts: list[str], concurrency: int, max_tokens: int,
                  tokenizer: Any) -> dict[str, Any]:
    """Alternate naive and server rounds over the same prompts; sum tokens and time per side."""
    size = max(2, concurrency)
    served: list[dict[str, Any]] = []
    reference: list[str] = []
    server_wall = naive_wall = 0.0
    naive_tokens = 0
    errors: list[str] = []
    for n, start in enumerate(range(0, len(texts), size)):
        chunk = texts[start:start + size]
        for side in ("naive", "server") if n % 2 == 0 else ("server", "naive"):
            if side == "naive":
                done = naive.run(chunk, max_tokens)
                naive_wall += done["wall"]
                naive_tokens += tokens_of(tokenizer, done["results"])
                reference.extend(r["text"] for r in done["results"])
            else:
                run = drive(server, chunk, concurrency, max_tokens)
                server_wall += run["wall"]
                served.extend(run["results"])
                errors.extend(run["errors"])
    for error in errors[:3]:
        print("  error:", error)
    tps = tokens_of(tokenizer, served) / server_wall
    naive_tps = naive_tokens / naive_wall
    ttft = [r["ttft"] for r in served]
    gaps = [g for r in served for g in r["gaps"]]
    rss, hwm = server.memory()
    return {
        "name": f"server c={concurrency}", "requests": len(served), "tps": tps, "naive_tps": naive_tps,
        "ratio": tps / naive_tps, "ttft_p50": percentile(ttft, 50), "ttft_p95": percentile(ttft, 95),
        "gap_p95": percentile(gaps, 95) if gaps else None, "rss": rss, "hwm": hwm,
        "same": sum(1 for r, ref in zip(served, reference, strict=False) if r["text"] == ref),
        "errors": len(errors),
    }


def chart(rows: list[dict[str, Any]], path: Path) -> bool:
    """A bar chart of tokens/s per row (PNG via Pillow); False when Pillow is missing."""
    try:
        from PIL import Image, ImageDraw, ImageFont
    except ImportError:
        return False
    width, bar_h, gap, left, top = 1000, 34, 14, 300, 60
    height = top + len(rows) * (bar_h + gap) + 40
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    try:
        font = ImageFont.load_default(size=16)
        small = ImageFont.load_default(size=13)
    except TypeError:  # an old Pillow without scalable default fonts
        font = small = ImageFont.load_default()
    draw.text((20, 18), "Aggregate generated tokens/s (same prompts, same max_tokens, one run)", fill="black",
              font=font)
    most = max(r["tps"] for r in rows) or 1.0
    for i, r in enumerate(rows):
        y = top + i * (bar_h + gap)
        length = int((width - left - 150) * r["tps"] / most)
        color = "#9aa5b1" if r["name"].startswith(("naive", "llama")) else "#3b7dd8"
        draw.text((20, y + 8), r["name"], fill="black", font=font)
        draw.rectangle([left, y, left + max(2, length), y + bar_h], fill=color)
        label = f"{r['tps']:.1f}" + (f"  ({r['ratio']:.1f}x naive)" if r.get("ratio") else "")
        draw.text((left + length + 8, y + 8), label, fill="black", font=small)
    img.save(path)
    return True


def write_docs(report: str, png: bool) -> None:
    doc = ROOT / "docs" / "serving.md"
    text = doc.read_text() if doc.is_file() else f"# Serving speed\n\n{MARK_START}\n{MARK_END}\n"
    if MARK_START not in text or MARK_END not in text:
        text += f"\n{MARK_START}\n{MARK_END}\n"
    head, rest = text.split(MARK_START, 1)
    _, tail = rest.split(MARK_END, 1)
    block = report + ("\n\n![tokens/s per run](serving.png)" if png else "")
    doc.write_text(f"{head}{MARK_START}\n{block}\n{MARK_END}{tail}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--requests", type=int)
    parser.add_argument("--max-tokens", type=int)
    parser.add_argument("--concurrency", default=None, help="comma-separated levels (default 1,4,8,16)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--server-threads", type=int, default=None,
                        help="server torch threads (default: the naive baseline's, for a like-for-like "
                             "ratio; 0: the engine's auto mode)")
    parser.add_argument("--no-docs", action="store_true")
    parser.add_argument("--threads", type=int, default=0, help=argparse.SUPPRESS)  # naive worker
    parser.add_argument("--naive-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--llama-worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.requests = args.requests or (8 if args.quick else 16)
    args.max_tokens = args.max_tokens or (32 if args.quick else 64)
    if args.naive_worker:
        return naive_worker(args)
    if args.llama_worker:
        return llama_worker(args)
    levels = [int(c) for c in (args.concurrency or ("1,8" if args.quick else "1,4,8,16")).split(",")]

    from tokenizers import Tokenizer

    from assistant.model import prepare_model_dir

    model_dir, model_id = prepare_model_dir(None, ROOT / ".test-cache")  # converts once, if needed
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    texts = prompts(max(args.requests, max(levels)))
    load_start = loadavg()
    print(f"{model_id}, {args.dtype}, {len(texts)} requests x {args.max_tokens} tokens per level, greedy; "
          f"{os.cpu_count()} cores, load average {load_start:.1f}", flush=True)

    rows: list[dict[str, Any]] = []
    probe = texts[:2 if args.quick else 4]
    print("naive baseline: probing torch's default threads vs 1 thread ...", flush=True)
    candidates = [Naive(0, args.dtype), Naive(1, args.dtype)]
    probes = []
    for naive in candidates:
        done = naive.run(probe, args.max_tokens)
        tps = tokens_of(tokenizer, done["results"]) / done["wall"]
        probes.append(tps)
        rows.append({"name": f"naive generate, {naive.threads} thread{'s' * (naive.threads > 1)} (probe)",
                     "requests": len(probe), "tps": tps})
    naive = candidates[probes.index(max(probes))]
    for other in candidates:
        if other is not naive:
            other.close()
    print(f"  baseline: {naive.threads} thread(s)", flush=True)
    if args.server_threads is None:
        args.server_threads = naive.threads

    llama = run_llama_cpp(args)
    if llama is not None:
        rows.append({"name": "llama.cpp (same GGUF, sequential)", "requests": len(llama["results"]),
                     "tps": tokens_of(tokenizer, llama["results"]) / llama["wall"],
                     "ttft_p50": percentile([r["ttft"] for r in llama["results"]], 50),
                     "ttft_p95": percentile([r["ttft"] for r in llama["results"]], 95)})

    server = Server(args)
    stats: dict[str, Any] = {}
    try:
        server.wait_ready()
        drive(server, ["Hello", "Write a haiku."], 1, 8)  # warm-up
        for c in levels:
            print(f"server, concurrency {c} (alternating with naive rounds) ...", flush=True)
            level_texts = texts[:max(args.requests, c)]
            rows.append(measure_level(server, naive, level_texts, c, args.max_tokens, tokenizer))
        stats = server.engine_stats()
    finally:
        server.close()
        naive.close()

    load_end = loadavg()
    report = "\n".join([
        f"Run {time.strftime('%Y-%m-%d %H:%M')}: {model_id}, {args.dtype}, {args.max_tokens} tokens per "
        f"request (greedy), {os.cpu_count()} cores, load average {load_start:.1f} → {load_end:.1f}. Naive "
        f"baseline: {naive.threads} thread(s), the faster in the probe. Server threads: "
        f"{'auto' if args.server_threads == 0 else args.server_threads} (torch threads at the end: "
        f"{stats.get('torch_threads', '?')}; default: the baseline's); prefix-cache hits "
        f"{stats.get('prefix_hits', '?')}"
        f"{'' if llama is not None else '; llama.cpp not installed (row skipped)'}.",
        "",
        table(rows),
        "",
        f"Goals ({GOALS}):",
        *goals(rows),
    ])
    print()
    print(report)
    if not args.no_docs:
        png = chart(rows, ROOT / "docs" / "serving.png")
        write_docs(report, png)
        print(f"\nwrote docs/serving.md{' and docs/serving.png' if png else ''}")
    return 0 if all(r.get("errors", 0) == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
