"""From the live database to training files: events → curate → review queue → export.

This is what `python -m assistant export datasets`, the admin Data tab and every training job call, so
all three see the same datasets (identified by the same dataset hash).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from feedback.curate import CurationConfig, CurationResult, curate
from feedback.export import export_datasets
from feedback.review import apply_review, sync_queue
from feedback.store import Store


def admin_names(store: Store) -> set[str]:
    return {row["name"] for row in store.query("SELECT name FROM users WHERE role = 'admin'")}


def curation_config(store: Store, *, require_review: bool = False, **overrides: Any) -> CurationConfig:
    """Admins are trusted raters (their 👍 also feeds SFT); plugins may add filters."""
    extra: list[Any] = []
    try:
        from assistant.plugins import get_curation_filters

        extra = list(get_curation_filters())
    except ImportError:  # plugins are optional
        pass
    return CurationConfig(
        trusted_raters=admin_names(store), require_review=require_review, extra_filters=extra, **overrides
    )


def curate_store(store: Store, config: CurationConfig) -> CurationResult:
    """Curate everything stored, queue what needs a human, keep only what may train."""
    result = curate(store.events(), config)
    sync_queue(result, store, store.write)
    return apply_review(result, store)


def build_datasets(store: Store, settings: Any, out_dir: Path) -> dict[str, Any]:
    config = curation_config(store, require_review=bool(getattr(settings, "require_review", False)))
    return export_datasets(curate_store(store, config), out_dir)
