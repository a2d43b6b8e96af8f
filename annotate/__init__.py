"""Annotate room: the annotation store (projects, pairs, users, the work queue, judgements),
agreement statistics, and the Streamlit app that annotators use.

Public API (imported lazily so that `prefkit` starts fast)::

    from annotate import Store
    store = Store.open("annotations.db")
"""

from __future__ import annotations

from typing import Any

_LAZY = {
    "Store": "annotate.store",
    "Assignment": "annotate.store",
    "ImportResult": "annotate.store",
    "Progress": "annotate.store",
    "Project": "annotate.store",
    "User": "annotate.store",
    "Dashboard": "annotate.dashboard_data",
    "AgreementReport": "annotate.agreement",
    "agreement": "annotate.agreement",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'annotate' has no attribute {name!r}")
