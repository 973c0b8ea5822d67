"""Example assistant plugin: a "pirate" tone and a curation filter that drops items with banned words.

Installed, it is found through the `assistant` entry point in pyproject.toml; in tests it can also be
registered directly: `assistant.plugins.pm.register(assistant_plugin_example)`.
"""

from __future__ import annotations

import os
import re
from typing import Any

from assistant.hookspecs import hookimpl

PIRATE = "Talk like a pirate: start with 'Arr!' and call the user 'matey', but keep the facts right."
# Placeholders: a deployment sets its own list with ASSISTANT_BANNED_WORDS=word,other word.
DEFAULT_BANNED_WORDS = ("frobnicator", "acme secret")


@hookimpl
def register_presets(register: Any) -> None:
    register("tone", "pirate", PIRATE)


@hookimpl
def register_curation_filters(register: Any) -> None:
    register(BannedWordsFilter(banned_words()))


def banned_words() -> tuple[str, ...]:
    raw = os.environ.get("ASSISTANT_BANNED_WORDS")
    if raw is None:
        return DEFAULT_BANNED_WORDS
    return tuple(word.strip() for word in raw.split(",") if word.strip())


def _texts(value: Any) -> list[str]:
    """Every message content inside an item's training columns (messages, prompt, chosen, ...)."""
    if isinstance(value, dict):
        content = value.get("content")
        return [content] if isinstance(content, str) else []
    if isinstance(value, list):
        return [text for part in value for text in _texts(part)]
    return []


class BannedWordsFilter:
    """Drops items whose prompt or answer mentions a banned word (whole words, any case)."""

    name = "banned-words"

    def __init__(self, words: tuple[str, ...]) -> None:
        self.words = words
        alternatives = "|".join(re.escape(w) for w in words)
        self.pattern = re.compile(rf"\b(?:{alternatives})\b", re.IGNORECASE) if words else None

    def __call__(self, items: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        kept: list[dict[str, Any]] = []
        dropped: list[dict[str, Any]] = []
        for item in items:
            text = "\n".join(_texts([item.get(key) for key in ("messages", "prompt", "chosen", "rejected",
                                                              "completion")]))
            found = self.pattern.search(text) if self.pattern is not None else None
            if found:
                dropped.append({"item": item, "filter": self.name, "reason": f"mentions {found.group(0)!r}"})
            else:
                kept.append(item)
        return kept, dropped
