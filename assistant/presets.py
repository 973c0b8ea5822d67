"""Controllability presets: tone, format, safety and "say you don't know", composed into a system prompt.

The seed's point: an instruction-tuned model is steered by plain instructions. Each choice adds one
sentence; the user's own system prompt comes first. Plugins can add presets (see hookspecs).
"""

from __future__ import annotations

from dataclasses import dataclass

TONES: dict[str, str] = {
    "neutral": "",
    "friendly": "Use a warm, friendly and encouraging tone.",
    "formal": "Use a formal, professional tone.",
    "concise": "Be concise: answer in as few words as possible.",
}
FORMATS: dict[str, str] = {
    "free": "",
    "bullet list": "Format the answer as a bullet list, one point per line starting with '- '.",
    "numbered steps": "Format the answer as numbered steps: '1. ', '2. ', ...",
    "JSON": "Answer with valid JSON only, no text before or after it.",
}
SAFETY: dict[str, str] = {
    "standard": "",
    "strict": (
        "Refuse requests that could cause harm, briefly say why, and offer a safe alternative. "
        "Do not refuse harmless questions."
    ),
}
IDK_INSTRUCTION = (
    "If you are not sure of the answer, or it cannot be known, say \"I don't know\" instead of guessing."
)
DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant."


@dataclass(frozen=True)
class Presets:
    tone: str = "neutral"
    format: str = "free"
    safety: str = "standard"
    say_idk: bool = True

    def __post_init__(self) -> None:
        for value, table, name in ((self.tone, TONES, "tone"), (self.format, FORMATS, "format"),
                                   (self.safety, SAFETY, "safety")):
            if value not in table:
                raise ValueError(f"unknown {name} {value!r}; choose one of {', '.join(table)}")

    def as_dict(self) -> dict[str, object]:
        return {"tone": self.tone, "format": self.format, "safety": self.safety, "say_idk": self.say_idk}


def compose_system_prompt(user_system_prompt: str | None, presets: Presets) -> str:
    parts = [(user_system_prompt or "").strip() or DEFAULT_SYSTEM_PROMPT]
    parts += [TONES[presets.tone], FORMATS[presets.format], SAFETY[presets.safety]]
    if presets.say_idk:
        parts.append(IDK_INSTRUCTION)
    return " ".join(p for p in parts if p)
