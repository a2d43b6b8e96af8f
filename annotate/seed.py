"""`seed_demo`: a store ready to label within a minute, for `make demo`.

It creates the project "demo" from the bundled Vietnamese sample, with guidelines, plus one admin
and one annotator, and writes their sign-in tokens to `out_dir/demo-tokens.json` (mode 600),
since the store keeps only hashes. Running it again on the same store and folder is a no-op that
returns the same tokens.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from prefkit.annotate.store import Store
from prefkit.core.atomic import atomic_path
from prefkit.core.errors import ConfigError
from prefkit.data.demo import sample_path
from prefkit.data.readers import read_pairs

SAMPLE = sample_path()
GUIDELINES = Path(__file__).resolve().parent / "static" / "demo_guidelines.md"
PROJECT = "demo"
ADMIN, ANNOTATOR = "demo-admin", "demo-annotator"
TOKENS_FILE = "demo-tokens.json"


def seed_demo(db_url: str, out_dir: str | Path, sample: str | Path = SAMPLE) -> tuple[str, str]:
    """Seed the demo project and accounts; returns (admin_token, annotator_token)."""
    tokens_file = Path(out_dir) / TOKENS_FILE
    with Store.open(db_url) as store:
        # calibration pairs need both demo accounts, not the default 2 × overlap (four
        # annotators that the demo does not have: it could never finish)
        store.ensure_project(
            PROJECT,
            guidelines=GUIDELINES.read_text(encoding="utf-8"),
            overlap=2,
            calibration=0.1,
            calibration_overlap=2,
        )
        store.import_pairs(PROJECT, read_pairs(sample))  # idempotent by pair id

        existing = {u.name for u in store.list_users()}
        if {ADMIN, ANNOTATOR} & existing:
            saved = json.loads(tokens_file.read_text(encoding="utf-8")) if tokens_file.exists() else {}
            admin, annotator = saved.get(ADMIN, ""), saved.get(ANNOTATOR, "")
            if store.authenticate(admin) is None or store.authenticate(annotator) is None:
                raise ConfigError(
                    f"the store {db_url} already has demo accounts whose tokens are not in {tokens_file}; "
                    "start from a fresh store"
                )
            return admin, annotator

        admin, annotator = store.add_user(ADMIN, admin=True), store.add_user(ANNOTATOR)
        with atomic_path(tokens_file) as tmp:
            os.chmod(tmp, 0o600)  # before the tokens are in it: never readable by others, not for a moment
            tmp.write_text(json.dumps({ADMIN: admin, ANNOTATOR: annotator}, indent=2) + "\n", encoding="utf-8")
        return admin, annotator
