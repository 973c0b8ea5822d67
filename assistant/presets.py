"""Controllability presets: tone, format, safety and "say you don't know", composed into a system prompt.

The seed's point: an instruction-tuned model is steered by plain instructions. Each choice adds one
sentence; the user's own system prompt comes first.

Plugins add presets through the `register_presets` hook (assistant/hookspecs.py); the shipped ones below
are registered the same way (assistant/builtin_plugins.py). `TONES`, `FORMATS` and `SAFETY` are live
read-only views of what is registered now, so a plugin's preset is offered and composed like a shipped one.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

SHIPPED_TONES: dict[str, str] = {
    "neutral": "",
    "friendly": "Use a warm, friendly and encouraging tone.",
    "formal": "Use a formal, professional tone.",
    "concise": "Be concise: answer in as few words as possible.",
}
SHIPPED_FORMATS: dict[str, str] = {
    "free": "",
    "bullet list": "Format the answer as a bullet list, one point per line starting with '- '.",
    "numbered steps": "Format the answer as numbered steps: '1. ', '2. ', ...",
    "JSON": "Answer with valid JSON only, no text before or after it.",
}
SHIPPED_SAFETY: dict[str, str] = {
    "standard": "",
    "strict": (
        "Refuse requests that could cause harm, briefly say why, and offer a safe alternative. "
        "Do not refuse harmless questions."
    ),
}
SHIPPED_PRESETS: dict[str, dict[str, str]] = {
    "tone": SHIPPED_TONES,
    "format": SHIPPED_FORMATS,
    "safety": SHIPPED_SAFETY,
}


class PresetTable(Mapping[str, str]):
    """One kind of preset (name → instruction) as registered now: the shipped ones, then plugins'."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def _table(self) -> dict[str, str]:
        return _tables()[self.kind]

    def __getitem__(self, name: str) -> str:
        return self._table()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._table())

    def __len__(self) -> int:
        return len(self._table())

    def __repr__(self) -> str:
        return f"PresetTable({self.kind!r}, {self._table()!r})"


TONES = PresetTable("tone")
FORMATS = PresetTable("format")
SAFETY = PresetTable("safety")

IDK_INSTRUCTION = (
    'If you are not sure of the answer, or it cannot be known, say "I don\'t know" instead of guessing.'
)
DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant."


@dataclass(frozen=True)
class Presets:
    tone: str = "neutral"
    format: str = "free"
    safety: str = "standard"
    say_idk: bool = True

    def __post_init__(self) -> None:
        tables = _tables()
        for value, name in ((self.tone, "tone"), (self.format, "format"), (self.safety, "safety")):
            if value not in tables[name]:
                raise ValueError(f"unknown {name} {value!r}; choose one of {', '.join(tables[name])}")

    def as_dict(self) -> dict[str, object]:
        return {"tone": self.tone, "format": self.format, "safety": self.safety, "say_idk": self.say_idk}


def compose_system_prompt(user_system_prompt: str | None, presets: Presets) -> str:
    tables = _tables()
    parts = [(user_system_prompt or "").strip() or DEFAULT_SYSTEM_PROMPT]
    parts += [
        tables["tone"][presets.tone],
        tables["format"][presets.format],
        tables["safety"][presets.safety],
    ]
    if presets.say_idk:
        parts.append(IDK_INSTRUCTION)
    return " ".join(p for p in parts if p)


def _tables() -> dict[str, dict[str, str]]:
    """Every preset kind at once (one pass over the plugins)."""
    from .plugins import get_presets

    return get_presets()
