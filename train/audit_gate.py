"""The audit gate before SFT, reward and DPO training: the red flags of `prefkit data audit`.

`prefkit data export` writes the audit of what it exported into the dataset folder (`audit.json`);
`prefkit data audit DATASET --out DIR` writes one anywhere (`audit_file` points a run at it). The
run's `audit` setting decides what the flags do:

- `warn` (default): each red flag is logged (stderr), once the output folder is accepted, and training goes on;
- `strict`: the run stops before loading any model, exit 2, naming every flag;
- `off`: the audit is not read.

No audit found (a plain file, an export made before audits) is no flag; an `audit_file` that
cannot be read is a `DataError`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from prefkit.core.errors import DataError
from prefkit.data.audit_config import AUDIT_JSON

log = logging.getLogger(__name__)


class AuditFailed(DataError):
    """`audit: strict` and the audit has red flags (exit 2)."""


def find_audit(cfg: Any) -> Path | None:
    """The audit a run reads: `audit_file`, else `data.source/audit.json` when it exists."""
    if cfg.audit_file:
        return Path(cfg.audit_file)
    candidate = Path(cfg.data.source) / AUDIT_JSON
    return candidate if candidate.is_file() else None


def red_flags(cfg: Any) -> list[dict[str, Any]]:
    """The audit's red flags for this run (empty when there is no audit or `audit: off`)."""
    if cfg.audit == "off":
        return []
    path = find_audit(cfg)
    if path is None:
        return []
    try:
        audit = json.loads(path.read_text(encoding="utf-8"))
        flags = audit["red_flags"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DataError(f"cannot read the audit ({type(e).__name__}: {e})", file=path, field="audit_file") from None
    if not isinstance(flags, list) or not all(isinstance(f, dict) and "name" in f for f in flags):
        raise DataError("red_flags is not a list of flags", file=path, field="red_flags")
    return flags


def check_audit(cfg: Any) -> list[dict[str, Any]]:
    """The red flags; with `strict`, stop on them (`AuditFailed`). The caller logs them with
    `log_red_flags` once its output folder is accepted (a refused output stays one line)."""
    flags = red_flags(cfg)
    if not flags:
        return flags
    names = ", ".join(f["name"] for f in flags)
    if cfg.audit == "strict":
        first = flags[0].get("message", "")
        raise AuditFailed(
            f"audit: strict and {len(flags)} red flag(s): {names} (first: {first}); fix the data, or run with "
            "--set audit=warn",
            file=find_audit(cfg),
        )
    return flags


def log_red_flags(flags: list[dict[str, Any]]) -> None:
    """`audit: warn`: one warning per red flag (stderr)."""
    for f in flags:
        log.warning("audit red flag %s: %s", f["name"], f.get("message", ""))
