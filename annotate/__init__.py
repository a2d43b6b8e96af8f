"""Annotate room: the annotation store (projects, pairs, users, the work queue, judgements),
agreement statistics, and the Streamlit app that annotators use.

Public API (imported lazily so that `prefkit` starts fast)::

    from prefkit.annotate import Store
    store = Store.open("annotations.db")
"""

from __future__ import annotations

from typing import Any

_LAZY = {
    "Store": "prefkit.annotate.store",
    "Assignment": "prefkit.annotate.store",
    "ImportResult": "prefkit.annotate.store",
    "Progress": "prefkit.annotate.store",
    "Project": "prefkit.annotate.store",
    "User": "prefkit.annotate.store",
    "Dashboard": "prefkit.annotate.dashboard_data",
    "AgreementReport": "prefkit.annotate.agreement",
    "agreement": "prefkit.annotate.agreement",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'annotate' has no attribute {name!r}")
