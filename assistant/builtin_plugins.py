"""What ships with the assistant, registered as the plugin "builtin": a plugin can do all of this too.

- presets: the tone / format / safety choices of assistant/presets.py;
- model backends: "transformers" (the in-process torch engine) and "remote" (an OpenAI-compatible server,
  e.g. vLLM, at ASSISTANT_BACKEND_URL);
- gate evaluators: the regression-check kinds of training/regression_checks.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .hookspecs import hookimpl


@hookimpl
def register_presets(register: Any) -> None:
    from .presets import SHIPPED_PRESETS

    for kind, table in SHIPPED_PRESETS.items():
        for name, instruction in table.items():
            register(kind, name, instruction)


@hookimpl
def register_model_backends(register: Any) -> None:
    register("transformers", transformers_engine)
    register("remote", remote_engine)


@hookimpl
def register_gate_evaluators(register: Any) -> None:
    try:
        from training.regression_checks import CHECKS
    except ModuleNotFoundError:  # a serving-only install without the training package
        return
    for kind, check in CHECKS.items():
        register(kind, check)


def transformers_engine(settings: Any, model_dir: Path, model_id: str) -> Any:
    """The model in this process: one torch thread, dynamic batching, LoRA hot-swap (assistant/engine.py)."""
    from .engine import Engine
    from .model import load_model, load_tokenizer

    return Engine(
        load_model(model_dir, settings.dtype),
        load_tokenizer(model_dir),
        model_id=model_id,
        context_window=settings.context_window,
        max_tokens_limit=settings.max_tokens_limit,
        default_max_tokens=settings.default_max_tokens,
        max_batch_size=settings.max_batch_size,
        queue_size=settings.queue_size,
        threads=settings.threads,
        request_timeout_s=settings.request_timeout_s,  # waiting included; past it: finish_reason timeout
    ).start()


def remote_engine(settings: Any, model_dir: Path | None, model_id: str) -> Any:
    """Chats stream from ASSISTANT_BACKEND_URL; versions load there (assistant/remote.py)."""
    from .remote import RemoteEngine

    return RemoteEngine.from_settings(settings, model_dir, model_id).start()
