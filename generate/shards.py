"""Resumable output: Parquet shards written as the run goes, a manifest, and `report.json`.

A shard holds the pairs of one step of `shard_size` prompts. Each shard is written to a temporary
file and renamed, then the manifest (the prompt ids the shard finished) is rewritten the same way,
so a run killed at any instant leaves only complete shards that the manifest accounts for. A
shard file with no manifest entry (killed between the two renames) is simply rewritten on resume.
The report is rebuilt from the manifest after every shard, so it is current even after a crash.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from prefkit.core.errors import ConfigError
from prefkit.core.writers import write_json
from prefkit.data.schema import Pair
from prefkit.data.writers import write_pairs

MANIFEST = "manifest.json"
REPORT = "report.json"
SHARD_NAME = "shard-{:05d}.parquet"
MANIFEST_VERSION = 1


@dataclass
class StepStats:
    """What one step (one shard) did."""

    prompt_ids: list[str]
    pairs: int = 0
    responses: int = 0
    truncated: int = 0  # responses with finish reason "length"
    truncated_pairs: int = 0  # kept pairs with a truncated response
    tokens: int = 0
    seconds: float = 0.0
    skipped: list[dict[str, Any]] = field(default_factory=list)
    dropped: list[dict[str, Any]] = field(default_factory=list)


PART_FILE = re.compile(r"part-(\d+)-of-(\d+)\.")


class PartNames:
    """File names of a whole run (`shard-00000.parquet`, `manifest.json`, `report.json`) or of part
    I of N of a data-parallel run (`part-001-of-004.shard-00000.parquet`, `part-001-of-004.manifest.json`,
    ...): the parts of one split share a folder without touching each other's files, and every
    shard is a `*.parquet` at the top of the folder, so readers of a Parquet folder read them all."""

    def __init__(self, part: tuple[int, int] | None) -> None:
        self.part = part
        self.prefix = "" if part is None else f"part-{part[0]:03d}-of-{part[1]:03d}."
        self.manifest = self.prefix + MANIFEST
        self.report = self.prefix + REPORT

    def shard(self, k: int) -> str:
        return self.prefix + SHARD_NAME.format(k)

    def is_sibling(self, name: str) -> bool:
        """A file of another part of the same N."""
        m = PART_FILE.match(name)
        return (
            m is not None
            and self.part is not None
            and int(m.group(2)) == self.part[1]
            and int(m.group(1)) != self.part[0]
        )


class ShardWriter:
    """Writes shards into `out` and tracks what is done; refuses to mix two different runs."""

    def __init__(
        self, out: Path, fingerprint: dict[str, Any], *, resume: bool, part: tuple[int, int] | None = None
    ) -> None:
        self.out = Path(out)
        self.fingerprint = fingerprint if part is None else {**fingerprint, "parts": part[1]}
        self.names = PartNames(part)
        if self.out.exists() and not self.out.is_dir():
            raise ConfigError(f"{self.out} is a file; the output must be a folder")
        manifest_path = self.out / self.names.manifest
        if manifest_path.exists():
            if not resume:
                raise ConfigError(
                    f"{self.out} already holds a generation run ({self.names.manifest}); pass --resume to continue it, "
                    "or choose another output folder"
                )
            self.manifest = self._load(manifest_path)
        else:
            if self.out.exists():
                self._check_siblings()
            self.manifest = {"version": MANIFEST_VERSION, "fingerprint": self.fingerprint, "steps": [], "input": {}}
        # Temp files of a killed write of this run (part); other parts may be writing theirs right now.
        for stale in self.out.glob(f".{self.names.prefix}*.tmp"):
            stale.unlink(missing_ok=True)
        self.done_ids: set[str] = {pid for s in self.manifest["steps"] for pid in s["prompt_ids"]}

    def _check_siblings(self) -> None:
        """A fresh run needs an empty folder; a fresh part may join a folder holding only other
        parts of the same split (same N, same settings)."""
        others = [p for p in self.out.iterdir() if not p.name.startswith(".")]
        if not others:
            return
        if self.names.part is None:
            raise ConfigError(f"{self.out} is not empty and holds no generation run; choose another output folder")
        if not all(self.names.is_sibling(p.name) for p in others):
            raise ConfigError(
                f"{self.out} is not empty and holds more than other parts of a {self.names.part[1]}-way split; "
                "choose another output folder"
            )
        for path in sorted(p for p in others if p.name.endswith("." + MANIFEST)):
            sibling = self._read(path).get("fingerprint", {})
            changed = sorted(
                k for k in set(sibling) | set(self.fingerprint) if sibling.get(k) != self.fingerprint.get(k)
            )
            if changed:
                detail = "; ".join(f"{k}: {sibling.get(k)!r} -> {self.fingerprint.get(k)!r}" for k in changed)
                raise ConfigError(
                    f"{path}: another part of this folder ran with different settings ({detail}); "
                    "use the same settings for every part, or another output folder"
                )

    def _read(self, path: Path) -> dict[str, Any]:
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise ConfigError(f"{path}: unreadable manifest ({e})") from None

    def _load(self, path: Path) -> dict[str, Any]:
        manifest = self._read(path)
        if manifest.get("version") != MANIFEST_VERSION:
            raise ConfigError(f"{path}: manifest version {manifest.get('version')!r}, expected {MANIFEST_VERSION}")
        old = manifest.get("fingerprint", {})
        changed = sorted(k for k in set(old) | set(self.fingerprint) if old.get(k) != self.fingerprint.get(k))
        if changed:
            detail = "; ".join(f"{k}: {old.get(k)!r} -> {self.fingerprint.get(k)!r}" for k in changed)
            raise ConfigError(
                f"{self.out}: --resume with different settings than the run being resumed ({detail}); "
                "use the original settings or a new output folder"
            )
        return manifest

    def set_input(self, **info: Any) -> None:
        """What this session read (prompt counts, unreadable rows); replaced on every resume."""
        self.manifest["input"] = info
        self.manifest["complete"] = False
        # Created only now, after the models loaded: a run that fails before leaves no empty folder.
        self.out.mkdir(parents=True, exist_ok=True)
        self._save()

    def write(self, pairs: Sequence[Pair], stats: StepStats) -> Path:
        path = self.out / self.names.shard(len(self.manifest["steps"]))
        write_pairs(pairs, path)  # typed columns: an all-null column types the same in every shard
        self.manifest["steps"].append({"shard": path.name, **asdict(stats)})
        self.done_ids.update(stats.prompt_ids)
        self._save()
        return path

    def finish(self) -> dict[str, Any]:
        self.manifest["complete"] = True
        return self._save()

    def _save(self) -> dict[str, Any]:
        write_json(self.out / self.names.manifest, self.manifest, indent=None)
        report = build_report(self.manifest)
        write_json(self.out / self.names.report, report)
        return report


def _by_reason(items: list[dict[str, Any]]) -> dict[str, int]:
    return dict(sorted(Counter(it["reason"] for it in items).items()))


def build_report(manifest: dict[str, Any]) -> dict[str, Any]:
    steps = manifest["steps"]
    inp = manifest.get("input", {})
    skipped = list(inp.get("unreadable", [])) + [s for st in steps for s in st["skipped"]]
    dropped = [d for st in steps for d in st["dropped"]]
    seconds = sum(st["seconds"] for st in steps)
    tokens = sum(st["tokens"] for st in steps)
    done = sum(len(st["prompt_ids"]) for st in steps)
    return {
        "complete": bool(manifest.get("complete")),
        "settings": manifest["fingerprint"],
        "prompts": {"read": inp.get("prompts"), "done": done, "unreadable_rows": len(inp.get("unreadable", []))},
        "pairs": sum(st["pairs"] for st in steps),
        "shards": [st["shard"] for st in steps],
        "responses": sum(st["responses"] for st in steps),
        "truncated": {
            "responses": sum(st["truncated"] for st in steps),
            "pairs_kept": sum(st["truncated_pairs"] for st in steps),
        },
        "skipped": {"count": len(skipped), "by_reason": _by_reason(skipped), "rows": skipped},
        "dropped": {"count": len(dropped), "by_reason": _by_reason(dropped), "pairs": dropped},
        "throughput": {
            "seconds": round(seconds, 3),
            "tokens": tokens,
            "prompts_per_s": round(done / seconds, 3) if seconds else None,
            "tokens_per_s": round(tokens / seconds, 1) if seconds else None,
        },
    }
