"""Settings: one dataclass, read from ASSISTANT_* environment variables and CLI flags.

Everything the server writes lives under `data_dir`.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any


def _env_name(name: str) -> str:
    return "ASSISTANT_" + name.upper()


def _coerce(value: str, kind: Any) -> Any:
    kind_name = kind if isinstance(kind, str) else getattr(kind, "__name__", str(kind))
    if "bool" in kind_name:
        if value.lower() in ("1", "true", "yes", "on"):
            return True
        if value.lower() in ("0", "false", "no", "off", ""):
            return False
        raise ValueError(f"expected a boolean (true/false), got {value!r}")
    if "int" in kind_name and "Path" not in kind_name:
        return int(value)
    if "float" in kind_name:
        return float(value)
    if "Path" in kind_name:
        return Path(value)
    return value


@dataclass
class Settings:
    data_dir: Path = Path("./data")
    host: str = "127.0.0.1"
    port: int = 7860
    # None: the bundled SmolLM2-135M-Instruct GGUF. Else a local HF model directory or a .gguf file.
    model_path: str | None = None
    dtype: str = "float32"  # float32 | bfloat16
    threads: int = 0  # 0: all cores while idle; the engine hands cores to a training job
    context_window: int = 2048  # prompt + answer tokens, capped by the model's own maximum
    default_max_tokens: int = 256
    max_tokens_limit: int = 1024  # requested max_tokens is clamped to this
    max_batch_size: int = 8
    queue_size: int = 64  # waiting requests beyond the running batch; more → 429
    request_timeout_s: float = 300.0
    max_messages: int = 100
    max_message_chars: int = 32_000
    max_body_bytes: int = 1_000_000
    chat_rate_per_minute: int = 60  # per user / IP
    feedback_rate_per_minute: int = 600
    allow_anonymous: bool = True
    admin_password: str | None = None
    admin_token: str | None = None
    require_review: bool = False
    auto_promote: bool = False
    canary_share: float = 0.0
    schedule_enabled: bool = False
    schedule_min_new_items: int = 50
    schedule_min_interval_s: float = 3600.0
    # Which engine answers chats (docs/scaling.md): "transformers" (in this process), "remote" (an
    # OpenAI-compatible server such as vLLM --enable-lora at backend_url) or a plugin's backend.
    # None: "remote" when backend_url is set, else "transformers".
    backend: str | None = None
    backend_url: str | None = None  # e.g. http://gpu-box:8000
    backend_api_key: str | None = None  # its API key; it must also be allowed to load/unload adapters
    backend_model: str | None = None  # the base model's name there; None: read from its /v1/models
    backend_adapters_dir: str | None = None  # where the backend sees adapters_dir; None: the same path
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir)
        if not 1 <= self.port <= 65535:
            raise ValueError(f"port must be 1..65535, got {self.port}")
        if self.dtype not in ("float32", "bfloat16"):
            raise ValueError(f"dtype must be float32 or bfloat16, got {self.dtype!r}")
        if self.max_batch_size < 1 or self.queue_size < 1:
            raise ValueError("max_batch_size and queue_size must be at least 1")
        if self.default_max_tokens > self.max_tokens_limit:
            self.default_max_tokens = self.max_tokens_limit
        if not 0.0 <= self.canary_share <= 1.0:
            raise ValueError(f"canary_share must be within 0..1, got {self.canary_share}")

    # Paths: all under data_dir.
    @property
    def db_path(self) -> Path:
        return self.data_dir / "assistant.db"

    @property
    def model_cache_dir(self) -> Path:
        return self.data_dir / "model-cache"

    @property
    def adapters_dir(self) -> Path:
        return self.data_dir / "adapters"

    @property
    def jobs_dir(self) -> Path:
        return self.data_dir / "jobs"

    @property
    def admin_token_path(self) -> Path:
        return self.data_dir / "admin-token"

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: Any) -> Settings:
        environ = dict(os.environ if environ is None else environ)
        values: dict[str, Any] = {}
        for f in fields(cls):
            if f.name == "extra":
                continue
            raw = environ.get(_env_name(f.name))
            if raw is not None:
                try:
                    values[f.name] = _coerce(raw, f.type)
                except ValueError as exc:
                    raise ValueError(f"{_env_name(f.name)}: {exc}") from None
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


def add_cli_flags(parser: argparse.ArgumentParser) -> None:
    """Flags for the settings a user changes most; every setting also has an ASSISTANT_* variable."""
    parser.add_argument("--host", help="interface to bind (ASSISTANT_HOST, default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (ASSISTANT_PORT, default 7860)")
    parser.add_argument("--data-dir", type=Path, help="where everything is written (ASSISTANT_DATA_DIR)")
    parser.add_argument("--model-path", help="HF model directory or .gguf file (ASSISTANT_MODEL_PATH)")
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], help="weights dtype")
    parser.add_argument("--max-batch-size", type=int, help="concurrent chats decoded together")


def settings_from_args(args: argparse.Namespace) -> Settings:
    names = ("host", "port", "data_dir", "model_path", "dtype", "max_batch_size", "backend_url")
    return Settings.from_env(**{n: getattr(args, n, None) for n in names})
