"""The running application's parts, passed to API routes and UI builders (no globals)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .settings import Settings


@dataclass
class AppContext:
    settings: Settings
    engine: Any  # assistant.engine.Engine
    store: Any  # feedback.store.Store
    model_dir: Path  # loadable HF directory of the base model (safetensors cache)
    model_id: str
    admin_token: str = ""
    extras: dict[str, Any] = field(default_factory=dict)  # later parts: registry, jobs, scheduler
