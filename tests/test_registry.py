"""Adapter registry: validation refuses bad adapters before any load; promote / rollback / restart.

Real LoRA adapters are made with PEFT on the tiny Llama; the helpers here are shared by test_canary.py and
test_versions_api.py.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from assistant.engine import BASE
from assistant.errors import AdapterRejectedError
from assistant.model import base_model_info
from assistant.routing import GateFailedError, VersionRouter
from feedback.store import Store
from training.registry import Registry, VersionNotFoundError

ADAPTER_FILES = ("adapter_model.safetensors", "adapter_config.json")
# What test_canary.py and test_versions_api.py take with `from tests.test_registry import *` (fixtures too).
__all__ = [
    "adapter_template", "base_info", "build_template", "corrupt_truncate", "make", "make_version", "registry",
    "store", "wait_for", "write_manifest",
]


# ---------------------------------------------------------------------------- helpers (shared)
def wait_for(condition: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return bool(condition())


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_manifest(path: Path, version: str, base: dict[str, str], parent: str | None = None,
                   **extra: Any) -> dict[str, Any]:
    """A manifest listing every file in `path` with its sha256 (as training writes it)."""
    files = {p.name: sha256(p) for p in sorted(path.iterdir()) if p.is_file() and p.name != "manifest.json"}
    manifest = {
        "id": version, "parent": parent, "base_model_id": base["model_id"], "base_hash": base["base_hash"],
        "dataset_hash": hashlib.sha256(version.encode()).hexdigest(), "configs": {"lora": {"r": 4}},
        "metrics": {"sft": {"train_loss": 1.5}}, "created_at": f"2025-01-01T00:00:0{len(version) % 10}",
        "files": files, **extra,
    }
    (path / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return manifest


def build_template(model_dir: Path, target: Path, target_modules: tuple[str, ...] = ("q_proj", "v_proj"),
                   seed: int = 0) -> Path:
    """Save a real (randomly initialised, non-zero) LoRA adapter for the model in `model_dir`."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    peft_model = get_peft_model(
        model, LoraConfig(r=4, lora_alpha=8, target_modules=list(target_modules), init_lora_weights=False)
    )
    peft_model.save_pretrained(target)
    (target / "README.md").unlink(missing_ok=True)
    return target


def make_version(adapters_dir: Path, version: str, template: Path, base: dict[str, str],
                 parent: str | None = None) -> Path:
    """A version directory adapters_dir/<version> with a correct manifest."""
    target = adapters_dir / version
    target.mkdir(parents=True)
    for name in ADAPTER_FILES:
        shutil.copy2(template / name, target / name)
    write_manifest(target, version, base, parent)
    return target


@pytest.fixture(scope="session")
def adapter_template(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_template(tiny_model_dir, tmp_path_factory.mktemp("template") / "adapter")


@pytest.fixture(scope="session")
def base_info(tiny_model_dir: Path) -> dict[str, str]:
    return base_model_info(tiny_model_dir)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "assistant.db", synchronous="NORMAL") as s:
        yield s


@pytest.fixture
def registry(store: Store, tmp_path: Path, tiny_model_dir: Path) -> Registry:
    return Registry.for_model(store, tmp_path / "adapters", tiny_model_dir)


@pytest.fixture
def make(registry: Registry, adapter_template: Path, base_info: dict[str, str]):  # type: ignore[no-untyped-def]
    """make("v0001", parent=None, gate=True) → a registered version (gate None: not evaluated)."""

    def _make(version: str, parent: str | None = None, gate: bool | None = True) -> dict[str, Any]:
        path = make_version(registry.adapters_dir, version, adapter_template, base_info, parent)
        registry.register(path)
        if gate is not None:
            registry.set_gate_report(version, {"passed": gate, "summary": "test"}, gate)
        found = registry.get(version)
        assert found is not None
        return found

    return _make


# ---------------------------------------------------------------------------- validation
def test_valid_adapter_registers_with_lineage(registry: Registry, make) -> None:  # type: ignore[no-untyped-def]
    make("v0001")
    make("v0002", parent="v0001", gate=None)
    rows = registry.list_versions()
    assert [r["id"] for r in rows] == ["v0001", "v0002"]
    v2 = registry.get("v0002")
    assert v2 is not None and v2["parent"] == "v0001" and v2["status"] == "candidate"
    assert v2["gate_passed"] is None and v2["manifest"]["id"] == "v0002"
    assert v2["metrics"] == {"sft": {"train_loss": 1.5}}
    assert registry.lineage("v0002") == ["v0002", "v0001", "base"]
    assert registry.next_version_id() == "v0003"
    # Idempotent by id.
    assert registry.register(Path(v2["path"]))["id"] == "v0002"
    assert len(registry.list_versions()) == 2


def test_failed_gate_marks_rejected(registry: Registry, make) -> None:  # type: ignore[no-untyped-def]
    make("v0001", gate=False)
    row = registry.get("v0001")
    assert row is not None and row["status"] == "rejected" and row["gate_passed"] is False
    assert row["gate"] == {"passed": False, "summary": "test"}


def _corrupt_pickle(path: Path, base: dict[str, str]) -> None:
    import torch

    torch.save({"x": torch.zeros(2)}, path / "adapter_model.bin")
    write_manifest(path, path.name, base)


def _corrupt_base_hash(path: Path, base: dict[str, str]) -> None:
    write_manifest(path, path.name, {**base, "base_hash": "0" * 64})


def _corrupt_nan(path: Path, base: dict[str, str]) -> None:
    from safetensors.torch import load_file, save_file

    tensors = load_file(path / "adapter_model.safetensors")
    name = sorted(tensors)[0]
    tensors[name][0, 0] = float("nan")
    save_file(tensors, path / "adapter_model.safetensors")
    write_manifest(path, path.name, base)


def corrupt_truncate(path: Path, base: dict[str, str]) -> None:
    weights = path / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])


def _corrupt_checksum(path: Path, base: dict[str, str]) -> None:
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["files"]["adapter_model.safetensors"] = "f" * 64
    (path / "manifest.json").write_text(json.dumps(manifest))


def _corrupt_target(path: Path, base: dict[str, str]) -> None:
    config = json.loads((path / "adapter_config.json").read_text())
    config["target_modules"] = ["q_proj", "attn_qkv"]
    (path / "adapter_config.json").write_text(json.dumps(config))
    write_manifest(path, path.name, base)


def _corrupt_shape(path: Path, base: dict[str, str]) -> None:
    import torch
    from safetensors.torch import load_file, save_file

    tensors = load_file(path / "adapter_model.safetensors")
    name = next(n for n in sorted(tensors) if n.endswith("q_proj.lora_A.weight"))
    tensors[name] = torch.randn(4, 24)  # the base q_proj takes 16 input features
    save_file(tensors, path / "adapter_model.safetensors")
    write_manifest(path, path.name, base)


def _corrupt_missing_manifest(path: Path, base: dict[str, str]) -> None:
    (path / "manifest.json").unlink()


CORRUPTIONS = {
    "pickle_bin": (_corrupt_pickle, "pickle-capable file"),
    "wrong_base_hash": (_corrupt_base_hash, "trained on base"),
    "nan_weights": (_corrupt_nan, "NaN or infinite"),
    "truncated": (corrupt_truncate, "truncated or was modified"),
    "bad_checksum": (_corrupt_checksum, "does not match its sha256"),
    "unknown_target": (_corrupt_target, r"target modules \['attn_qkv'\] do not exist"),
    "wrong_shape": (_corrupt_shape, "input features"),
    "no_manifest": (_corrupt_missing_manifest, "no manifest.json"),
}


@pytest.mark.parametrize("case", list(CORRUPTIONS))
def test_bad_adapter_refused_by_validate(case: str, registry: Registry, adapter_template: Path,
                                         base_info: dict[str, str]) -> None:
    corrupt, message = CORRUPTIONS[case]
    path = make_version(registry.adapters_dir, "v0001", adapter_template, base_info)
    registry.validate(path)  # fine before
    corrupt(path, base_info)
    with pytest.raises(AdapterRejectedError, match=message):
        registry.validate(path)
    with pytest.raises(AdapterRejectedError, match=message):
        registry.register(path)
    assert registry.list_versions() == []


def test_bad_adapters_never_reach_the_engine(registry: Registry, tiny_engine, make,  # type: ignore[no-untyped-def]
                                            base_info: dict[str, str]) -> None:
    """A version corrupted after registration is refused at promote/canary/rollback; live stays as it was."""
    router = VersionRouter(registry, tiny_engine)
    make("v0001")
    router.promote("v0001")
    for number, (case, (corrupt, message)) in enumerate(CORRUPTIONS.items(), start=2):
        version = f"v{number:04d}"
        bad = make(version)
        corrupt(Path(bad["path"]), base_info)
        with pytest.raises(AdapterRejectedError, match=message):
            router.promote(version, force=True)
        with pytest.raises(AdapterRejectedError, match=message):
            router.rollback(version)
        with pytest.raises(AdapterRejectedError, match=message):
            router.start_canary(version, 0.5)
        assert tiny_engine.live_version == "v0001", case
        assert tiny_engine.loaded_versions == {"v0001"}, case
        assert registry.live() == "v0001" and registry.canary() == (None, 0.0)
        assert registry.get(version)["status"] == "candidate"  # type: ignore[index]


def test_reused_id_with_other_weights_is_refused(registry: Registry, make, adapter_template: Path,  # type: ignore[no-untyped-def]
                                                 base_info: dict[str, str], tmp_path: Path,
                                                 tiny_model_dir: Path) -> None:
    make("v0001")
    other = build_template(tiny_model_dir, tmp_path / "other", seed=7)
    outside = make_version(tmp_path / "elsewhere", "v0001", other, base_info)
    with pytest.raises(AdapterRejectedError, match="already registered with different contents"):
        registry.register(outside)


def test_register_copies_an_outside_directory_in(registry: Registry, adapter_template: Path,
                                                 base_info: dict[str, str], tmp_path: Path) -> None:
    outside = make_version(tmp_path / "elsewhere", "v0007", adapter_template, base_info)
    row = registry.register(outside)
    assert Path(row["path"]) == registry.adapters_dir / "v0007"
    assert (registry.adapters_dir / "v0007" / "manifest.json").is_file()
    assert registry.next_version_id() == "v0008"


def test_sync_registers_new_directories_and_skips_bad_ones(registry: Registry, adapter_template: Path,
                                                          base_info: dict[str, str]) -> None:
    make_version(registry.adapters_dir, "v0001", adapter_template, base_info)
    bad = make_version(registry.adapters_dir, "v0002", adapter_template, base_info)
    corrupt_truncate(bad, base_info)
    (registry.adapters_dir / ".tmp-job").mkdir()
    assert registry.sync() == ["v0001"]
    assert registry.sync() == []


# ---------------------------------------------------------------------------- promote / rollback / restart
def test_promote_rollback_change_live_and_record_history(registry: Registry, tiny_engine, make) -> None:  # type: ignore[no-untyped-def]
    router = VersionRouter(registry, tiny_engine)
    make("v0001")
    make("v0002", parent="v0001")
    make("v0003", parent="v0002", gate=False)

    router.promote("v0001", by="alice")
    assert tiny_engine.live_version == "v0001" and registry.live() == "v0001"
    router.promote("v0002", by="alice")
    assert tiny_engine.live_version == "v0002"
    assert registry.get("v0001")["status"] == "retired"  # type: ignore[index]
    assert registry.get("v0002")["status"] == "live"  # type: ignore[index]

    with pytest.raises(GateFailedError, match="failed the promotion gate"):
        router.promote("v0003")
    assert tiny_engine.live_version == "v0002"
    with pytest.raises(VersionNotFoundError):
        router.promote("v0099")

    router.rollback("v0001", by="bob")
    assert tiny_engine.live_version == "v0001" and registry.live() == "v0001"
    router.rollback(None, by="bob")
    assert tiny_engine.live_version == BASE and registry.live() is None

    history = [(h["name"], h["version"], h["by"]) for h in reversed(registry.history())]
    assert history == [("live", "v0001", "alice"), ("live", "v0002", "alice"),
                       ("live", "v0001", "bob"), ("live", None, "bob")]
    # The old live versions are unloaded once nothing runs on them.
    assert wait_for(lambda: tiny_engine.loaded_versions == set())


def test_ungated_version_needs_force(registry: Registry, tiny_engine, make) -> None:  # type: ignore[no-untyped-def]
    router = VersionRouter(registry, tiny_engine)
    make("v0001", gate=None)
    with pytest.raises(GateFailedError, match="no gate report"):
        router.promote("v0001")
    router.promote("v0001", force=True)
    assert tiny_engine.live_version == "v0001"


def test_promoted_adapter_serves_requests(registry: Registry, tiny_engine, make) -> None:  # type: ignore[no-untyped-def]
    from assistant.engine import SamplingParams

    router = VersionRouter(registry, tiny_engine)
    make("v0001")
    messages = [{"role": "user", "content": "hello"}]
    base_handle = tiny_engine.submit(messages, SamplingParams(max_tokens=8, temperature=0.0))
    base_handle.text()
    router.promote("v0001")
    handle = tiny_engine.submit(messages, SamplingParams(max_tokens=8, temperature=0.0))
    handle.text()
    assert (base_handle.version, handle.version) == (BASE, "v0001")
    assert handle.result.completion_tokens > 0


def test_restart_restores_live_and_canary(store: Store, registry: Registry, tiny_model_dir: Path,  # type: ignore[no-untyped-def]
                                          make) -> None:
    from tests.conftest import make_engine

    make("v0001")
    make("v0002", parent="v0001")
    first = make_engine(tiny_model_dir, threads=1)
    try:
        router = VersionRouter(registry, first)
        router.promote("v0001")
        router.start_canary("v0002", 0.3)
    finally:
        first.stop()
    second = make_engine(tiny_model_dir, threads=1)
    try:
        restarted = VersionRouter(Registry.for_model(store, registry.adapters_dir, tiny_model_dir), second)
        assert second.live_version == BASE
        report = restarted.on_startup()
        assert report["errors"] == {}
        assert second.live_version == "v0001"
        assert second.loaded_versions == {"v0001", "v0002"}
        assert restarted.canary_version == "v0002" and restarted.canary_share == pytest.approx(0.3)
    finally:
        second.stop()


def test_restart_with_a_tampered_live_version_serves_base(store: Store, registry: Registry,  # type: ignore[no-untyped-def]
                                                          tiny_engine, make,
                                                          base_info: dict[str, str]) -> None:
    make("v0001")
    VersionRouter(registry, None).promote("v0001")  # offline (CLI): database only
    assert tiny_engine.live_version == BASE
    corrupt_truncate(registry.adapters_dir / "v0001", base_info)
    report = VersionRouter(registry, tiny_engine).on_startup()
    assert "v0001" in report["errors"] and "truncated" in report["errors"]["v0001"]
    assert tiny_engine.live_version == BASE and tiny_engine.loaded_versions == set()


def test_offline_router_changes_only_the_database(registry: Registry, make) -> None:  # type: ignore[no-untyped-def]
    router = VersionRouter(registry, None)
    make("v0001")
    router.promote("v0001", by="cli")
    assert registry.live() == "v0001" and router.live_version == "v0001"
    router.rollback(None, by="cli")
    assert registry.live() is None
