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
from typing import Any

from training.config import KTOSettings, LoraSettings
from training.sft import (
    PathLike,
    ProgressFn,
    StageControl,
    chat,
    read_jsonl,
    train_stage,
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
    from trl import KTOConfig, KTOTrainer  # KTOTrainer lives at the top level in TRL 1.16

    rows = kto_rows(read_jsonl(dataset_paths))
    metrics = train_stage(
        "kto",
        rows,
        model_dir,
        out_dir,
        settings,
        lora,
        trainer_cls=KTOTrainer,
        config_cls=KTOConfig,
        config_kwargs={
            "beta": settings.beta,
            "desirable_weight": settings.desirable_weight,
            "undesirable_weight": settings.undesirable_weight,
        },
        trainer_kwargs={"ref_model": None},
        progress_cb=progress_cb,
        resume_from=resume_from,
        init_adapter=init_adapter,
        control=control,
    )
    desirable = sum(row["label"] for row in rows)
    metrics["desirable"], metrics["undesirable"] = desirable, len(rows) - desirable
    return metrics
