"""KTO of a LoRA (TRL `KTOTrainer`) on single answers marked desirable (👍) or undesirable (👎).

    from training.config import KTOSettings, LoraSettings
    from training.kto import train_kto
    metrics = train_kto(model_dir, "kto.jsonl", out_dir, KTOSettings(), LoraSettings(), print)

Rows: {"prompt": [messages], "completion": [assistant message], "label": true|false}. It needs no pairs,
so it is the preference stage when users rated answers but seldom corrected or compared them. The reference
is the starting point: the base with the adapter disabled, or a frozen copy of `init_adapter`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from training.config import KTOSettings, LoraSettings
from training.sft import (
    PathLike,
    ProgressCallback,
    ProgressFn,
    StageControl,
    chat,
    load_policy,
    read_jsonl,
    run_trainer,
    trainer_args,
)


def kto_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for index, row in enumerate(rows):
        where = f"KTO row {index}"
        if not isinstance(row.get("label"), bool):
            raise ValueError(f"{where}: 'label' must be true (desirable) or false (undesirable)")
        out.append(
            {
                "prompt": chat(row.get("prompt"), f"{where} prompt"),
                "completion": chat(row.get("completion"), f"{where} completion"),
                "label": row["label"],
            }
        )
    return out


def train_kto(
    model_dir: PathLike,
    dataset_paths: PathLike | Sequence[PathLike],
    out_dir: PathLike,
    settings: KTOSettings,
    lora: LoraSettings,
    progress_cb: ProgressFn | None = None,
    resume_from: PathLike | None = None,
    init_adapter: PathLike | None = None,
    *,
    control: StageControl | None = None,
) -> dict[str, Any]:
    """KTO a LoRA on the rated answers in `dataset_paths`; returns metrics (adapter: out_dir/adapter)."""
    from datasets import Dataset
    from trl import KTOConfig, KTOTrainer  # KTOTrainer lives at the top level in TRL 1.16

    from assistant.model import load_tokenizer

    out = Path(out_dir)
    rows = kto_rows(read_jsonl(dataset_paths))
    if not rows:
        raise ValueError(f"no KTO rows in {dataset_paths}")
    steps = settings.planned_steps(len(rows))
    tokenizer = load_tokenizer(Path(model_dir))
    model, peft_config = load_policy(Path(model_dir), lora, init_adapter)
    desirable = sum(row["label"] for row in rows)
    args = KTOConfig(
        **trainer_args(settings, out, steps),
        beta=settings.beta,
        desirable_weight=settings.desirable_weight,
        undesirable_weight=settings.undesirable_weight,
    )
    callback = ProgressCallback("kto", progress_cb, control)
    trainer = KTOTrainer(
        model=model,
        ref_model=None,
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=[callback],
    )
    metrics = run_trainer(trainer, callback, out, resume_from, len(rows))
    metrics["desirable"], metrics["undesirable"] = desirable, len(rows) - desirable
    return metrics
