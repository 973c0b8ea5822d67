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
from pathlib import Path
from typing import Any

from training.config import DPOSettings, LoraSettings
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
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    from assistant.model import load_tokenizer

    out = Path(out_dir)
    rows = dpo_rows(read_jsonl(dataset_paths))
    if not rows:
        raise ValueError(f"no DPO pairs in {dataset_paths}")
    steps = settings.planned_steps(len(rows))
    tokenizer = load_tokenizer(Path(model_dir))
    model, peft_config = load_policy(Path(model_dir), lora, init_adapter)
    # DPO/KTO default to lr 1e-6, far too low for a LoRA (FACTS.md); settings carry 5e-5.
    args = DPOConfig(**trainer_args(settings, out, steps), beta=settings.beta)
    callback = ProgressCallback("dpo", progress_cb, control)
    trainer = DPOTrainer(
        model=model,
        ref_model=None,
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=[callback],
    )
    return run_trainer(trainer, callback, out, resume_from, len(rows))
