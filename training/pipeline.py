"""One training job, in-process: SFT → DPO (or KTO) → a new immutable adapter version.

    from training.config import JobConfig
    from training.pipeline import run_pipeline
    result = run_pipeline(job_dir, model_dir, datasets_dir, JobConfig(), print, adapters_dir=adapters)
    result["version"]   # "v0003": adapters/v0003/ holds the adapter's safetensors + config and manifest.json

`datasets_dir` holds the curated export (feedback/export.py): sft.jsonl {"messages"}, dpo.jsonl
{"prompt", "chosen", "rejected"}, kto.jsonl {"prompt", "completion", "label"} and manifest.json with
`dataset_hash`. Stages: SFT on sft.jsonl mixed with the shipped instruction set (so feedback does not erase
instruction following), then DPO when there are enough pairs, else KTO when there are enough thumbs. Each
stage checkpoints into `job_dir`; calling run_pipeline again on the same job_dir resumes where it stopped.
training/jobs.py runs this in a subprocess; call it directly only in tests and scripts.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import hashlib
import json
import os
import random
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from training import NotEnoughDataError, TrainingCancelled
from training.config import JobConfig

ProgressFn = Callable[[dict[str, Any]], None]
INSTRUCTIONS_PATH = Path(__file__).parent / "data" / "instructions.jsonl"
DATASET_FILES = {"sft": "sft.jsonl", "dpo": "dpo.jsonl", "kto": "kto.jsonl"}
ADAPTER_FILES = ("adapter_model.safetensors", "adapter_config.json")
STAGE_DIRS = ("datasets", "datasets.tmp", "data", "sft", "dpo", "kto")  # a job's outputs, bar its log
THREADS_FILE = "threads"  # written by JobManager.set_threads, read by the job between steps
VERSION_RE = re.compile(r"^v(\d{4,})$")


def utc_now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def sha256_file(path: Path) -> str:
    from assistant.model import sha256_file as _sha256

    return _sha256(path)


def count_lines(path: Path) -> int:
    if not path.is_file():
        return 0
    with path.open(encoding="utf-8") as fh:
        return sum(1 for line in fh if line.strip())


def dataset_counts(datasets_dir: Path) -> dict[str, int]:
    """Training items per kind in an export; a missing file counts as none."""
    return {kind: count_lines(datasets_dir / name) for kind, name in DATASET_FILES.items()}


def plan_stages(counts: dict[str, int], config: JobConfig) -> list[str]:
    """The stages this data supports, in order; NotEnoughDataError when it supports none."""
    stages = []
    if counts.get("sft", 0) >= config.min_sft_items:
        stages.append("sft")
    if config.preference in ("auto", "dpo") and counts.get("dpo", 0) >= config.min_pref_items:
        stages.append("dpo")
    elif config.preference in ("auto", "kto") and counts.get("kto", 0) >= config.min_kto_items:
        stages.append("kto")
    if not stages:
        raise NotEnoughDataError(
            counts, {"sft": config.min_sft_items, "dpo": config.min_pref_items, "kto": config.min_kto_items}
        )
    return stages


def dataset_hash(datasets_dir: Path) -> str:
    """The export's own hash (manifest.json), else a hash of its training files."""
    manifest = datasets_dir / "manifest.json"
    if manifest.is_file():
        value = json.loads(manifest.read_text()).get("dataset_hash")
        if value:
            return str(value)
    digest = hashlib.sha256()
    for name in sorted(DATASET_FILES.values()):
        path = datasets_dir / name
        digest.update(f"{name}:{sha256_file(path) if path.is_file() else '-'}\n".encode())
    return digest.hexdigest()


def build_sft_mix(
    sft_path: Path, out_path: Path, config: JobConfig, instructions: Path = INSTRUCTIONS_PATH
) -> dict[str, int]:
    """Write feedback SFT rows plus a seeded sample of shipped instructions; returns both counts.

    instruction_mix_ratio is the instructions' share of the result: r = 0.25 adds one instruction per
    three feedback rows.
    """
    from training.sft import read_jsonl

    feedback = [{"messages": row["messages"]} if "messages" in row else row for row in read_jsonl(sft_path)]
    ratio = config.instruction_mix_ratio
    shipped = read_jsonl(instructions) if ratio > 0 and instructions.is_file() else []
    wanted = round(len(feedback) * ratio / (1 - ratio))
    mix = random.Random(config.sft.seed).sample(shipped, min(wanted, len(shipped)))
    # Only the conversation: extra keys such as "category" would break the Arrow schema of the mix.
    rows = feedback + [{"messages": row["messages"]} for row in mix]
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(tmp, out_path)
    return {"feedback": len(feedback), "instructions": len(mix)}


def discard_outputs(job_dir: Path, adapters_dir: Path) -> None:
    """Remove what a cancelled job wrote (checkpoints, stage adapters, a half-published version).

    The log stays: it says what happened.
    """
    for name in STAGE_DIRS:
        shutil.rmtree(job_dir / name, ignore_errors=True)
    (job_dir / "result.json").unlink(missing_ok=True)
    if adapters_dir.is_dir():
        for tmp in adapters_dir.glob(f".tmp-{job_dir.name}*"):
            shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def _versions_lock(adapters_dir: Path) -> Iterator[None]:
    """Serialise version-id allocation across processes (flock on adapters/.lock)."""
    adapters_dir.mkdir(parents=True, exist_ok=True)
    with open(adapters_dir / ".lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def version_ids(adapters_dir: Path) -> list[str]:
    """Published version ids, oldest first."""
    if not adapters_dir.is_dir():
        return []
    found = [p.name for p in adapters_dir.iterdir() if p.is_dir() and VERSION_RE.match(p.name)]
    return sorted(found, key=lambda name: int(name[1:]))


def next_version_id(adapters_dir: Path) -> str:
    ids = version_ids(adapters_dir)
    return f"v{int(ids[-1][1:]) + 1 if ids else 1:04d}"


def publish_version(staged: Path, adapters_dir: Path, manifest: dict[str, Any]) -> str:
    """Give `staged` (a dir in adapters_dir) the next version id, write its manifest, rename it into place.

    The rename is atomic and the id is allocated under a lock, so a reader never sees a half-written version
    and no existing version is ever overwritten.
    """
    with _versions_lock(adapters_dir):
        version = next_version_id(adapters_dir)
        target = adapters_dir / version
        if target.exists():  # only possible if someone bypassed the lock: refuse rather than overwrite
            raise FileExistsError(f"{target} already exists; not overwriting an adapter version")
        manifest = {**manifest, "id": version}
        (staged / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        os.rename(staged, target)
    return version


def published_by(adapters_dir: Path, job_id: str) -> str | None:
    """The version a job already published (a resume after a crash must not publish a second one)."""
    for version in version_ids(adapters_dir):
        manifest = adapters_dir / version / "manifest.json"
        with contextlib.suppress(OSError, ValueError):
            if json.loads(manifest.read_text()).get("job_id") == job_id:
                return version
    return None


def release_memory() -> None:
    """Free a finished stage's model and trainer (reference cycles) and hand the heap back to the OS."""
    import ctypes
    import gc

    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _library_versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {}
    for name in ("torch", "transformers", "peft", "trl"):
        with contextlib.suppress(md.PackageNotFoundError):
            out[name] = md.version(name)
    return out


def _stage(
    name: str,
    job_dir: Path,
    train: Callable[..., dict[str, Any]],
    **kwargs: Any,
) -> dict[str, Any]:
    """Run one stage unless a previous run of this job finished it; clean its checkpoints when done."""
    from training.sft import ADAPTER_DIR, latest_checkpoint

    out_dir = job_dir / name
    metrics_path = out_dir / "metrics.json"
    if metrics_path.is_file() and (out_dir / ADAPTER_DIR / ADAPTER_FILES[0]).is_file():
        return dict(json.loads(metrics_path.read_text()), skipped=True)
    metrics = train(out_dir=out_dir, resume_from=latest_checkpoint(out_dir), **kwargs)
    metrics_path.write_text(json.dumps(metrics, indent=2))
    for checkpoint in out_dir.glob("checkpoint-*"):  # optimizer states: only useful until the stage is done
        shutil.rmtree(checkpoint, ignore_errors=True)
    return metrics


def run_pipeline(
    job_dir: Path,
    model_dir: Path,
    datasets_dir: Path,
    config: JobConfig,
    progress: ProgressFn | None = None,
    *,
    adapters_dir: Path,
    should_stop: Callable[[], bool] | None = None,
    parent: str | None = None,
    instructions_path: Path = INSTRUCTIONS_PATH,
) -> dict[str, Any]:
    """Train and publish one adapter version; returns {"version", "stages", "counts", "metrics", ...}.

    Raises NotEnoughDataError before loading anything heavy when the data supports no stage, and
    TrainingCancelled when `should_stop()` turns true (the caller discards the partial output).
    `parent` is recorded as the new version's parent; with config.init_from_parent training starts from it.
    """
    job_dir, model_dir, datasets_dir, adapters_dir = map(
        Path, (job_dir, model_dir, datasets_dir, adapters_dir)
    )
    job_id = job_dir.name
    emit = progress or (lambda event: None)
    stop = should_stop or (lambda: False)

    def check_stop(where: str) -> None:
        if stop():
            raise TrainingCancelled(f"cancelled {where}")

    result_path = job_dir / "result.json"
    if result_path.is_file():  # resumed after it had already finished
        return dict(json.loads(result_path.read_text()))

    counts = dataset_counts(datasets_dir)
    stages = plan_stages(counts, config)
    job_dir.mkdir(parents=True, exist_ok=True)
    data: dict[str, Any] = {"counts": counts, "stages": stages, "datasets_dir": str(datasets_dir)}
    sft_train = job_dir / "data" / "sft_train.jsonl"
    if "sft" in stages:
        data["sft_mix"] = build_sft_mix(
            datasets_dir / DATASET_FILES["sft"], sft_train, config, instructions_path
        )
    stage_items = {
        "sft": sum(data.get("sft_mix", {}).values()),
        "dpo": counts["dpo"],
        "kto": counts["kto"],
    }
    stage_steps = {s: getattr(config, s).planned_steps(stage_items[s]) for s in stages}
    total = sum(stage_steps.values())
    data["planned_steps"] = stage_steps
    emit({"phase": "prepare", "step": 0, "total_steps": total})
    check_stop("before training")

    from training.sft import ADAPTER_DIR, StageControl
    from training.threads import ThreadBudget, apply_threads, resolve_threads

    threads = ThreadBudget(job_dir / THREADS_FILE, resolve_threads(config.threads))
    apply_threads(threads.threads)
    threads.poll()  # the server may have changed the budget before we started
    print(f"training with {threads.threads} threads", flush=True)
    parent_dir = adapters_dir / parent if parent and config.init_from_parent else None
    if parent_dir is not None and not (parent_dir / ADAPTER_FILES[0]).is_file():
        raise FileNotFoundError(f"parent version {parent} has no adapter at {parent_dir}")
    init_adapter: Path | None = parent_dir
    metrics: dict[str, Any] = {}
    offset = 0
    for stage in stages:
        control = StageControl(
            should_stop=stop,
            pause_s=config.step_pause_s,
            step_offset=offset,
            job_total_steps=total,
            threads=threads,
        )
        common = {
            "model_dir": model_dir,
            "settings": getattr(config, stage),
            "lora": config.lora,
            "progress_cb": emit,
            "init_adapter": init_adapter,
            "control": control,
        }
        if stage == "sft":
            from training.sft import train_sft

            metrics[stage] = _stage(stage, job_dir, train_sft, dataset_paths=sft_train, **common)
        elif stage == "dpo":
            from training.dpo import train_dpo

            metrics[stage] = _stage(
                stage, job_dir, train_dpo, dataset_paths=datasets_dir / "dpo.jsonl", **common
            )
        else:
            from training.kto import train_kto

            metrics[stage] = _stage(
                stage, job_dir, train_kto, dataset_paths=datasets_dir / "kto.jsonl", **common
            )
        init_adapter = job_dir / stage / ADAPTER_DIR
        offset += stage_steps[stage]
        release_memory()  # the next stage loads its own model: don't hold two
        check_stop(f"after {stage}")

    emit({"phase": "save", "step": total, "total_steps": total})
    version = published_by(adapters_dir, job_id)
    if version is None:
        version = _publish(
            job_dir, model_dir, datasets_dir, adapters_dir, config, init_adapter, data, metrics, parent
        )
    result = {
        "version": version,
        "parent": parent,
        "stages": stages,
        "counts": counts,
        "planned_steps": stage_steps,
        "metrics": metrics,
    }
    tmp = result_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2))
    os.replace(tmp, result_path)
    return result


def _publish(
    job_dir: Path,
    model_dir: Path,
    datasets_dir: Path,
    adapters_dir: Path,
    config: JobConfig,
    adapter: Path | None,
    data: dict[str, Any],
    metrics: dict[str, Any],
    parent: str | None,
) -> str:
    from assistant.model import base_model_info

    assert adapter is not None  # plan_stages guarantees at least one stage
    base = base_model_info(model_dir)
    staged = adapters_dir / f".tmp-{job_dir.name}"
    shutil.rmtree(staged, ignore_errors=True)
    staged.mkdir(parents=True)
    for name in ADAPTER_FILES:
        shutil.copy2(adapter / name, staged / name)
    # PEFT records the training machine's model path; the id travels, the path does not.
    adapter_config = json.loads((staged / "adapter_config.json").read_text())
    adapter_config["base_model_name_or_path"] = base["model_id"]
    (staged / "adapter_config.json").write_text(json.dumps(adapter_config, indent=2, sort_keys=True) + "\n")
    train_files = {"sft_train.jsonl": job_dir / "data" / "sft_train.jsonl"}
    train_files.update({name: datasets_dir / name for name in ("dpo.jsonl", "kto.jsonl")})
    manifest = {
        "parent": parent,
        "job_id": job_dir.name,
        "format": "peft-lora",
        "base_model_id": base["model_id"],
        "base_hash": base["base_hash"],
        "dataset_hash": dataset_hash(datasets_dir),
        "data": {
            **{k: v for k, v in data.items() if k != "datasets_dir"},
            "train_file_sha256": {
                name: sha256_file(path) for name, path in train_files.items() if path.is_file()
            },
        },
        "configs": config.to_dict(),
        "metrics": {
            stage: {k: v for k, v in m.items() if k != "adapter_dir"} for stage, m in metrics.items()
        },
        "libraries": _library_versions(),
        "created_at": utc_now(),
        "files": {name: sha256_file(staged / name) for name in ADAPTER_FILES},
    }
    return publish_version(staged, adapters_dir, manifest)
