"""Direct preference optimisation of a LoRA (TRL `DPOTrainer`) on (chosen ≻ rejected) pairs.

    from training.config import DPOSettings, LoraSettings
    from training.dpo import train_dpo
    metrics = train_dpo(model_dir, "dpo.jsonl", out_dir, DPOSettings(), LoraSettings(), print,
                        init_adapter=sft_out / "adapter")

Rows: {"prompt": [messages], "chosen": [assistant message], "rejected": [assistant message]}.
With `init_adapter` (the usual case: DPO after SFT) the SFT adapter is loaded trainable and TRL keeps a frozen
copy of it as the reference, so DPO moves the model away from the SFT result, not from the base. Without one,
a fresh LoRA is trained and the reference is the base model with the adapter disabled (`ref_model=None`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from training.config import DPOSettings, LoraSettings
from training.sft import (
    PathLike,
    ProgressFn,
    StageControl,
    chat,
    read_jsonl,
    train_stage,
)


def dpo_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for index, row in enumerate(rows):
        where = f"DPO row {index}"
        pair = {key: chat(row.get(key), f"{where} {key}") for key in ("prompt", "chosen", "rejected")}
        if pair["chosen"] == pair["rejected"]:
            raise ValueError(f"{where}: chosen and rejected are identical")
        out.append(pair)
    return out


def train_dpo(
    model_dir: PathLike,
    dataset_paths: PathLike | Sequence[PathLike],
    out_dir: PathLike,
    settings: DPOSettings,
    lora: LoraSettings,
    progress_cb: ProgressFn | None = None,
    resume_from: PathLike | None = None,
    init_adapter: PathLike | None = None,
    *,
    control: StageControl | None = None,
) -> dict[str, Any]:
    """DPO a LoRA on the pairs in `dataset_paths`; returns metrics (the adapter is out_dir/adapter)."""
    from trl import DPOConfig, DPOTrainer

    return train_stage(
        "dpo",
        dpo_rows(read_jsonl(dataset_paths)),
        model_dir,
        out_dir,
        settings,
        lora,
        trainer_cls=DPOTrainer,
        # DPO/KTO default to lr 1e-6, far too low for a LoRA (FACTS.md); settings carry 5e-5.
        config_cls=DPOConfig,
        config_kwargs={"beta": settings.beta},
        trainer_kwargs={"ref_model": None},
        progress_cb=progress_cb,
        resume_from=resume_from,
        init_adapter=init_adapter,
        control=control,
    )
