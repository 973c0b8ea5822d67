"""Supervised fine-tuning with a LoRA (TRL `SFTTrainer`), plus the plumbing the DPO and KTO wrappers share.

    from training.config import LoraSettings, SFTSettings
    from training.sft import train_sft
    metrics = train_sft(model_dir, ["sft.jsonl"], out_dir, SFTSettings(), LoraSettings(), print)
    # the adapter is in out_dir / "adapter"; checkpoints in out_dir / "checkpoint-N" until it finishes

Rows are conversations {"messages": [..., {"role": "assistant", ...}]}. Each becomes prompt (everything
before the last message) and completion (the last, assistant message), so the loss covers the answer only:
TRL's `assistant_only_loss` fails with SmolLM2's template (FACTS.md), the prompt/completion format does not.
Run it in a process of its own (training/jobs.py does): it uses every torch thread it is given.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from training import TrainingCancelled
from training.config import LoraSettings, SFTSettings, StageSettings
from training.threads import ThreadBudget

ProgressFn = Callable[[dict[str, Any]], None]
PathLike = str | os.PathLike[str]
ADAPTER_DIR = "adapter"  # a stage's finished adapter, inside its out_dir


@dataclass
class StageControl:
    """How one stage fits into its job: cancel flag, pause between steps, job-wide step numbering."""

    should_stop: Callable[[], bool] | None = None
    pause_s: float = 0.0
    step_offset: int = 0  # steps of the job's earlier stages: progress counts steps across the whole job
    job_total_steps: int | None = None  # every stage's planned steps; None = this stage's only
    threads: ThreadBudget | None = None  # lets the server hand cores to or take them from a running job


class ProgressCallback(TrainerCallback):  # type: ignore[misc]
    """Reports each logged step through `progress` and stops training when `should_stop()` says so.

    Stopping sets `control.should_training_stop`: the Trainer finishes the current step and returns
    normally; the wrapper then raises TrainingCancelled instead of saving an adapter.
    """

    def __init__(self, phase: str, progress: ProgressFn | None, control: StageControl | None) -> None:
        self.phase = phase
        self.progress = progress
        self.control = control or StageControl()
        self.cancelled = False
        self.last: dict[str, Any] = {}
        self._started = time.monotonic()
        self.resumed_step = 0
        self._tokens0 = 0

    def _stop_requested(self) -> bool:
        return bool(self.control.should_stop and self.control.should_stop())

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        # Resumed runs start at the checkpoint's step; rates count this run's steps only.
        self._started = time.monotonic()
        self.resumed_step = int(state.global_step)
        self._tokens0 = state.num_input_tokens_seen or 0
        self._emit(state, {})
        if self._stop_requested():
            self.cancelled = True
            control.should_training_stop = True

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self._stop_requested():
            self.cancelled = True
            control.should_training_stop = True
            control.should_save = False  # a cancelled job leaves nothing behind to resume
            return
        if self.control.threads is not None:
            changed = self.control.threads.poll()
            if changed is not None:
                print(f"training with {changed} threads from step {state.global_step + 1}", flush=True)
        if self.control.pause_s > 0:
            time.sleep(self.control.pause_s)

    def on_log(
        self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        if logs and "loss" in logs:  # the end-of-training summary has train_loss, not loss
            self._emit(state, logs)

    def _emit(self, state: Any, logs: dict[str, Any]) -> None:
        stage_total = int(state.max_steps or 0)
        total = self.control.job_total_steps or stage_total
        step = self.control.step_offset + int(state.global_step)
        elapsed = time.monotonic() - self._started
        done = state.global_step - self.resumed_step
        tokens = (state.num_input_tokens_seen or 0) - self._tokens0
        eta = (total - step) * elapsed / done if done > 0 else None
        event = {
            "phase": self.phase,
            "step": step,
            "total_steps": total,
            "stage_step": int(state.global_step),
            "stage_total_steps": stage_total,
            "loss": _number(logs.get("loss")),
            "reward_accuracy": _number(logs.get("rewards/accuracies")),
            "reward_margin": _number(logs.get("rewards/margins")),
            "kl": _number(logs.get("kl")),
            "learning_rate": _number(logs.get("learning_rate")),
            "tokens_per_s": round(tokens / elapsed, 1) if done > 0 and elapsed > 0 else None,
            "eta_s": round(eta, 1) if eta is not None else None,
            "rss_mb": _rss_mb(),
        }
        self.last = event
        if self.progress is not None:
            self.progress(event)


def _rss_mb() -> int | None:
    """This process's resident memory (the job log shows it per step: memory is the budget that bites)."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // (1 << 20)
    except (OSError, ValueError, IndexError):
        return None


def _number(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def trainer_args(settings: StageSettings, out_dir: Path, steps: int) -> dict[str, Any]:
    """Keyword arguments every TRL config here needs; each line avoids a pitfall listed in FACTS.md."""
    return {
        "output_dir": str(out_dir),
        "use_cpu": True,  # bf16 is TRL's default and fails or crawls on CPU
        "bf16": False,
        "fp16": False,
        "report_to": [],
        "gradient_checkpointing": False,  # TRL turns it on by default; it only costs time at this size
        "activation_checkpointing": False,  # its new name in transformers 5 (the old one warns alone)
        "per_device_train_batch_size": settings.batch_size,
        "gradient_accumulation_steps": 1,
        "learning_rate": settings.learning_rate,
        "max_steps": steps,  # planned from the data size; epochs are implied
        "warmup_steps": settings.warmup_steps(steps),
        "lr_scheduler_type": "linear",
        "max_length": settings.max_length,
        "seed": settings.seed,
        "data_seed": settings.seed,
        "logging_steps": 1,
        "save_strategy": "steps",
        "save_steps": settings.save_steps,
        "save_total_limit": 1,  # the newest complete checkpoint is all a resume needs
        "disable_tqdm": True,
        "include_num_input_tokens_seen": "non_padding",
        "dataloader_num_workers": 0,
    }


def read_jsonl(paths: PathLike | Sequence[PathLike]) -> list[dict[str, Any]]:
    """Rows of one or more JSONL files; a bad line is reported with its file and line number."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    rows: list[dict[str, Any]] = []
    for path in paths:
        with open(path, encoding="utf-8") as fh:
            for number, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{path}:{number}: not valid JSON ({exc})") from None
                if not isinstance(row, dict):
                    raise ValueError(f"{path}:{number}: expected a JSON object")
                rows.append(row)
    return rows


def chat(messages: Any, where: str) -> list[dict[str, str]]:
    """A validated list of {"role", "content"} messages (extra keys dropped: Arrow needs one schema)."""
    if not isinstance(messages, list) or not messages:
        raise ValueError(f"{where}: expected a non-empty list of chat messages")
    out = []
    for message in messages:
        if not isinstance(message, dict) or not isinstance(message.get("content"), str):
            raise ValueError(f"{where}: every message needs a string 'content'")
        if message.get("role") not in ("system", "user", "assistant"):
            raise ValueError(f"{where}: unknown role {message.get('role')!r}")
        out.append({"role": message["role"], "content": message["content"]})
    return out


def sft_rows(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """{"messages"} (or {"prompt", "completion"}) rows → TRL prompt/completion rows."""
    out = []
    for index, row in enumerate(rows):
        where = f"SFT row {index}"
        if "messages" in row:
            messages = chat(row["messages"], where)
            prompt, completion = messages[:-1], messages[-1:]
        else:
            prompt, completion = chat(row.get("prompt"), where), chat(row.get("completion"), where)
        if not prompt or completion[-1]["role"] != "assistant":
            raise ValueError(f"{where}: needs a prompt and must end with an assistant message")
        out.append({"prompt": prompt, "completion": completion})
    return out


def load_policy(model_dir: Path, lora: LoraSettings, init_adapter: PathLike | None) -> tuple[Any, Any]:
    """(model, peft_config): a fresh LoRA for the trainer to add, or an existing adapter made trainable."""
    from assistant.model import load_model

    model = load_model(Path(model_dir), "float32")
    model.config.use_cache = False  # no KV cache in training; silences a warning per step
    if init_adapter is None:
        return model, lora.to_peft()
    from peft import PeftModel

    return PeftModel.from_pretrained(model, str(init_adapter), is_trainable=True), None


def latest_checkpoint(out_dir: Path) -> Path | None:
    """The newest complete checkpoint: trainer_state.json is written last, so a save cut short has none."""
    if not out_dir.is_dir():
        return None
    complete = [
        p
        for p in out_dir.glob("checkpoint-*")
        if p.name[11:].isdigit() and (p / "trainer_state.json").is_file()
    ]
    return max(complete, key=lambda p: int(p.name[11:]), default=None)


def save_adapter(model: Any, target: Path) -> Path:
    """Save the trained ("default") adapter to `target` atomically (tmp dir + rename)."""
    tmp = target.with_name(f".tmp-{target.name}")
    shutil.rmtree(tmp, ignore_errors=True)
    # DPO/KTO add a frozen "ref" copy next to "default"; only the trained one is the result.
    model.save_pretrained(str(tmp), selected_adapters=["default"], safe_serialization=True)
    shutil.rmtree(target, ignore_errors=True)
    os.rename(tmp, target)
    return target


def fit_fused_lm_head_to_cpu() -> None:
    """Make TRL 1.16's fused LM head score only the positions that have a loss when it runs on CPU.

    Without Triton, TRL scores every position (prompt and padding included) in [tokens x 32768] tiles, so
    it spends ~25 % of an SFT step on positions without a loss and makes 1-2 GB transients (measured on
    SmolLM2-135M, batch 8: 4.3 GB peak RSS, 3.4 GB with this). Scoring only labelled positions is what TRL
    does on GPUs; the loss is identical. Both names are private to trl==1.16 (pinned), hence the guard.
    """
    try:
        import trl.trainer.utils as trl_utils
    except ImportError:
        return
    if hasattr(trl_utils, "_use_triton") and hasattr(trl_utils, "_CHUNKED_LOGPROB_CHUNK_SIZE"):
        # Only decides "compact" here; the kernels module keeps its own copy and still picks torch tiles.
        trl_utils._use_triton = lambda device: True
        trl_utils._CHUNKED_LOGPROB_CHUNK_SIZE = 8192  # smaller vocab tiles: smaller transients, same result


def run_trainer(
    trainer: Any, callback: ProgressCallback, out_dir: Path, resume_from: PathLike | None, items: int
) -> dict[str, Any]:
    """Train, save the adapter to out_dir/adapter, and return the stage's metrics."""
    fit_fused_lm_head_to_cpu()
    started = time.monotonic()
    resume = str(resume_from) if resume_from is not None else None
    output = trainer.train(resume_from_checkpoint=resume)
    if callback.cancelled:
        raise TrainingCancelled(f"{callback.phase} cancelled at step {trainer.state.global_step}")
    adapter = save_adapter(trainer.model, out_dir / ADAPTER_DIR)
    wall = time.monotonic() - started
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    steps = int(trainer.state.global_step)
    metrics: dict[str, Any] = {
        "stage": callback.phase,
        "items": items,
        "steps": steps,
        "resumed_from_step": callback.resumed_step or None,
        "train_loss": _number(output.training_loss),
        "first_loss": _number(losses[0]) if losses else None,
        "final_loss": _number(losses[-1]) if losses else None,
        "runtime_s": round(wall, 2),
        "steps_per_s": round((steps - callback.resumed_step) / wall, 4) if wall > 0 else None,
        "tokens_per_s": callback.last.get("tokens_per_s"),
        "adapter_dir": str(adapter),
    }
    for key in ("rewards/accuracies", "rewards/margins", "rewards/chosen", "rewards/rejected", "kl"):
        values = [entry[key] for entry in trainer.state.log_history if key in entry]
        if values:
            metrics[key.replace("rewards/", "reward_")] = _number(values[-1])
    return metrics


def train_sft(
    model_dir: PathLike,
    dataset_paths: PathLike | Sequence[PathLike],
    out_dir: PathLike,
    settings: SFTSettings,
    lora: LoraSettings,
    progress_cb: ProgressFn | None = None,
    resume_from: PathLike | None = None,
    init_adapter: PathLike | None = None,
    *,
    control: StageControl | None = None,
) -> dict[str, Any]:
    """SFT a LoRA on the conversations in `dataset_paths`; returns metrics (adapter: out_dir/adapter)."""
    from trl import SFTConfig, SFTTrainer

    return train_stage(
        "sft",
        sft_rows(read_jsonl(dataset_paths)),
        model_dir,
        out_dir,
        settings,
        lora,
        trainer_cls=SFTTrainer,
        config_cls=SFTConfig,
        config_kwargs={
            "completion_only_loss": True,
            "packing": False,  # packing would let one answer's loss see another conversation
            # batches of similar length: ~10 % less padding to compute
            "train_sampling_strategy": "group_by_length",
        },
        progress_cb=progress_cb,
        resume_from=resume_from,
        init_adapter=init_adapter,
        control=control,
    )


def train_stage(
    phase: str,
    rows: list[dict[str, Any]],
    model_dir: PathLike,
    out_dir: PathLike,
    settings: StageSettings,
    lora: LoraSettings,
    *,
    trainer_cls: Any,
    config_cls: Any,
    config_kwargs: dict[str, Any],
    trainer_kwargs: dict[str, Any] | None = None,
    progress_cb: ProgressFn | None = None,
    resume_from: PathLike | None = None,
    init_adapter: PathLike | None = None,
    control: StageControl | None = None,
) -> dict[str, Any]:
    """What SFT, DPO and KTO share: tokenizer, policy (+ LoRA), TRL config, progress callback, training,
    saving the adapter. `config_kwargs` / `trainer_kwargs` carry each stage's own options."""
    from datasets import Dataset

    from assistant.model import load_tokenizer

    if not rows:
        raise ValueError(f"no {phase.upper()} rows in the dataset")
    out = Path(out_dir)
    steps = settings.planned_steps(len(rows))
    tokenizer = load_tokenizer(Path(model_dir))
    model, peft_config = load_policy(Path(model_dir), lora, init_adapter)
    args = config_cls(**trainer_args(settings, out, steps), **config_kwargs)
    callback = ProgressCallback(phase, progress_cb, control)
    trainer = trainer_cls(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=[callback],
        **(trainer_kwargs or {}),
    )
    return run_trainer(trainer, callback, out, resume_from, len(rows))
