"""Test helpers shared by several test modules: the tiny model, a server on a free port."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any


def build_tiny_model(target: Path) -> Path:
    """A random 2-layer Llama with the bundled tokenizer, saved as a HF directory (seconds to build)."""
    from assistant.model import bundled_gguf, ensure_cache, load_tokenizer, resolve_source

    if (target / "config.json").is_file():
        return target
    real_dir = ensure_cache(resolve_source(None), target.parent / "model-cache")
    tokenizer = load_tokenizer(real_dir)
    assert bundled_gguf().is_file()
    return save_random_llama(target, tokenizer, hidden_size=16, intermediate_size=32)


def save_random_llama(target: Path, tokenizer: Any, **config: Any) -> Path:
    """A seeded random 2-layer Llama with `tokenizer`, saved as a HF directory; `config` overrides sizes."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    llama = LlamaConfig(
        vocab_size=len(tokenizer),
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
        **config,
    )
    LlamaForCausalLM(llama).save_pretrained(target, safe_serialization=True)
    tokenizer.save_pretrained(target)
    return target


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
