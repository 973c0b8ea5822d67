"""Does the promotion gate block an over-tuned adapter on the real model?

Trains a refuse-everything LoRA on SmolLM2-135M-Instruct (every prompt of the shipped instruction set →
"I can't help with that."; r=8, lr 1e-3, peft + a plain torch loop), then runs the gate against the base
on a sample of the real regression suite and prints the report and the time each part took. With
`--neutral` it also gates a do-nothing LoRA (lora_B = 0), which must pass the regression criteria, and with
`--helpful-steps N` a mild LoRA trained on the instruction set's own answers (how noisy is the gate?).

    .venv/bin/python bench/gate_overtuned.py                       # 30 steps, 60 suite items, 64 tokens
    .venv/bin/python bench/gate_overtuned.py --steps 40 --items 0 --neutral --json /tmp/gate.json

`train_fixed_lora` is also used by tests/test_gate.py to train adapters on the tiny model.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REFUSAL = "I can't help with that."


def train_fixed_lora(
    model_dir: Path,
    examples: list[tuple[list[dict[str, str]], str]],
    out: Path,
    *,
    steps: int,
    lr: float,
    r: int = 8,
    batch_size: int = 8,
    target_modules: Any = "all-linear",
    train_token_rows: bool = False,
    seed: int = 0,
    log_every: int = 0,
) -> Path:
    """Train a LoRA so each prompt gets its answer (loss on answer tokens only); save it to `out`.

    train_token_rows: also train the embedding rows of the answers' tokens (peft's trainable_token_indices).
    A tiny random model needs it: its tied embedding is small and random, so its logits are nearly flat.
    """
    import torch
    from peft import LoraConfig, get_peft_model

    from assistant.model import load_model, load_tokenizer
    from training.evaluate import encode_prompt_completion

    torch.manual_seed(seed)
    rng = random.Random(seed)
    tokenizer = load_tokenizer(model_dir)
    encoded = [
        encode_prompt_completion(tokenizer, prompt, [{"role": "assistant", "content": text}], 512)
        for prompt, text in examples
    ]
    extra: dict[str, Any] = {}
    if train_token_rows:
        extra["trainable_token_indices"] = {
            "embed_tokens": sorted({t for ids, s in encoded for t in ids[s:]})
        }
    config = LoraConfig(r=r, lora_alpha=2 * r, lora_dropout=0.0, target_modules=target_modules, **extra)
    model = get_peft_model(load_model(model_dir), config)
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    order: list[int] = []
    started = time.monotonic()
    for step in range(1, steps + 1):
        if len(order) < batch_size:
            order += rng.sample(range(len(encoded)), len(encoded))
        batch = [encoded[i] for i in order[:batch_size]]
        del order[:batch_size]
        # Left-pad so every answer ends its row: logits are needed for the last `keep` positions only,
        # which skips most of the vocabulary projection over the prompt.
        width = max(len(ids) for ids, _ in batch)
        keep = max(len(ids) - start for ids, start in batch)
        input_ids = torch.full((len(batch), width), tokenizer.pad_token_id)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        scored = torch.zeros((len(batch), keep), dtype=torch.bool)
        for row, (ids, start) in enumerate(batch):
            input_ids[row, width - len(ids) :] = torch.tensor(ids)
            mask[row, width - len(ids) :] = 1
            scored[row, keep - (len(ids) - start) :] = True
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        logits = model(
            input_ids=input_ids, attention_mask=mask, position_ids=positions, logits_to_keep=keep + 1
        ).logits
        logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
        token_logp = logp.gather(-1, input_ids[:, -keep:].unsqueeze(-1)).squeeze(-1)
        loss = -(token_logp * scored).sum() / scored.sum()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if log_every and (step % log_every == 0 or step == steps):
            print(
                f"  step {step}/{steps} loss {loss.item():.3f} ({time.monotonic() - started:.0f} s)",
                flush=True,
            )
    model.save_pretrained(out)
    (out / "manifest.json").write_text(
        json.dumps({"id": out.name, "note": "trained by bench/gate_overtuned.py"})
    )
    return out


def neutral_lora(model_dir: Path, out: Path) -> Path:
    """A fresh LoRA: lora_B starts at zero, so the model is exactly the base."""
    from peft import LoraConfig, get_peft_model

    from assistant.model import load_model

    get_peft_model(load_model(model_dir), LoraConfig(r=8, target_modules="all-linear")).save_pretrained(out)
    return out


def instruction_examples() -> list[tuple[list[dict[str, str]], str]]:
    """(prompt up to the first user turn, its answer) from the shipped instruction set (not in the suite)."""
    path = ROOT / "training" / "data" / "instructions.jsonl"
    examples = []
    for line in path.read_text().splitlines():
        if line.strip():
            messages = json.loads(line)["messages"]
            first_user = next(i for i, m in enumerate(messages) if m["role"] == "user")
            examples.append((messages[: first_user + 1], messages[first_user + 1]["content"]))
    return examples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--items", type=int, default=60, help="suite items (0 = all)")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = all cores)")
    parser.add_argument("--neutral", action="store_true", help="also gate a do-nothing adapter")
    parser.add_argument(
        "--helpful-steps",
        type=int,
        default=0,
        help="also gate a mild LoRA (lr 1e-4) on the instruction set's answers",
    )
    parser.add_argument("--reuse", action="store_true", help="reuse adapters already trained in --work")
    parser.add_argument("--work", default=str(ROOT / ".test-cache" / "bench-gate"))
    parser.add_argument("--json", help="write the report(s) here")
    args = parser.parse_args()

    import torch

    from assistant.model import ensure_cache, resolve_source
    from training.evaluate import GateConfig, evaluate, format_report
    from training.threads import resolve_threads

    torch.set_num_threads(resolve_threads(args.threads))
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    model_dir = ensure_cache(resolve_source(None), ROOT / ".test-cache" / "model-cache")
    config = GateConfig(max_suite_items=args.items, max_new_tokens=args.max_new_tokens, threads=args.threads)

    started = time.monotonic()
    refuse_dir = work / "refuse-everything"
    if not (args.reuse and (refuse_dir / "adapter_config.json").is_file()):
        examples = [(prompt, REFUSAL) for prompt, _ in instruction_examples()]
        train_fixed_lora(model_dir, examples, refuse_dir, steps=args.steps, lr=args.lr, log_every=5)
        print(
            f"trained refuse-everything LoRA: {args.steps} steps x 8 rows "
            f"in {time.monotonic() - started:.1f} s ({torch.get_num_threads()} threads)\n"
        )
    report = evaluate(refuse_dir, None, model_dir, None, config)
    print(format_report(report))
    reports = {"refuse_everything": report.to_dict()}
    if args.neutral:
        neutral = evaluate(neutral_lora(model_dir, work / "neutral"), None, model_dir, None, config)
        print("\n" + format_report(neutral))
        reports["neutral"] = neutral.to_dict()
    if args.helpful_steps:
        helpful_dir = work / "helpful"
        if not (args.reuse and (helpful_dir / "adapter_config.json").is_file()):
            t0 = time.monotonic()
            train_fixed_lora(
                model_dir, instruction_examples(), helpful_dir, steps=args.helpful_steps, lr=1e-4, log_every=5
            )
            print(f"trained helpful LoRA: {args.helpful_steps} steps in {time.monotonic() - t0:.1f} s\n")
        helpful = evaluate(helpful_dir, None, model_dir, None, config)
        print("\n" + format_report(helpful))
        reports["helpful"] = helpful.to_dict()
    if args.json:
        Path(args.json).write_text(json.dumps(reports, indent=2))
    print(f"\nbench total {time.monotonic() - started:.1f} s; refuse-everything blocked: {not report.passed}")
    return 0 if not report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
