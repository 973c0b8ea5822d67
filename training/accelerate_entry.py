"""SFT a LoRA under `accelerate launch`: the same script on a 2-core laptop and on a GPU server.

    accelerate launch --num_processes 1 --cpu training/accelerate_entry.py \
        --model-dir data/model-cache/SmolLM2-135M-Instruct-... --data sft.jsonl --out runs/sft --max-steps 2
    accelerate launch --num_processes 4 training/accelerate_entry.py --model-dir ... --data ... --out ...

With a CUDA GPU (and no `--cpu`) it trains there in bf16 (fp16 where bf16 is unsupported) by itself; else
float32 on CPU. With several processes, accelerate runs data-parallel and only the main process writes.
The adapter lands in OUT/adapter (PEFT format, safetensors) and the metrics in OUT/metrics.json; register
it as a version with a manifest like any training job's output (training/registry.py).

Rows are conversations {"messages": [...]} (or {"prompt", "completion"}), as for training/sft.py, whose
data handling, trainer arguments and adapter saving this script reuses.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file (accelerate launch training/accelerate_entry.py)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def device_args() -> dict[str, Any]:
    """TrainingArguments for the hardware: GPU + bf16 when CUDA is there, unless `--cpu` was asked for."""
    import torch

    forced_cpu = os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes")
    if forced_cpu or not torch.cuda.is_available():
        return {"use_cpu": True, "bf16": False, "fp16": False}
    bf16 = torch.cuda.is_bf16_supported()
    return {"use_cpu": False, "bf16": bf16, "fp16": not bf16}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from training.config import SFTSettings

    defaults = SFTSettings()
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", required=True, type=Path, help="HF model directory of the base model")
    parser.add_argument("--data", required=True, nargs="+", type=Path, help="SFT JSONL file(s)")
    parser.add_argument("--out", required=True, type=Path, help="output directory (adapter in OUT/adapter)")
    parser.add_argument("--max-steps", type=int, default=defaults.max_steps)
    parser.add_argument("--epochs", type=float, default=defaults.epochs)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size, help="per device")
    parser.add_argument("--learning-rate", type=float, default=defaults.learning_rate)
    parser.add_argument("--max-length", type=int, default=defaults.max_length)
    parser.add_argument("--lora-r", type=int, default=16)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--init-adapter", type=Path, help="continue training this adapter (its parent)")
    parser.add_argument("--resume", action="store_true", help="resume from OUT's latest checkpoint")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from assistant.model import load_tokenizer
    from training.config import LoraSettings, SFTSettings
    from training.sft import (
        ProgressCallback,
        latest_checkpoint,
        load_policy,
        read_jsonl,
        save_adapter,
        sft_rows,
        trainer_args,
    )

    args = parse_args(argv)
    settings = SFTSettings(max_steps=args.max_steps, epochs=args.epochs, batch_size=args.batch_size,
                           learning_rate=args.learning_rate, max_length=args.max_length, seed=args.seed)
    lora = LoraSettings(r=args.lora_r, alpha=2 * args.lora_r)
    rows = sft_rows(read_jsonl(args.data))
    if not rows:
        raise SystemExit(f"error: no SFT rows in {', '.join(map(str, args.data))}")
    steps = settings.planned_steps(len(rows))
    model, peft_config = load_policy(args.model_dir, lora, args.init_adapter)
    device = device_args()
    config = SFTConfig(
        **{**trainer_args(settings, args.out, steps), **device},
        completion_only_loss=True,
        packing=False,  # packing would let one answer's loss see another conversation
    )

    def progress(event: dict[str, Any]) -> None:
        if trainer.is_world_process_zero():
            print(json.dumps({k: v for k, v in event.items() if v is not None}), flush=True)

    callback = ProgressCallback("sft", progress, None)
    trainer = SFTTrainer(
        model=model,
        args=config,
        train_dataset=Dataset.from_list(rows),
        processing_class=load_tokenizer(args.model_dir),
        peft_config=peft_config,
        callbacks=[callback],
    )
    started = time.monotonic()
    resume = latest_checkpoint(args.out) if args.resume else None
    output = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    trainer.accelerator.wait_for_everyone()
    if trainer.is_world_process_zero():
        adapter = save_adapter(trainer.model, args.out / "adapter")
        metrics = {
            "stage": "sft",
            "items": len(rows),
            "steps": int(trainer.state.global_step),
            "train_loss": output.training_loss,
            "runtime_s": round(time.monotonic() - started, 2),
            "processes": trainer.accelerator.num_processes,
            "device": str(trainer.accelerator.device),
            "mixed_precision": "bf16" if device["bf16"] else "fp16" if device["fp16"] else "no",
            "adapter_dir": str(adapter),
        }
        (args.out / "metrics.json").write_text(json.dumps(metrics, indent=2))
        print(json.dumps(metrics), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
