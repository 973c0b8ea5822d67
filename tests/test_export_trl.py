"""Exported JSONL loads with `datasets` and trains one step with TRL's SFT, DPO and KTO trainers."""

from __future__ import annotations

import datetime
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from feedback.curate import CurationConfig, CurationResult, curate
from feedback.export import export_datasets, export_feedback_jsonl
from tests.test_curate import FeedbackLog

QUESTIONS = [
    ("What is the capital of France?", "Paris.", "Lyon, probably.", "The capital of France is Paris."),
    ("How many legs does a spider have?", "Eight.", "Six legs.", "A spider has eight legs."),
    ("What colour is the sky on a clear day?", "Blue.", "Green.", "On a clear day the sky is blue."),
    ("Boiling point of water at sea level?", "100 °C.", "50 °C.", "Water boils at 100 °C at sea level."),
    ("Who wrote Hamlet?", "Shakespeare.", "Dickens.", "Hamlet was written by William Shakespeare."),
    ("What is 7 times 6?", "42.", "36.", "Seven times six is 42."),
    ("Largest ocean on Earth?", "The Pacific.", "The Arctic.", "The Pacific is the largest ocean."),
    ("Chemical symbol for gold?", "Au.", "Gd.", "Gold's chemical symbol is Au."),
]


@pytest.fixture(scope="module")
def curated() -> CurationResult:
    log = FeedbackLog()
    for i, (question, good, bad, better) in enumerate(QUESTIONS):
        first = log.answer(question, good, parent=f"user_{i}")
        second = log.answer(question, bad, parent=f"user_{i}")
        log.rate(first, "ann", "up")  # trusted: also SFT
        log.rate(second, "ann", "down")  # with the up-vote: a sibling DPO pair
        log.rate(second, "bob", "down", correction=better)  # SFT + DPO
    config = CurationConfig(heldout_fraction=0.3, rater_cap=1.0, trusted_raters={"ann"})
    result = curate(log.events(), config)
    for kind in ("sft", "dpo", "kto"):
        assert result.train(kind) and result.heldout[kind], f"fixture needs {kind} items on both sides"
    return result


def test_export_writes_files_and_manifest(curated: CurationResult, tmp_path: Path) -> None:
    manifest = export_datasets(curated, tmp_path / "ds")
    names = sorted(p.name for p in (tmp_path / "ds").iterdir())
    assert names == sorted(
        [
            "sft.jsonl",
            "dpo.jsonl",
            "kto.jsonl",
            "heldout_sft.jsonl",
            "heldout_dpo.jsonl",
            "heldout_kto.jsonl",
            "manifest.json",
        ]
    )  # and no temp files left behind
    assert json.loads((tmp_path / "ds" / "manifest.json").read_text()) == manifest
    assert manifest["dataset_hash"] == curated.dataset_hash
    assert manifest["counts"]["kto.jsonl"] == len(curated.kto)
    for name, info in manifest["files"].items():
        data = (tmp_path / "ds" / name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == info["sha256"]
        rows = [json.loads(line) for line in data.decode().splitlines()]
        assert len(rows) == info["rows"] and all("meta" not in r for r in rows)
    every = curated.items()
    assert set(manifest["sources"]) == {it["id"] for it in every}
    assert all(manifest["sources"][it["id"]] == it["meta"]["source_ids"] for it in every)
    assert manifest["report"]["train"] == curated.report["train"]
    datetime.datetime.fromisoformat(manifest["created_at"])

    # Re-export into the same folder replaces files in place.
    again = export_datasets(curated, tmp_path / "ds")
    assert again["files"] == manifest["files"]


def test_export_feedback_jsonl(tmp_path: Path) -> None:
    when = datetime.datetime(2026, 1, 2, tzinfo=datetime.UTC)
    rows = [{"id": 1, "rating": "up", "tags": ["other"], "created_at": when}, {"id": 2, "rating": None}]
    assert export_feedback_jsonl(rows, tmp_path / "raw" / "feedback.jsonl") == 2
    lines = (tmp_path / "raw" / "feedback.jsonl").read_text().splitlines()
    assert json.loads(lines[0])["created_at"] == str(when) and json.loads(lines[1])["rating"] is None


def _load(path: Path, cache: Path) -> Any:
    from datasets import load_dataset

    return load_dataset("json", data_files=str(path), split="train", cache_dir=str(cache))


def test_exported_files_load_as_trl_datasets(curated: CurationResult, tmp_path: Path) -> None:
    out = tmp_path / "ds"
    export_datasets(curated, out)
    columns = {
        "sft": {"messages"},
        "dpo": {"prompt", "chosen", "rejected"},
        "kto": {"prompt", "completion", "label"},
    }
    for kind, cols in columns.items():
        for name in (f"{kind}.jsonl", f"heldout_{kind}.jsonl"):
            ds = _load(out / name, tmp_path / "hf-cache")
            assert set(ds.column_names) == {"id", *cols}
            assert len(ds) == len(curated.train(kind) if name == f"{kind}.jsonl" else curated.heldout[kind])
    kto = _load(out / "kto.jsonl", tmp_path / "hf-cache")
    assert set(kto["label"]) == {True, False}


def _common_args(tmp_path: Path, name: str) -> dict[str, Any]:
    # TRL 1.16 on CPU (FACTS.md): use_cpu, explicit gradient_checkpointing, max_length.
    return {
        "output_dir": str(tmp_path / name),
        "use_cpu": True,
        "report_to": [],
        "max_steps": 1,
        "per_device_train_batch_size": 2,
        "gradient_checkpointing": False,
        "max_length": 128,
        "save_strategy": "no",
        "logging_steps": 1,
        "learning_rate": 5e-5,
    }


def _lora() -> Any:
    from peft import LoraConfig

    return LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])


def test_trl_trainers_run_one_step_on_exported_data(
    curated: CurationResult, tiny_model_dir: Path, tmp_path: Path
) -> None:
    from trl import DPOConfig, DPOTrainer, KTOConfig, KTOTrainer, SFTConfig, SFTTrainer

    from assistant.model import load_model, load_tokenizer

    out = tmp_path / "ds"
    export_datasets(curated, out)
    tokenizer = load_tokenizer(tiny_model_dir)
    cache = tmp_path / "hf-cache"

    sft = SFTTrainer(
        model=load_model(tiny_model_dir),
        args=SFTConfig(**_common_args(tmp_path, "sft")),
        train_dataset=_load(out / "sft.jsonl", cache),
        processing_class=tokenizer,
    )
    assert sft.train().global_step == 1

    dpo = DPOTrainer(
        model=load_model(tiny_model_dir),
        ref_model=None,
        args=DPOConfig(**_common_args(tmp_path, "dpo")),
        train_dataset=_load(out / "dpo.jsonl", cache),
        processing_class=tokenizer,
        peft_config=_lora(),
    )
    assert dpo.train().global_step == 1

    kto = KTOTrainer(
        model=load_model(tiny_model_dir),
        ref_model=None,
        args=KTOConfig(**_common_args(tmp_path, "kto")),
        train_dataset=_load(out / "kto.jsonl", cache),
        processing_class=tokenizer,
        peft_config=_lora(),
    )
    assert kto.train().global_step == 1
