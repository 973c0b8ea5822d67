"""Training stages in-process on the tiny random Llama: SFT → DPO, KTO only, too little data, versions.

    .venv/bin/pytest tests/test_training.py -q

Each pipeline run is a few seconds: the configs below cap every stage at a handful of steps.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from assistant.model import sha256_file
from training import NotEnoughDataError
from training.config import DPOSettings, JobConfig, KTOSettings, LoraSettings, SFTSettings
from training.pipeline import publish_version, run_pipeline, version_ids
from training.threads import ThreadBudget


def _user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def _assistant(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


def write_datasets(root: Path, sft: int = 0, dpo: int = 0, kto: int = 0) -> Path:
    """A curated export in TRL's conversational formats: every answer teaches one style ("In short: ...")."""
    root.mkdir(parents=True, exist_ok=True)
    rows: dict[str, list[dict[str, Any]]] = {
        "sft.jsonl": [
            {
                "messages": [
                    *_user(f"Tell me about the number {i}."),
                    *_assistant(f"In short: {i} is a number."),
                ]
            }
            for i in range(sft)
        ],
        "dpo.jsonl": [
            {
                "prompt": _user(f"Tell me about the number {i}."),
                "chosen": _assistant(f"In short: {i} is a number."),
                "rejected": _assistant(f"Well, {i}... I am not sure what to say about that."),
            }
            for i in range(dpo)
        ],
        "kto.jsonl": [
            {
                "prompt": _user(f"What is {i} plus one?"),
                "completion": _assistant(f"In short: {i + 1}." if i % 2 == 0 else "No idea, sorry."),
                "label": i % 2 == 0,
            }
            for i in range(kto)
        ],
    }
    for name, items in rows.items():
        (root / name).write_text("".join(json.dumps(row) + "\n" for row in items))
    (root / "manifest.json").write_text(json.dumps({"dataset_hash": f"test-{sft}-{dpo}-{kto}"}))
    return root


def tiny_config(**changes: Any) -> JobConfig:
    """Seconds per stage on the tiny model; a high learning rate so the LoRA visibly moves."""
    config = JobConfig(
        threads=1,
        min_sft_items=4,
        min_pref_items=4,
        min_kto_items=4,
        sft=SFTSettings(max_steps=3, batch_size=4, learning_rate=1e-2, max_length=96, save_steps=2),
        dpo=DPOSettings(max_steps=2, batch_size=4, learning_rate=1e-2, max_length=96),
        kto=KTOSettings(max_steps=2, batch_size=4, learning_rate=1e-2, max_length=96),
        lora=LoraSettings(r=4, alpha=8),
    )
    return config.replace(**changes)


def test_config_validates_and_round_trips() -> None:
    config = tiny_config()
    assert JobConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert JobConfig.from_dict({"sft": {"max_steps": 7}}).sft.max_steps == 7
    with pytest.raises(ValueError, match="unknown job config keys"):
        JobConfig.from_dict({"epochs": 3})
    with pytest.raises(ValueError, match="unknown sft keys"):
        JobConfig.from_dict({"sft": {"max_seq_length": 512}})
    with pytest.raises(ValueError, match=r"sft.learning_rate must be in \(0, 1\)"):
        SFTSettings(learning_rate=0)
    with pytest.raises(ValueError, match=r"kto\.batch_size must be >= 2"):
        KTOSettings(batch_size=1)
    with pytest.raises(ValueError, match="instruction_mix_ratio"):
        JobConfig(instruction_mix_ratio=1.0)
    with pytest.raises(ValueError, match="preference must be one of"):
        JobConfig(preference="ppo")
    with pytest.raises(ValueError, match=r"lora\.target_modules"):
        LoraSettings(target_modules=())
    # Steps scale with the data and stop at the cap.
    sft = SFTSettings(epochs=8, max_steps=60, batch_size=8)
    assert (sft.planned_steps(0), sft.planned_steps(10), sft.planned_steps(40), sft.planned_steps(1000)) == (
        0,
        10,
        40,
        60,
    )


def test_sft_then_dpo_trains_lora_only_and_publishes_a_version(tmp_path: Path, tiny_model_dir: Path) -> None:
    import torch
    from peft import PeftModel

    from assistant.model import load_model

    base_sha = sha256_file(tiny_model_dir / "model.safetensors")
    datasets = write_datasets(tmp_path / "datasets", sft=12, dpo=8, kto=8)
    adapters = tmp_path / "adapters"
    events: list[dict[str, Any]] = []
    result = run_pipeline(
        tmp_path / "jobs" / "job_a",
        tiny_model_dir,
        datasets,
        tiny_config(),
        events.append,
        adapters_dir=adapters,
    )

    assert result["version"] == "v0001" and result["stages"] == ["sft", "dpo"]
    version_dir = adapters / "v0001"
    assert sorted(p.name for p in version_dir.iterdir()) == [
        "adapter_config.json",
        "adapter_model.safetensors",
        "manifest.json",
    ]
    manifest = json.loads((version_dir / "manifest.json").read_text())
    assert manifest["id"] == "v0001" and manifest["parent"] is None and manifest["job_id"] == "job_a"
    assert manifest["base_model_id"] == "tiny-llama" and manifest["base_hash"]
    assert manifest["dataset_hash"] == "test-12-8-8"
    assert manifest["configs"] == tiny_config().to_dict()
    assert set(manifest["metrics"]) == {"sft", "dpo"}
    assert manifest["metrics"]["dpo"]["reward_accuracies"] is not None
    assert manifest["files"] == {name: sha256_file(version_dir / name) for name in manifest["files"]}
    assert set(manifest["files"]) == {"adapter_config.json", "adapter_model.safetensors"}

    # Progress counts steps across both stages, never backwards, and ends at the planned total.
    steps = [e["step"] for e in events]
    assert steps == sorted(steps) and steps[-1] == events[-1]["total_steps"] == 5
    assert [e["phase"] for e in events if e.get("loss") is not None][-1] == "dpo"

    # The base weights are untouched, on disk and under the adapter; the LoRA moved away from its init
    # (lora_B starts at zero), and DPO moved it on from where SFT left it.
    assert sha256_file(tiny_model_dir / "model.safetensors") == base_sha
    fresh = load_model(tiny_model_dir)
    tuned = PeftModel.from_pretrained(load_model(tiny_model_dir), str(version_dir))
    base_state = fresh.state_dict()
    lora_b = 0
    for name, tensor in tuned.state_dict().items():
        if "lora_B" in name:
            lora_b += 1
            assert tensor.abs().sum() > 0, name
        elif "lora_" not in name:
            plain = name.removeprefix("base_model.model.").replace(".base_layer", "")
            assert torch.equal(tensor, base_state[plain]), name
    assert lora_b == 2 * 4  # 2 layers x q/k/v/o
    from safetensors.torch import load_file

    sft_weights = load_file(tmp_path / "jobs" / "job_a" / "sft" / "adapter" / "adapter_model.safetensors")
    dpo_weights = load_file(version_dir / "adapter_model.safetensors")
    assert any(not torch.equal(sft_weights[k], dpo_weights[k]) for k in sft_weights)

    # Checkpoints are gone once a stage is done; the same job dir returns the same result (resume-safe).
    assert not list((tmp_path / "jobs" / "job_a").glob("*/checkpoint-*"))
    again = run_pipeline(
        tmp_path / "jobs" / "job_a", tiny_model_dir, datasets, tiny_config(), adapters_dir=adapters
    )
    assert again["version"] == "v0001" and version_ids(adapters) == ["v0001"]


def test_kto_when_only_thumbs_exist(tmp_path: Path, tiny_model_dir: Path) -> None:
    datasets = write_datasets(tmp_path / "datasets", sft=0, dpo=2, kto=8)
    adapters = tmp_path / "adapters"
    (adapters / "v0001").mkdir(parents=True)  # an existing version is never reused or overwritten
    result = run_pipeline(
        tmp_path / "jobs" / "job_k", tiny_model_dir, datasets, tiny_config(), adapters_dir=adapters
    )
    assert result["stages"] == ["kto"] and result["version"] == "v0002"
    manifest = json.loads((adapters / "v0002" / "manifest.json").read_text())
    metrics = manifest["metrics"]["kto"]
    assert metrics["steps"] == 2 and metrics["desirable"] == 4 and metrics["undesirable"] == 4
    assert manifest["files"]["adapter_model.safetensors"] == sha256_file(
        adapters / "v0002" / "adapter_model.safetensors"
    )
    assert list((adapters / "v0001").iterdir()) == []


def test_too_little_data_says_how_much_is_missing(tmp_path: Path, tiny_model_dir: Path) -> None:
    datasets = write_datasets(tmp_path / "datasets", sft=3, dpo=1, kto=2)
    adapters = tmp_path / "adapters"
    with pytest.raises(NotEnoughDataError) as caught:
        run_pipeline(
            tmp_path / "jobs" / "job_n", tiny_model_dir, datasets, tiny_config(), adapters_dir=adapters
        )
    message = str(caught.value)
    assert "3 SFT examples (need 4)" in message and "1 preference pairs (need 4)" in message
    assert "2 rated answers (need 4)" in message and "lower min_sft_items" in message
    assert caught.value.counts == {"sft": 3, "dpo": 1, "kto": 2}
    assert not adapters.exists()


def test_publish_takes_the_next_free_id_and_never_overwrites(tmp_path: Path) -> None:
    adapters = tmp_path / "adapters"
    (adapters / "v0007").mkdir(parents=True)
    (adapters / ".tmp-other-job").mkdir()  # someone else's half-written version: not a version
    staged = adapters / ".tmp-job_x"
    staged.mkdir()
    (staged / "adapter_model.safetensors").write_bytes(b"weights")
    version = publish_version(staged, adapters, {"parent": "v0007", "files": {}})
    assert version == "v0008" and not staged.exists()
    assert json.loads((adapters / "v0008" / "manifest.json").read_text())["id"] == "v0008"
    assert version_ids(adapters) == ["v0007", "v0008"]


def test_thread_budget_follows_the_file_the_server_writes(tmp_path: Path) -> None:
    import torch

    before = torch.get_num_threads()
    budget = ThreadBudget(tmp_path / "threads", threads=2)
    assert budget.poll() is None  # no file: keep the count the job started with
    (tmp_path / "threads").write_text("1\n")
    try:
        assert budget.poll() == 1 and torch.get_num_threads() == 1 and budget.threads == 1
        assert budget.poll() is None  # unchanged file: nothing to do
        (tmp_path / "threads").write_text("garbage")
        assert budget.poll() is None and budget.threads == 1
    finally:
        torch.set_num_threads(before)
