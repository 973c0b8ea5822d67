"""End to end on the real model: simulated users teach a preference through the product's own interfaces.

    .venv/bin/python bench/e2e_preference.py          # SmolLM2-135M, 80 training prompts (15-25 min, 2 cores)
    .venv/bin/python bench/e2e_preference.py --quick  # the tiny random test model, small counts (~1 min)

1. Starts a real server (`python -m assistant serve`, tests/server.py) on a fresh data dir with a known admin
   token, auto-promote off, canary off, scheduler off, review not required.
2. The admin gives ten simulated users an account and API key each (`POST /admin/users`): curation caps
   every origin (account, or client address for key-less calls) at 20 %, so ten key-less "users" from one
   address would be one voice. They chat through the official `openai` client (`api_key=ak-...`, `user`
   set) on 80 training prompts and rate every answer with `POST /v1/feedback`. Their preference: an answer
   that starts with "In short:" and is one sentence (and states the right fact). A matching answer gets a
   thumbs-up; any other a thumbs-down and a `correction` in that style. Every fifth prompt another user
   asks twice more and votes on the two answers with `POST /v1/feedback/compare` (the matching one, else
   the clearly shorter one, else both_bad).
3. The admin starts one job with the default config (`POST /admin/train`), follows `GET /admin/jobs/{id}`,
   waits for it and for its gate (the job's last phase; the report comes from `GET /admin/versions`).
4. Prints the gate report, then promotes with `POST /admin/versions/{id}/promote` (a blocked gate stops the
   script unless --force; --quick implies --force: the tiny random model's gate verdict means nothing).
5. Asks held-out prompts (never rated, so never trained on) greedily through the chat API, model "base"
   (what was live before) and "live" (the promoted version), and prints metric | before | after.

Exits non-zero if any request fails, the job fails, or the gate blocks the version without --force.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import httpx  # noqa: E402
from openai import OpenAI  # noqa: E402

STYLE = "In short:"
RATERS = [f"user{i:02d}" for i in range(1, 11)]  # curation caps each rater at 20 % of a dataset


@dataclass(frozen=True)
class Prompt:
    question: str
    fact: str  # the one sentence the users want (after "In short:")
    keywords: tuple[str, ...]  # an answer is correct if it mentions any of these (case-insensitive)


def capital(country: str, city: str, *spellings: str) -> Prompt:
    # The users' fix keeps the model's own order ("The capital of X is ..."): it adds "In short:" and cuts
    # the rest. An answer-first rewrite ("Paris is the capital of France.") made the 135M model name a
    # city before it had read the country back, and held-out capitals went wrong (docs/e2e.md).
    return Prompt(
        f"What is the capital of {country}?", f"The capital of {country} is {city}.", (city, *spellings)
    )


def times(a: int, b: int) -> Prompt:
    return Prompt(f"What is {a} times {b}?", f"{a} times {b} is {a * b}.", (str(a * b),))


TRAIN_CAPITALS = [
    capital("Brazil", "Brasília", "Brasilia"), capital("Germany", "Berlin"),
    capital("Colombia", "Bogotá", "Bogota"), capital("Pakistan", "Islamabad"), capital("Portugal", "Lisbon"),
    capital("Japan", "Tokyo"), capital("China", "Beijing"), capital("India", "New Delhi"),
    capital("Bangladesh", "Dhaka"), capital("Switzerland", "Bern"), capital("Argentina", "Buenos Aires"),
    capital("the Netherlands", "Amsterdam"),
    capital("the Philippines", "Manila"), capital("Russia", "Moscow"), capital("Norway", "Oslo"),
    capital("Sweden", "Stockholm"), capital("Finland", "Helsinki"), capital("Denmark", "Copenhagen"),
    capital("Poland", "Warsaw"), capital("Greece", "Athens"), capital("Turkey", "Ankara"),
    capital("Ireland", "Dublin"), capital("Belgium", "Brussels"), capital("Austria", "Vienna"),
    capital("Hungary", "Budapest"), capital("Thailand", "Bangkok"), capital("Vietnam", "Hanoi"),
    capital("South Korea", "Seoul"), capital("Peru", "Lima"), capital("Chile", "Santiago"),
]  # fmt: skip
TRAIN_GENERAL = [
    Prompt("Why do we have seasons?", "The tilt of the Earth's axis changes how directly sunlight reaches "
           "each half of the planet during the year.", ("tilt", "axis")),
    Prompt("How do bats find their way in the dark?", "Bats use echolocation, listening to the echoes of "
           "their own calls.", ("echo",)),
    Prompt("How do plants make food?", "Plants use sunlight, water and carbon dioxide to make sugar through "
           "photosynthesis.", ("photosynthesis", "sunlight")),
    Prompt("What causes tides?", "The Moon's gravity pulls on the oceans and raises the water on the sides "
           "of the Earth facing toward and away from it.", ("moon",)),
    Prompt("Why does ice float?", "Water expands when it freezes, so ice is less dense than liquid water.",
           ("dense", "density")),
    Prompt("What is a leap year?", "A leap year has 366 days, adding February 29 to keep the calendar in "
           "step with the Earth's orbit.", ("366", "february")),
    Prompt("What is a glacier?", "A glacier is a huge, slow-moving mass of ice formed from compacted snow.",
           ("ice",)),
    Prompt("What do bees do for flowers?", "Bees carry pollen between flowers, which lets plants make seeds.",
           ("pollen", "pollinat")),
    Prompt("What is the chemical formula of water?", "The chemical formula of water is H2O.", ("h2o",)),
    Prompt("How many planets are in the solar system?", "There are eight planets in the solar system.",
           ("eight", "8")),
    Prompt("What is the largest bone in the human body?", "The largest bone in the human body is the "
           "femur, in the thigh.", ("femur", "thigh")),
    Prompt("What makes thunder?", "Lightning heats the air so fast that it expands with a loud bang.",
           ("lightning",)),
    Prompt("Why do leaves change colour in autumn?", "Trees stop making green chlorophyll, which reveals "
           "the yellow and red pigments underneath.", ("chlorophyll",)),
    Prompt("What is the fastest land animal?", "The fastest land animal is the cheetah.",
           ("cheetah",)),
    Prompt("How does a compass work?", "Its magnetised needle lines up with the Earth's magnetic field and "
           "points north.", ("magnet",)),
    Prompt("Why is the ocean salty?", "Rivers carry dissolved minerals into the sea, and evaporation leaves "
           "the salt behind.", ("mineral", "river", "evaporat")),
    Prompt("What is DNA?", "DNA is the molecule in every cell that carries the genetic instructions for how "
           "a living thing grows and works.", ("genetic", "gene")),
    Prompt("How does the heart work?", "The heart is a muscle that pumps blood through the body, carrying "
           "oxygen to every organ.", ("pump", "blood")),
    Prompt("What colour do you get by mixing blue and yellow?", "Mixing blue and yellow gives green.",
           ("green",)),
    Prompt("Why do we sweat?", "Sweat evaporates from the skin and cools the body down.", ("cool",)),
    Prompt("Which instrument has 88 keys?", "The instrument with 88 keys is the piano.",
           ("piano",)),
    Prompt("How do clouds form?", "Water vapour rises, cools and condenses into tiny droplets that gather "
           "as clouds.", ("condens", "vapor", "vapour")),
    Prompt("What is the speed of light?", "Light travels at about 300,000 kilometres per second in a "
           "vacuum.", ("300,000", "299,792", "186,000")),
    Prompt("Why do onions make you cry?", "Cutting an onion releases a gas that irritates the eyes and "
           "makes them water.", ("gas", "irritat", "sulf", "sulph")),
    Prompt("What do you call a shape with eight sides?", "A shape with eight sides is an octagon.",
           ("octagon",)),
    Prompt("How do birds fly?", "Their wings push air downward and create lift that holds them up.",
           ("lift", "wing")),
    Prompt("What colour are ripe bananas?", "Ripe bananas are yellow.", ("yellow",)),
    Prompt("What is the tallest mountain in the world?", "The tallest mountain in the world is Mount "
           "Everest, at about 8,849 metres.", ("everest",)),
    Prompt("What do you call a baby kangaroo?", "A baby kangaroo is called a joey.", ("joey",)),
    Prompt("What is the largest bird?", "The largest bird is the ostrich.", ("ostrich",)),
    Prompt("What do frogs eat?", "Frogs eat mostly insects such as flies and crickets.",
           ("insect", "flies")),
    Prompt("How does soap clean?", "Soap molecules grab grease with one end and water with the other, so "
           "the dirt rinses away.", ("grease", "oil", "fat")),
    Prompt("What is the freezing point of water?", "Water freezes at 0 degrees Celsius at sea level.",
           ("0 degrees", "zero", "32", "0°")),
    Prompt("What do caterpillars turn into?", "Caterpillars turn into butterflies or moths.",
           ("butterfl", "moth")),
    Prompt("Why is the Moon bright at night?", "The Moon reflects light from the Sun.", ("reflect",)),
    Prompt("What is the main gas in the air we breathe?", "The main gas in the air is nitrogen, about 78 "
           "percent of it.", ("nitrogen",)),
    Prompt("How long does the Earth take to go around the Sun?", "The Earth takes about 365 days, one "
           "year, to orbit the Sun.", ("365", "year")),
    Prompt("What is a mammal?", "A mammal is a warm-blooded animal with hair that feeds its young with "
           "milk.", ("milk", "warm-blooded")),
    Prompt("What is the longest river in the world?", "The longest river in the world is usually said to "
           "be the Nile.", ("nile", "amazon")),
    Prompt("Why do we have day and night?", "The Earth spins on its axis, so each side faces the Sun and "
           "then turns away from it.", ("spin", "rotat")),
    Prompt("How many wheels does a tricycle have?", "A tricycle has three wheels.", ("three", "3")),
    Prompt("What do pandas eat?", "Pandas eat mostly bamboo.", ("bamboo",)),
]  # fmt: skip
TRAIN_ARITHMETIC = [times(7, 8), times(6, 9), times(12, 4), times(9, 9), times(11, 3), times(8, 5),
                    times(15, 2), times(25, 4)]  # fmt: skip
TRAIN = TRAIN_CAPITALS + TRAIN_GENERAL + TRAIN_ARITHMETIC

# Held out: never asked before training, never rated, so never in any dataset.
HELDOUT = [
    capital("Mexico", "Mexico City"), capital("Ukraine", "Kyiv", "Kiev"), capital("Nepal", "Kathmandu"),
    capital("Iceland", "Reykjavik", "Reykjavík"), capital("New Zealand", "Wellington"),
    capital("Malaysia", "Kuala Lumpur"), capital("Qatar", "Doha"), capital("Jordan", "Amman"),
    capital("Ecuador", "Quito"), capital("Estonia", "Tallinn"), capital("Cuba", "Havana"),
    capital("Morocco", "Rabat"),
    Prompt("What is the largest animal on Earth?", "", ("blue whale",)),
    Prompt("How many strings does a standard guitar have?", "", ("six", "6")),
    Prompt("What gas do humans need to breathe?", "", ("oxygen",)),
    Prompt("How do fish breathe underwater?", "", ("gill",)),
    Prompt("What metal is liquid at room temperature?", "", ("mercury",)),
    Prompt("How many hours are in a day?", "", ("24", "twenty-four", "twenty four")),
    Prompt("Who invented the telephone?", "", ("bell",)),
    Prompt("What causes rust?", "", ("oxygen", "water", "moisture", "oxid")),
    Prompt("Why does the Moon change shape?", "", ("sun", "phase", "orbit", "light")),
    Prompt("What is an earthquake?", "", ("plate", "crust", "shak", "ground")),
    Prompt("Why do stars twinkle?", "", ("atmospher", "air")),
    Prompt("What do cows eat?", "", ("grass", "hay")),
]  # fmt: skip


# ------------------------------------------------------------------------------------------ the preference
_SENTENCE_END = re.compile(r"[.!?](?=\s|$)")


def one_sentence(text: str) -> bool:
    t = text.strip()
    return bool(t) and "\n" not in t and t[-1] in ".!?" and len(_SENTENCE_END.findall(t)) == 1


def matches_style(text: str) -> bool:
    """The users' preference: starts with "In short:" (once) and is one sentence."""
    return text.strip().startswith(STYLE) and text.count(STYLE) == 1 and one_sentence(text)


def first_sentence(text: str) -> str:
    match = _SENTENCE_END.search(text.strip())
    return text.strip()[: match.end()] if match else text.strip()


def mentions(text: str, keywords: Sequence[str]) -> bool:
    low = text.lower()
    return any(k.lower() in low for k in keywords)


def words(text: str) -> int:
    return len(text.split())


# ------------------------------------------------------------------------------------------ plumbing
class RequestFailed(RuntimeError):
    """A request to the server failed: the run is invalid."""


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


class Run:
    """The server, the official client and the admin's HTTP client."""

    def __init__(self, server: Any, max_tokens: int, eval_max_tokens: int) -> None:
        self.server = server
        self.client = OpenAI(base_url=f"{server.base_url}/v1", api_key="unused", max_retries=0, timeout=600)
        self.clients: dict[str, OpenAI] = {}  # per simulated user, with their API key
        self.keys: dict[str, str] = {}
        self.http = httpx.Client(base_url=server.base_url, timeout=120)
        self.admin = {"Authorization": f"Bearer {server.admin_token}"}
        self.max_tokens = max_tokens
        self.eval_max_tokens = eval_max_tokens
        self.requests = 0

    def close(self) -> None:
        for client in (self.client, *self.clients.values()):
            client.close()
        self.http.close()

    def add_user(self, name: str) -> None:
        """An account with an API key (`POST /admin/users`): the user's chats and ratings are theirs."""
        key = self.call("POST", "/admin/users", admin=True, json={"name": name})["api_key"]
        self.keys[name] = key
        self.clients[name] = OpenAI(
            base_url=f"{self.server.base_url}/v1", api_key=key, max_retries=0, timeout=600
        )

    def chat(
        self, question: str, user: str, *, model: str = "live", temperature: float = 0.7, max_tokens: int = 0
    ) -> tuple[str, str]:
        """(message id, answer) through the official client."""
        self.requests += 1
        try:
            reply = self.clients.get(user, self.client).chat.completions.create(
                model=model,
                messages=[{"role": "user", "content": question}],
                max_tokens=max_tokens or self.max_tokens,
                temperature=temperature,
                user=user,
            )
        except Exception as exc:
            raise RequestFailed(
                f"chat {question!r} as {user} on {model}: {type(exc).__name__}: {exc}"
            ) from exc
        return reply.id, reply.choices[0].message.content or ""

    def call(self, method: str, path: str, *, admin: bool = False, as_user: str = "", **kwargs: Any) -> Any:
        """An HTTP call as the admin, as a simulated user (their API key) or anonymous."""
        self.requests += 1
        headers = (
            self.admin if admin else {"Authorization": f"Bearer {self.keys[as_user]}"} if as_user else None
        )
        try:
            response = self.http.request(method, path, headers=headers, **kwargs)
        except httpx.HTTPError as exc:
            raise RequestFailed(f"{method} {path}: {type(exc).__name__}: {exc}") from exc
        if response.status_code >= 400:
            raise RequestFailed(f"{method} {path}: HTTP {response.status_code}: {response.text[:500]}")
        return response.json()


# ------------------------------------------------------------------------------------------ phase 2: users
@dataclass
class Outcome:
    prompt: Prompt
    rater: str
    answer: str
    verdict: str  # "up" | "down+correction"
    compare: str | None = None  # the A/B vote, when this prompt got one


def simulate_user(run: Run, index: int, prompt: Prompt, compare: bool) -> Outcome:
    rater = RATERS[index % len(RATERS)]
    message_id, answer = run.chat(prompt.question, rater)
    if matches_style(answer) and mentions(answer, prompt.keywords):
        body = {"message_id": message_id, "rating": "up", "user": rater}
        run.call("POST", "/v1/feedback", as_user=rater, json=body)
        outcome = Outcome(prompt, rater, answer, "up")
    else:
        body = {
            "message_id": message_id,
            "rating": "down",
            "tags": ["wrong_format"],
            "comment": 'Too long: answer in one sentence starting with "In short:".',
            "correction": f"{STYLE} {prompt.fact}",
            "user": rater,
        }
        run.call("POST", "/v1/feedback", as_user=rater, json=body)
        outcome = Outcome(prompt, rater, answer, "down+correction")
    if compare:
        # Another user regenerates: two answers to the same question, one A/B vote.
        other = RATERS[(index + 5) % len(RATERS)]
        (id_a, a), (id_b, b) = (run.chat(prompt.question, other, temperature=1.0) for _ in range(2))
        good_a, good_b = (matches_style(x) and mentions(x, prompt.keywords) for x in (a, b))
        if good_a != good_b:
            winner = "a" if good_a else "b"
        elif good_a:
            winner = "tie"
        elif abs(words(a) - words(b)) >= max(5, 0.2 * max(words(a), words(b))):
            winner = "a" if words(a) < words(b) else "b"  # neither is one sentence: the shorter is closer
        else:
            winner = "both_bad"
        body = {"message_ids": [id_a, id_b], "winner": winner, "user": other}
        run.call("POST", "/v1/feedback/compare", as_user=other, json=body)
        outcome.compare = winner
    return outcome


def collect_feedback(run: Run, prompts: Sequence[Prompt], compare_every: int, workers: int) -> list[Outcome]:
    outcomes: list[Outcome] = []
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [
            pool.submit(simulate_user, run, i, p, compare_every > 0 and i % compare_every == 0)
            for i, p in enumerate(prompts)
        ]
        for future in as_completed(futures):
            o = future.result()  # a failed request raises here
            outcomes.append(o)
            extra = f", A/B vote {o.compare}" if o.compare else ""
            log(
                f"  {len(outcomes):3d}/{len(prompts)} {o.rater} {o.prompt.question!r}: {o.verdict}{extra} "
                f"({words(o.answer)} words: {' '.join(o.answer.split())[:70]!r})"
            )
    log(f"users done: {len(outcomes)} prompts rated in {time.monotonic() - started:.0f} s")
    return outcomes


# ------------------------------------------------------------------------------------------ phase 3: train
def train(run: Run, config: dict[str, Any] | None, timeout_s: float) -> dict[str, Any]:
    body = {"config": config} if config else {}
    job_id = run.call("POST", "/admin/train", admin=True, json=body)["job_id"]
    log(f"job {job_id} started (config: {json.dumps(config) if config else 'product defaults'})")
    started = time.monotonic()
    last: tuple[Any, ...] = ()
    last_print = 0.0
    while True:
        job = run.call("GET", f"/admin/jobs/{job_id}", admin=True)
        state = (job["status"], job["phase"], job["step"])
        now = time.monotonic()
        if state != last and (now - last_print >= 10 or state[:2] != last[:2] or job["status"] != "running"):
            loss = f"{job['loss']:.3f}" if isinstance(job.get("loss"), int | float) else "-"
            log(
                f"  job {job['status']:<9} phase {job['phase'] or '-':<8} step {job['step'] or 0}/"
                f"{job['total_steps'] or '?'} loss {loss} ({now - started:.0f} s)"
            )
            last, last_print = state, now
        if job["status"] in ("succeeded", "failed", "cancelled", "not_enough_data"):
            job["wall_s"] = now - started
            return job
        if now - started > timeout_s:
            raise RequestFailed(f"job {job_id} still {job['status']} after {timeout_s:.0f} s")
        time.sleep(3)


def wait_for_gate(run: Run, version: str, timeout_s: float = 120) -> dict[str, Any]:
    """The server registers the version and its gate report a moment after the job ends."""
    deadline = time.monotonic() + timeout_s
    while True:
        listing = run.call("GET", "/admin/versions", admin=True)
        row = next((r for r in listing["data"] if r["id"] == version), None)
        if row is not None and row.get("gate") is not None:
            return row
        if time.monotonic() > deadline:
            raise RequestFailed(f"version {version} has no gate report after {timeout_s:.0f} s: {row}")
        time.sleep(2)


def print_gate(gate: dict[str, Any]) -> None:
    if gate.get("error"):
        print(f"gate could not run: {gate['error']}")
        return
    from training.evaluate import GateReport, format_report

    print(format_report(GateReport.from_dict(gate)))


def gate_summary(gate: dict[str, Any]) -> dict[str, Any]:
    metrics = {m["name"].strip(): m for m in gate.get("metrics", [])}
    return {
        "passed": gate.get("passed"),
        "failed": gate.get("failed", []),
        "preference": metrics.get("preference accuracy"),
        "criteria": {c["name"]: c["status"] for c in gate.get("criteria", [])},
    }


# ------------------------------------------------------------------------------------------ phase 6: measure
def measure(run: Run, prompts: Sequence[Prompt], model: str, workers: int) -> dict[str, Any]:
    def ask(i: int, p: Prompt) -> str:
        return run.chat(
            p.question, f"eval-{i % 4}", model=model, temperature=0.0, max_tokens=run.eval_max_tokens
        )[1]

    with ThreadPoolExecutor(max_workers=workers) as pool:
        answers = list(pool.map(lambda ip: ask(*ip), enumerate(prompts)))
    n = len(prompts)
    return {
        "answers": answers,
        "preference (In short: + one sentence)": sum(matches_style(a) for a in answers) / n,
        'starts with "In short:"': sum(a.strip().startswith(STYLE) for a in answers) / n,
        "one sentence": sum(one_sentence(a) for a in answers) / n,
        "key fact mentioned": sum(mentions(a, p.keywords) for a, p in zip(answers, prompts, strict=True)) / n,
        "key fact in the first sentence": sum(
            mentions(first_sentence(a), p.keywords) for a, p in zip(answers, prompts, strict=True)
        )
        / n,
        "mean words": statistics.mean(words(a) for a in answers),
        "distinct answers": len({" ".join(a.lower().split()) for a in answers}) / n,
    }


def print_table(
    before: dict[str, Any], after: dict[str, Any], n: int, before_name: str, after_name: str
) -> None:
    rows = [k for k in before if k != "answers"]
    width = max(len(k) for k in rows)
    print(
        f"\nheld-out prompts: {n} (greedy, max_tokens as set); before = {before_name}, after = {after_name}"
    )
    print(f"{'metric':<{width}} | {'before':>7} | {'after':>7}")
    print(f"{'-' * width}-|-{'-' * 7}-|-{'-' * 7}")
    for k in rows:
        fmt = (lambda v: f"{v:7.1f}") if k == "mean words" else (lambda v: f"{v:7.0%}")
        print(f"{k:<{width}} | {fmt(before[k])} | {fmt(after[k])}")


# ------------------------------------------------------------------------------------------ main
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="tiny random model, small counts (plumbing only)"
    )
    parser.add_argument("--force", action="store_true", help="promote even if the gate blocks the version")
    parser.add_argument("--data-dir", type=Path, help="default: a fresh temp dir (removed unless --keep)")
    parser.add_argument("--keep", action="store_true", help="keep the temp data dir and server log")
    parser.add_argument("--config", help="JobConfig overrides as JSON for POST /admin/train (default: none)")
    parser.add_argument("--train-prompts", type=int, help="how many training prompts (default 80, quick 20)")
    parser.add_argument("--workers", type=int, default=8, help="concurrent simulated users (default 8)")
    parser.add_argument("--server-threads", type=int, default=1, help="ASSISTANT_THREADS (0 = all cores)")
    parser.add_argument("--job-timeout", type=float, default=3600.0, help="seconds to wait for the job")
    args = parser.parse_args(argv)

    from tests.server import link_model_cache, start_server, stop_server

    started = time.monotonic()
    cache = ROOT / ".test-cache"
    if args.quick:
        from tests.helpers import build_tiny_model

        model_path: Path | None = build_tiny_model(cache / "tiny-llama")
        n_train, heldout, max_tokens, eval_tokens = 20, HELDOUT[:3] + HELDOUT[12:15], 16, 16
    else:
        from assistant.model import ensure_cache, resolve_source

        model_path = None  # the bundled model; its converted cache is linked into the data dir
        real_dir = ensure_cache(resolve_source(None), cache / "model-cache")
        n_train, heldout, max_tokens, eval_tokens = len(TRAIN), HELDOUT, 96, 128
    n_train = min(args.train_prompts or n_train, len(TRAIN))
    # Spread the kinds of question evenly when only a part of the list is used.
    prompts = (
        TRAIN if n_train == len(TRAIN) else [TRAIN[round(i * len(TRAIN) / n_train)] for i in range(n_train)]
    )
    force = args.force or args.quick
    fresh = args.data_dir is None
    root = Path(tempfile.mkdtemp(prefix="e2e-preference-")) if fresh else args.data_dir.resolve()
    data_dir = root / "data"
    if not args.quick:
        link_model_cache(data_dir, real_dir.parent)
    env = {
        "ASSISTANT_AUTO_PROMOTE": "false",  # the script promotes explicitly
        "ASSISTANT_CANARY_SHARE": "0",
        "ASSISTANT_SCHEDULE_ENABLED": "false",
        "ASSISTANT_REQUIRE_REVIEW": "false",
        "ASSISTANT_THREADS": str(args.server_threads),
    }
    config = json.loads(args.config) if args.config else None
    log(
        ("quick (tiny random model)" if args.quick else "real model SmolLM2-135M-Instruct")
        + f"; data {data_dir}"
    )
    log(f"cores {os.cpu_count()}, load average {os.getloadavg()[0]:.1f}")
    server = start_server(
        data_dir, model_path=model_path, env=env, admin_token="e2e-" + secrets.token_urlsafe(16)
    )
    log(f"server ready at {server.base_url} in {server.ready_s:.1f} s (log {server.log_path})")
    run = Run(server, max_tokens, eval_tokens)
    code = 1
    try:
        code = scenario(run, prompts, heldout, config, force, args)
    except RequestFailed as exc:
        log(f"FAILED: {exc}")
        tail = server.log()[-3000:]
        print(f"--- server log tail ---\n{tail}", flush=True)
        code = 1
    finally:
        run.close()
        stop_server(server)
        log(f"total wall time {time.monotonic() - started:.0f} s; {run.requests} requests; exit {code}")
        if fresh and not args.keep and code == 0:
            shutil.rmtree(root, ignore_errors=True)
        else:
            log(f"data dir kept: {root}")
    return code


def scenario(
    run: Run,
    prompts: Sequence[Prompt],
    heldout: Sequence[Prompt],
    config: dict[str, Any] | None,
    force: bool,
    args: argparse.Namespace,
) -> int:
    models = run.client.models.list()
    live_before = next(m for m in models.data if m.id == "live")
    before_model = getattr(live_before, "version", None) or "base"
    if before_model in (None, "", "base"):
        before_model = "base"
    log(f"models: {[m.id for m in models.data]}; live before training: {before_model}")

    # 2. Users get accounts, chat and rate.
    for name in RATERS:
        run.add_user(name)
    log(f"accounts with API keys: {', '.join(RATERS)}")
    log(f"users: {len(RATERS)} raters chat and rate {len(prompts)} training prompts (+ A/B votes every 5th)")
    outcomes = collect_feedback(run, prompts, compare_every=5, workers=args.workers)
    ups = sum(o.verdict == "up" for o in outcomes)
    votes: dict[str, int] = {}
    for o in outcomes:
        if o.compare:
            votes[o.compare] = votes.get(o.compare, 0) + 1
    counts = run.call("GET", "/admin/feedback", admin=True, params={"limit": 1})["counts"]
    log(f"feedback: {ups} thumbs-up, {len(outcomes) - ups} thumbs-down with a correction, A/B votes {votes}")
    log(f"server's feedback counts: {json.dumps(counts)[:400]}")

    # 3. One job, defaults unless --config.
    job = train(run, config, args.job_timeout)
    manifest = run.server.data_dir / "jobs" / job["id"] / "datasets" / "manifest.json"
    if manifest.is_file():  # diagnostics only: what curation made of the feedback
        export = json.loads(manifest.read_text())
        log(f"curated datasets (job export): {export.get('counts')}")
    if job["status"] != "succeeded" or not job.get("version"):
        raise RequestFailed(f"job ended {job['status']}: {job.get('error')}")
    version = job["version"]
    log(f"job {job['id']} succeeded in {job['wall_s']:.0f} s: version {version}; waiting for its gate report")

    # 4. The gate report.
    row = wait_for_gate(run, version)
    gate = row["gate"]
    print("\n" + "=" * 100)
    print_gate(gate)
    print("=" * 100 + "\n", flush=True)
    summary = gate_summary(gate)
    log(f"gate {'PASSED' if row['gate_passed'] else 'BLOCKED'}: {json.dumps(summary)}")

    # 5. Promote.
    if not row["gate_passed"] and not force:
        log(
            f"NOT PROMOTED: the gate blocked {version} "
            f"(failed: {', '.join(summary['failed']) or gate.get('error')})."
            " Rerun with --force to promote it anyway."
        )
        return 2
    promoted = run.call(
        "POST", f"/admin/versions/{version}/promote", admin=True, json={"force": not row["gate_passed"]}
    )
    log(f"promoted {version} (forced: {promoted.get('forced')}); live is now {promoted.get('live')}")
    if promoted.get("live") != version:
        raise RequestFailed(f"promote answered live={promoted.get('live')}, expected {version}")

    # 6. Held-out prompts before (what was live before) and after (live = the promoted version).
    log(f"measuring {len(heldout)} held-out prompts on {before_model!r} and on 'live' (temperature 0)")
    before = measure(run, heldout, before_model, args.workers)
    after = measure(run, heldout, "live", args.workers)
    print_table(before, after, len(heldout), before_model, f"live ({version})")
    print("\nexamples (before → after):")
    for p, a, b in list(zip(heldout, before["answers"], after["answers"], strict=True))[
        :: max(1, len(heldout) // 6)
    ]:
        print(
            f"  {p.question}\n    before: {' '.join(a.split())[:120]!r}"
            f"\n    after:  {' '.join(b.split())[:120]!r}"
        )
    print(flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
