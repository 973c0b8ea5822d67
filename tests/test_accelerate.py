"""training/accelerate_entry.py runs unchanged under `accelerate launch` (CPU here) and writes an adapter."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
ACCELERATE = Path(sys.executable).parent / "accelerate"

ROWS = [
    {"messages": [{"role": "user", "content": f"What is {a} plus {b}?"},
                  {"role": "assistant", "content": f"{a} plus {b} is {a + b}."}]}
    for a, b in ((1, 2), (3, 4), (5, 6), (7, 8))
]


def test_accelerate_launch_trains_a_lora(tiny_model_dir: Path, tmp_path: Path) -> None:
    data = tmp_path / "sft.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in ROWS))
    out = tmp_path / "run"
    launcher = [str(ACCELERATE), "launch"] if ACCELERATE.exists() else [
        sys.executable, "-m", "accelerate.commands.launch"]
    cmd = [
        *launcher, "--num_processes", "1", "--num_machines", "1", "--cpu", "--mixed_precision", "no",
        "--dynamo_backend", "no",
        "training/accelerate_entry.py", "--model-dir", str(tiny_model_dir), "--data", str(data),
        "--out", str(out), "--max-steps", "2", "--batch-size", "2", "--lora-r", "4",
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    adapter = out / "adapter"
    assert (adapter / "adapter_model.safetensors").stat().st_size > 0
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["r"] == 4 and config["peft_type"] == "LORA"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 2 and metrics["processes"] == 1
    assert metrics["device"] == "cpu" and metrics["mixed_precision"] == "no"

    # The adapter loads on the base model and changes its output (LoRA B is trained away from zero).
    import torch
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    weights = load_file(adapter / "adapter_model.safetensors")
    assert any("lora_B" in name and bool(t.abs().sum() > 0) for name, t in weights.items())
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), str(adapter))
    assert sum(p.numel() for n, p in model.named_parameters() if "lora_" in n) > 0
    assert isinstance(model(torch.tensor([[1, 2, 3]])).logits, torch.Tensor)


def test_device_args_pick_the_gpu_when_there_is_one(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    sys.path.insert(0, str(REPO))
    from training.accelerate_entry import device_args

    monkeypatch.delenv("ACCELERATE_USE_CPU", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert device_args() == {"use_cpu": False, "bf16": True, "fp16": False}
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert device_args() == {"use_cpu": False, "bf16": False, "fp16": True}  # e.g. a T4
    monkeypatch.setenv("ACCELERATE_USE_CPU", "true")  # accelerate launch --cpu
    assert device_args()["use_cpu"] is True
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.delenv("ACCELERATE_USE_CPU")
    assert device_args() == {"use_cpu": True, "bf16": False, "fp16": False}
