"""Feedback store: the SQLite database of conversations, ratings and reviews.

``feedback.store.Store`` is its single writer; see that module.
"""

from feedback.store import (
    ALLOWED_TAGS,
    NotFoundError,
    Store,
    StoreClosedError,
    ValidationError,
)

__all__ = [
    "ALLOWED_TAGS",
    "NotFoundError",
    "Store",
    "StoreClosedError",
    "ValidationError",
]
