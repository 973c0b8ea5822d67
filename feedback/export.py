"""Write curated datasets as JSONL in TRL 1.16's conversational formats, plus a manifest.

    manifest = export_datasets(result, data_dir / "datasets" / result.dataset_hash[:12])
    ds = datasets.load_dataset("json", data_files=str(out / "dpo.jsonl"), split="train")

Files: ``sft.jsonl`` / ``dpo.jsonl`` / ``kto.jsonl`` (train),
``heldout_{sft,dpo,kto}.jsonl`` (for the gate) and ``manifest.json``.
Each row is ``{"id", <TRL columns>}``; provenance (``meta``) goes to the
manifest instead, so the trainers see only columns they know or ignore.
Every file is written to a temp file and renamed into place, the manifest
last: a manifest whose file hashes match means a complete export.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from feedback.curate import CurationResult
from feedback.filters import KINDS, Item, trl_row

MANIFEST = "manifest.json"
FORMAT = "trl-conversational-v1"


def dataset_files(result: CurationResult) -> dict[str, list[Item]]:
    """File name -> items, in a fixed order."""
    files = {f"{kind}.jsonl": result.train(kind) for kind in KINDS}
    files.update({f"heldout_{kind}.jsonl": result.heldout[kind] for kind in KINDS})
    return files


def export_datasets(result: CurationResult, out_dir: Path | str) -> dict[str, Any]:
    """Write the six JSONL files and ``manifest.json`` into ``out_dir``; returns the manifest."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, dict[str, Any]] = {}
    sources: dict[str, list[str]] = {}
    for name, items in dataset_files(result).items():
        text = "".join(json.dumps(trl_row(it), ensure_ascii=False, sort_keys=True) + "\n" for it in items)
        atomic_write_text(out / name, text)
        files[name] = {"rows": len(items), "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest()}
        sources.update({it["id"]: list(it["meta"].get("source_ids", [])) for it in items})
    manifest = {
        "format": FORMAT,
        "dataset_hash": result.dataset_hash,
        "created_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "counts": {name: info["rows"] for name, info in files.items()},
        "files": files,
        "needs_review": len(result.needs_review),
        "filters": list(result.filters),
        "report": result.report,
        "sources": dict(sorted(sources.items())),
    }
    atomic_write_text(
        out / MANIFEST, json.dumps(manifest, ensure_ascii=False, indent=2, sort_keys=True) + "\n"
    )
    return manifest


def export_feedback_jsonl(rows: Iterable[Mapping[str, Any]], path: Path | str) -> int:
    """Raw feedback rows (ratings, comparisons, ...) as JSONL; returns the row count.

    Values JSON can't hold (datetimes, bytes) are written as strings.
    """
    lines = [json.dumps(dict(row), ensure_ascii=False, sort_keys=True, default=str) + "\n" for row in rows]
    atomic_write_text(Path(path), "".join(lines))
    return len(lines)


def atomic_write_text(path: Path, text: str) -> None:
    """Temp file in the same directory, fsync, then rename: readers see old or new, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
