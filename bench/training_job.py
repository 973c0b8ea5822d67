"""Benchmark one training job on the real model: wall time, peak RSS, steps/s, how far behaviour moved.

    .venv/bin/python bench/training_job.py            # ~200 curated items, default JobConfig, then an eval
    .venv/bin/python bench/training_job.py --no-eval --config '{"sft": {"max_steps": 40}}'
    .venv/bin/python bench/training_job.py --no-eval --chat-probe   # chat decode speed during the job

It writes synthetic feedback into a fresh database: users correct answers so that every correction teaches one
consistent style (a one-sentence answer that starts with "In short:"), plus a few thumbs-up. The job curates
and exports that feedback itself, trains SFT → DPO through JobManager (a real subprocess), and publishes a
version. Then base and new version answer held-out questions greedily: unseen capitals (style + correct
capital) and unseen general questions (style only: does the style transfer?). Goal on 2 cores: ≤ 5 min wall,
≤ 4 GB RSS, behaviour clearly moved, answers still correct.

--chat-probe serves chats from an engine in this process while the job trains, as the server does: the
engine on `serving_threads_during_training` (1) thread, the job on the remaining cores at nice 10. It
prints decode tokens/s of greedy answers idle (before the job) and during it, and their ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from assistant.settings import Settings
from training.config import JobConfig
from training.jobs import TERMINAL, JobManager

STYLE = "In short:"
CAPITALS = [
    ("France", "Paris"), ("Germany", "Berlin"), ("Italy", "Rome"), ("Spain", "Madrid"),
    ("Portugal", "Lisbon"), ("Japan", "Tokyo"), ("China", "Beijing"), ("India", "New Delhi"),
    ("Canada", "Ottawa"),
    ("Australia", "Canberra"), ("Argentina", "Buenos Aires"), ("Egypt", "Cairo"), ("Kenya", "Nairobi"),
    ("Russia", "Moscow"), ("Norway", "Oslo"), ("Sweden", "Stockholm"), ("Finland", "Helsinki"),
    ("Denmark", "Copenhagen"), ("Poland", "Warsaw"), ("Greece", "Athens"), ("Turkey", "Ankara"),
    ("Ireland", "Dublin"), ("Belgium", "Brussels"), ("Austria", "Vienna"), ("Hungary", "Budapest"),
    ("the Czech Republic", "Prague"), ("Romania", "Bucharest"), ("Bulgaria", "Sofia"), ("Serbia", "Belgrade"),
    ("Croatia", "Zagreb"), ("Iran", "Tehran"), ("Iraq", "Baghdad"), ("Saudi Arabia", "Riyadh"),
    ("Thailand", "Bangkok"), ("Vietnam", "Hanoi"), ("Indonesia", "Jakarta"), ("the Philippines", "Manila"),
    ("South Korea", "Seoul"), ("Peru", "Lima"), ("Chile", "Santiago"), ("Venezuela", "Caracas"),
    ("Cuba", "Havana"), ("Morocco", "Rabat"), ("Ghana", "Accra"),
]  # fmt: skip
HELDOUT_CAPITALS = [
    ("Mexico", "Mexico City"), ("Ukraine", "Kyiv"), ("Nepal", "Kathmandu"), ("Iceland", "Reykjavik"),
    ("New Zealand", "Wellington"), ("Malaysia", "Kuala Lumpur"), ("Qatar", "Doha"), ("Jordan", "Amman"),
    ("Ecuador", "Quito"), ("Estonia", "Tallinn"), ("Latvia", "Riga"), ("Senegal", "Dakar"),
]  # fmt: skip
SPELLINGS = {"Kyiv": ("Kiev",)}  # older spellings count as correct
GENERAL = [
    ("Why do we have seasons?", "the tilt of the Earth's axis changes how directly sunlight reaches each "
     "half of the planet during the year."),
    ("Why is the sky blue?", "air scatters blue sunlight more than red light, so blue reaches our eyes "
     "from every direction."),
    ("How do plants make food?", "they use sunlight, water and carbon dioxide to make sugar, a process "
     "called photosynthesis."),
    ("What causes tides?", "the Moon's gravity pulls on the oceans, raising the water on the sides of the "
     "Earth facing toward and away from it."),
    ("Why does ice float?", "water expands when it freezes, so ice is less dense than liquid water."),
    ("What is a leap year?", "a year with 366 days, adding February 29 to keep the calendar in step with "
     "the Earth's orbit."),
    ("How does a rainbow form?", "raindrops bend and reflect sunlight, splitting it into its colours."),
    ("What do bees do for flowers?", "they carry pollen between flowers, which lets plants make seeds."),
    ("Why do we need sleep?", "sleep lets the body repair itself and the brain store memories."),
    ("What is a volcano?", "an opening in the Earth's crust where molten rock, ash and gas escape."),
    ("How do vaccines work?", "they train the immune system to recognise a germ without the disease."),
    ("What makes thunder?", "lightning heats the air so fast that it expands with a loud bang."),
    ("Why do leaves change colour in autumn?", "trees stop making green chlorophyll, revealing the yellow "
     "and red pigments underneath."),
    ("What is gravity?", "the force that pulls masses toward each other, keeping us on the ground."),
    ("How does a compass work?", "its magnetised needle lines up with the Earth's magnetic field and points "
     "north."),
    ("Why is the ocean salty?", "rivers carry dissolved minerals into the sea, and evaporation leaves the "
     "salt behind."),
]  # fmt: skip
HELDOUT_GENERAL = [
    "Why do cats purr?", "How do airplanes stay in the air?", "What causes wind?", "Why do stars twinkle?",
    "How do fish breathe underwater?", "What is an earthquake?", "Why do we sneeze?", "How is glass made?",
    "What causes rust?", "Why does the Moon change shape?",
]  # fmt: skip
ARITHMETIC = [(7, 8), (6, 9), (12, 4), (9, 9), (11, 3), (8, 5)]
RATERS = [f"rater{i}" for i in range(8)]  # curation caps each rater's share of the data at 20 %


def capital_question(country: str) -> str:
    return f"What is the capital of {country}?"


def feedback_plan() -> list[tuple[str, str, str]]:
    """(question, the answer the model gave, the user's correction) for every correction."""
    plan = []
    for country, capital in CAPITALS:
        plan.append(
            (
                capital_question(country),
                f"The capital of {country} is {capital}. {capital} is known for its long history, its "
                "culture and the many famous landmarks that attract visitors from around the world.",
                f"{STYLE} {capital} is the capital of {country}.",
            )
        )
    for question, fact in GENERAL:
        plan.append(
            (
                question,
                f"That is a great question! There are many factors involved. To put it simply, {fact} "
                "Scientists have studied this for a long time.",
                f"{STYLE} {fact[0].upper()}{fact[1:]}",
            )
        )
    for a, b in ARITHMETIC:
        plan.append(
            (
                f"What is {a} times {b}?",
                f"Let me think about it step by step. {a} times {b} means adding {a} to itself {b} times, "
                f"which equals {a * b}.",
                f"{STYLE} {a} times {b} is {a * b}.",
            )
        )
    return plan


def seed_feedback(db_path: Path) -> dict[str, int]:
    from feedback.store import Store

    plan = feedback_plan()
    with Store(db_path, synchronous="NORMAL") as store:
        for i, (question, answer, correction) in enumerate(plan):
            rater = RATERS[i % len(RATERS)]
            conversation = store.create_conversation(rater)
            asked = store.record_message(conversation_id=conversation, role="user", content=question)
            prompt = [{"role": "user", "content": question}]
            judged = store.record_message(
                conversation_id=conversation, role="assistant", content=answer, parent_id=asked, prompt=prompt
            )
            store.add_rating(message_id=judged, rater=rater, rating="down", correction=correction)
        # Some answers already had the style and got a thumbs-up from another rater.
        for i, (question, _, correction) in enumerate(plan[:: len(plan) // 10][:10]):
            rater = RATERS[(i + 3) % len(RATERS)]
            conversation = store.create_conversation(rater)
            asked = store.record_message(conversation_id=conversation, role="user", content=question + " ")
            liked = store.record_message(
                conversation_id=conversation,
                role="assistant",
                content=correction,
                parent_id=asked,
                prompt=[{"role": "user", "content": question + " "}],
            )
            store.add_rating(message_id=liked, rater=rater, rating="up")
    return {"corrections": len(plan), "thumbs_up": 10}


def read_peak_rss_kb(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def read_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of a live process: unlike wall time, barely changed by other load."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class ChatProbe:
    """Greedy chats on a real Engine, one after another, measuring decode tokens/s (after the first token)."""

    QUESTIONS = ("Explain how a bicycle works.", "Describe the water cycle.", "How do computers store data?")

    def __init__(self, model_dir: Path, threads: int = 1, max_tokens: int = 64) -> None:
        from assistant.engine import Engine, SamplingParams
        from assistant.model import load_model, load_tokenizer

        self.params = SamplingParams(max_tokens=max_tokens, temperature=0.0)
        self.engine = Engine(
            load_model(model_dir), load_tokenizer(model_dir), model_id=model_dir.name, threads=threads
        ).start()
        self.rates: list[float] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._asked = 0

    def one(self) -> float:
        question = self.QUESTIONS[self._asked % len(self.QUESTIONS)]
        self._asked += 1
        handle = self.engine.submit([{"role": "user", "content": question}], self.params)
        handle.text()
        done = handle.result
        assert done.first_token_at is not None and done.finished_at is not None, done.error
        return max(0, done.completion_tokens - 1) / max(1e-6, done.finished_at - done.first_token_at)

    def idle_rate(self, n: int = 3) -> float:
        self.one()  # warm-up
        return statistics.median(self.one() for _ in range(n))

    def start(self) -> None:
        def loop() -> None:
            while not self._stop.is_set():
                self.rates.append(self.one())

        self._thread = threading.Thread(target=loop, daemon=True)
        self._thread.start()

    def stop(self) -> float | None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.engine.stop()
        return statistics.median(self.rates) if self.rates else None


def run_job(jobs: JobManager, config: JobConfig, probe: ChatProbe | None = None) -> dict[str, Any]:
    started = time.monotonic()
    job_id = jobs.start(config)
    if probe is not None:
        probe.start()
    peak_kb = 0
    cpu_s = 0.0
    last_id = 0
    phase_started: dict[str, float] = {}
    while True:
        job = jobs.get(job_id)
        if job["pid"]:
            peak_kb = max(peak_kb, read_peak_rss_kb(job["pid"]) or 0)
            cpu_s = max(cpu_s, read_cpu_s(job["pid"]) or 0.0)
        for row in jobs.progress(job_id, since_id=last_id):
            last_id = row["id"]
            phase_started.setdefault(row["phase"], time.monotonic() - started)
            if row["loss"] is not None and (row["step"] % 5 == 0 or row["step"] == row["total_steps"]):
                extra = ""
                if row["reward_accuracy"] is not None:
                    extra = f" reward_acc {row['reward_accuracy']:.2f} margin {row['reward_margin']:.3f}"
                at = time.monotonic() - started
                print(
                    f"  [{at:6.1f}s] {row['phase']} step {row['step']}/{row['total_steps']}"
                    f" loss {row['loss']:.3f}{extra} tok/s {row['tokens_per_s']} eta {row['eta_s']}s",
                    flush=True,
                )
        if job["status"] in TERMINAL:
            break
        jobs.reap()
        time.sleep(0.5)
    wall = time.monotonic() - started
    busy_rate = probe.stop() if probe is not None else None
    jobs.reap()  # polls the child, so RUSAGE_CHILDREN includes it
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "job": job,
        "wall_s": wall,
        "cpu_s": max(cpu_s, children.ru_utime + children.ru_stime),
        "peak_rss_kb": max(peak_kb, children.ru_maxrss),
        "phase_started_s": phase_started,
        "chat_rate_during": busy_rate,
        "chats_during": len(probe.rates) if probe is not None else 0,
    }


def evaluate(model_dir: Path, adapter_dir: Path | None, threads: int) -> dict[str, Any]:
    """Greedy answers to held-out questions: share in the style, share of capitals still right, length."""
    import torch

    from assistant.model import load_model, load_tokenizer

    torch.set_num_threads(threads)
    tokenizer = load_tokenizer(model_dir)
    tokenizer.padding_side = "left"
    model = load_model(model_dir)
    if adapter_dir is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter_dir))
    model.eval()
    questions = [capital_question(c) for c, _ in HELDOUT_CAPITALS] + HELDOUT_GENERAL
    prompts = [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True
        )
        for q in questions
    ]
    answers = []
    for start in range(0, len(prompts), 11):
        batch = tokenizer(prompts[start : start + 11], return_tensors="pt", padding=True)
        with torch.no_grad():
            out = model.generate(
                **batch, max_new_tokens=40, do_sample=False, pad_token_id=tokenizer.pad_token_id
            )
        answers += tokenizer.batch_decode(out[:, batch["input_ids"].shape[1] :], skip_special_tokens=True)
    answers = [a.strip() for a in answers]
    n_cap = len(HELDOUT_CAPITALS)
    styled = [a.startswith(STYLE) for a in answers]
    correct = [
        any(name.lower() in a.lower() for name in (cap, *SPELLINGS.get(cap, ())))
        for (_, cap), a in zip(HELDOUT_CAPITALS, answers, strict=False)
    ]
    return {
        "style_capitals": sum(styled[:n_cap]) / n_cap,
        "style_general": sum(styled[n_cap:]) / len(HELDOUT_GENERAL),
        "capital_correct": sum(correct) / n_cap,
        "mean_words": sum(len(a.split()) for a in answers) / len(answers),
        "examples": dict(
            zip(
                questions[:2] + questions[n_cap : n_cap + 2],
                answers[:2] + answers[n_cap : n_cap + 2],
                strict=False,
            )
        ),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", type=Path, help="default: a fresh temp dir")
    parser.add_argument("--model-dir", type=Path, help="default: the bundled SmolLM2 cache in .test-cache")
    parser.add_argument("--config", default="{}", help="JobConfig overrides as JSON")
    parser.add_argument("--threads", type=int, default=0, help="job threads (0 = all cores)")
    parser.add_argument("--nice", type=int, default=10, help="the job's niceness (JobManager default 10)")
    parser.add_argument("--no-eval", action="store_true", help="skip the before/after behaviour check")
    parser.add_argument(
        "--chat-probe", action="store_true", help="chat on 1 thread during the job; job threads = cores - 1"
    )
    args = parser.parse_args()

    from assistant.model import ensure_cache, resolve_source

    root = Path(__file__).resolve().parent.parent
    model_dir = args.model_dir or ensure_cache(resolve_source(None), root / ".test-cache" / "model-cache")
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="bench-training-"))
    settings = Settings(data_dir=data_dir)
    overrides = json.loads(args.config)
    probe = None
    if args.chat_probe:
        # What the server does while a job runs and people chat: it keeps one core, the job gets the rest.
        overrides.setdefault("threads", max(1, (os.cpu_count() or 1) - 1))
        probe = ChatProbe(model_dir)
        idle_rate = probe.idle_rate()
        print(f"chat decode idle: {idle_rate:.1f} tokens/s (1 thread)")
    overrides.setdefault("threads", args.threads)
    config = JobConfig.from_dict(overrides)
    print(f"model {model_dir}\ndata  {data_dir}\ncores {os.cpu_count()}, load average {os.getloadavg()}")

    jobs = JobManager(settings, model_dir, nice=args.nice)
    print("feedback:", seed_feedback(settings.db_path))
    outcome = run_job(jobs, config, probe)
    job = outcome["job"]
    print(f"\nstatus {job['status']} version {job['version']} error {job['error']}")
    if job["status"] != "succeeded":
        print(Path(job["log_path"]).read_text()[-4000:])
        return 1
    result = job["data"]["result"]
    export = json.loads((settings.jobs_dir / job["id"] / "datasets" / "manifest.json").read_text())
    curated = {k: v for k, v in export["counts"].items()}
    print(f"curated items {sum(curated.values())}: {curated}")
    print(f"planned steps {result['planned_steps']}")
    print(f"wall {outcome['wall_s']:.1f} s (phases began at {outcome['phase_started_s']})")
    print(
        f"CPU time of the job process {outcome['cpu_s']:.1f} s = {outcome['cpu_s'] / outcome['wall_s']:.2f} "
        f"cores on average (load average now {os.getloadavg()[0]:.1f})"
    )
    print(f"peak RSS of the job process {outcome['peak_rss_kb'] / 1024:.0f} MiB")
    if probe is not None and outcome["chat_rate_during"] is not None:
        during = outcome["chat_rate_during"]
        print(
            f"chat decode during training: {during:.1f} tokens/s over {outcome['chats_during']} answers = "
            f"{during / idle_rate:.2f} x idle ({idle_rate:.1f} tokens/s)"
        )
    for stage, metrics in result["metrics"].items():
        rewards = f", reward acc {metrics['reward_accuracies']}" if "reward_accuracies" in metrics else ""
        print(
            f"{stage}: {metrics['steps']} steps in {metrics['runtime_s']} s = {metrics['steps_per_s']} "
            f"steps/s, {metrics['tokens_per_s']} tokens/s, loss {metrics['first_loss']:.3f} → "
            f"{metrics['final_loss']:.3f}{rewards}"
        )
    if not args.no_eval:
        threads = max(1, os.cpu_count() or 1)
        before = evaluate(model_dir, None, threads)
        after = evaluate(model_dir, settings.adapters_dir / job["version"], threads)
        for name, value in (("base", before), (job["version"], after)):
            print(
                f"{name:>6}: style on unseen capitals {value['style_capitals']:.0%}, on unseen general "
                f"questions {value['style_general']:.0%}; capitals correct {value['capital_correct']:.0%}; "
                f"{value['mean_words']:.1f} words/answer"
            )
            for question, answer in value["examples"].items():
                print(f"        {question!r} → {answer[:110]!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
