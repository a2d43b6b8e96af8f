"""Reading the exported preference dataset and shaping it for each TRL trainer.

Sources: a `save_to_disk` folder (what `prefkit data export` writes), a Parquet/JSONL/JSON file,
a folder of per-split files, a path with a `{split}` placeholder (`out/{split}.parquet`), or a
Hub id. Rows become conversational examples (system/user/assistant messages) so every trainer
applies the model's own chat template:

- SFT: `messages` = [system?, user: question, assistant: chosen]; system: the row's, else
  `data.system_prompt`
- reward / DPO: `prompt` = [system?, user: question], `chosen` / `rejected` = [assistant: …],
  plus `margin` (reward) and `strength` (for per-strength accuracy).

A missing column or an empty field is a `DataError` naming the source, the row and the field.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from data.errors import DataError
from data.schema import MarginScheme, Prompt, Strength
from train.config import DataConfig

if TYPE_CHECKING:
    from datasets import Dataset

# per-split files in one folder: <split>.jsonl as `prefkit data export --jsonl` writes them (jsonl/),
# <split>-*.parquet shards as `--parquet` writes them (data/)
_SPLIT_FILE_PATTERNS = ("{split}.parquet", "{split}.jsonl", "{split}.jsonl.gz", "{split}.json", "{split}-*.parquet")


def load_split(cfg: DataConfig, split: str) -> "Dataset":
    """One split of `cfg.source` as a `datasets.Dataset` (first `max_rows` rows when set)."""
    if not cfg.source:
        raise DataError("data.source is empty: give an exported dataset folder, a file, or a Hub id")
    ds = _load(cfg.source, split)
    if cfg.max_rows is not None:
        ds = ds.select(range(min(cfg.max_rows, len(ds))))
    return ds


def _load(source: str, split: str) -> "Dataset":
    """Formats are resolved by `data.sources`; only the split logic lives here."""
    from data.sources import source_kind

    if "{split}" in source:
        return _from_rows([source.format(split=split)], None, split)
    path = Path(source)
    if path.is_dir():
        for pattern in _SPLIT_FILE_PATTERNS:
            files = sorted(path.glob(pattern.format(split=split)))
            if files:
                return _from_rows([str(f) for f in files], None, split)
    kind = source_kind(source)
    if kind == "missing":
        raise DataError("no such file or folder (and not a Hub dataset id)", file=source)
    if kind == "disk":
        return _from_disk(path, split)
    if kind != "hub" and split != "train":  # a file or a folder of generate's Parquet shards
        raise DataError(
            f"a single file holds only the 'train' split, asked for {split!r}: write the path as "
            f"'…/{{split}}.jsonl' for per-split files, or set data.test_split=null",
            file=path,
        )
    return _from_rows([source], split if kind == "hub" else None, split)


def _from_disk(path: Path, split: str) -> "Dataset":
    import datasets

    if not ((path / "dataset_dict.json").exists() or (path / "state.json").exists()):
        raise DataError(f"no save_to_disk dataset and no {split}.parquet/.jsonl/.json file here", file=path)
    loaded = datasets.load_from_disk(str(path))
    if isinstance(loaded, datasets.DatasetDict):
        if split not in loaded:
            raise DataError(f"no split {split!r} (splits: {', '.join(loaded)})", file=path)
        return loaded[split]
    if split != "train":
        raise DataError(f"a single saved Dataset holds only 'train', asked for {split!r}", file=path)
    return loaded


def _from_rows(sources: list[str], source_split: str | None, split: str) -> "Dataset":
    """Every record of files, a Parquet-shard folder or a Hub split (errors name file and line/row)."""
    from datasets import Dataset

    from data.sources import read_rows, source_kind

    rows = []
    for source in sources:
        if source_kind(source) == "missing":
            raise DataError(f"no such file for split {split!r}", file=source)
        rows += [rec for _, rec in read_rows(source, source_split)]
    columns = dict.fromkeys(k for rec in rows for k in rec)  # every column any row has, in first-seen order
    return Dataset.from_dict({k: [rec.get(k) for rec in rows] for k in columns})


def load_prompts(cfg: DataConfig) -> list[Prompt]:
    """The prompts of `source` / `split` (any prompt format with a question), first `max_rows`:
    what PPO, RLOO/GRPO and best-of-K sample from."""
    from data.readers import read_prompts

    prompts = read_prompts(cfg.source, cfg.split)
    if cfg.max_rows is not None:
        prompts = prompts[: cfg.max_rows]
    if not prompts:
        raise DataError("no prompts", file=cfg.source)
    return prompts


def require_columns(ds: "Dataset", columns: list[str], source: str) -> None:
    missing = [c for c in columns if c not in ds.column_names]
    if missing:
        raise DataError(
            f"missing column(s) {', '.join(missing)} (columns: {', '.join(ds.column_names)})",
            file=source,
            field=missing[0],
        )


def _texts(ds: "Dataset", column: str, source: str) -> list[str]:
    values = ds[column]
    for i, v in enumerate(values):
        if not isinstance(v, str) or not v.strip():
            raise DataError(f"empty or not text: {v!r}", file=source, row=i, field=column)
    return values


def _prompts(ds: "Dataset", cfg: DataConfig) -> list[list[dict[str, str]]]:
    questions = _texts(ds, cfg.question_column, cfg.source)
    systems = ds[cfg.system_column] if cfg.system_column and cfg.system_column in ds.column_names else None
    out = []
    for i, q in enumerate(questions):
        system = systems[i] if systems is not None else None
        if not (isinstance(system, str) and system.strip()):
            system = cfg.system_prompt  # the config's system prompt, where the row has none
        msgs = [{"role": "system", "content": system}] if isinstance(system, str) and system.strip() else []
        out.append([*msgs, {"role": "user", "content": q}])
    return out


def sft_dataset(ds: "Dataset", cfg: DataConfig) -> "Dataset":
    """`messages` rows (system?, user, assistant=chosen) for TRL's SFTTrainer."""
    from datasets import Dataset

    require_columns(ds, [cfg.question_column, cfg.chosen_column], cfg.source)
    prompts = _prompts(ds, cfg)
    chosen = _texts(ds, cfg.chosen_column, cfg.source)
    return Dataset.from_dict(
        {"messages": [p + [{"role": "assistant", "content": c}] for p, c in zip(prompts, chosen)]}
    )


def margins(ds: "Dataset", cfg: DataConfig, scheme: str) -> list[float]:
    """Each pair's margin: from its strength under `scheme` (none/small/large), or the margin column."""
    if scheme == "column":
        require_columns(ds, [cfg.margin_column], cfg.source)
        values = ds[cfg.margin_column]
        for i, v in enumerate(values):
            if v is None or isinstance(v, bool) or not isinstance(v, (int, float)) or v != v:
                raise DataError(f"not a number: {v!r}", file=cfg.source, row=i, field=cfg.margin_column)
        return [float(v) for v in values]
    if cfg.strength_column not in ds.column_names:  # e.g. hh-rlhf: no strength, so no margin
        return [0.0] * len(ds)
    return [s.margin(MarginScheme(scheme)) if s is not None else 0.0 for s in strengths(ds, cfg)]


def strengths(ds: "Dataset", cfg: DataConfig) -> list[Strength | None]:
    """Each pair's strength (None where the row has none, or the column is absent)."""
    if cfg.strength_column not in ds.column_names:
        return [None] * len(ds)
    out: list[Strength | None] = []
    for i, v in enumerate(ds[cfg.strength_column]):
        if v is None or (isinstance(v, float) and v != v):
            out.append(None)
            continue
        try:
            out.append(Strength.parse(v))
        except ValueError as e:
            raise DataError(str(e), file=cfg.source, row=i, field=cfg.strength_column) from None
    return out


def preference_dataset(ds: "Dataset", cfg: DataConfig, *, margin_scheme: str | None = None) -> "Dataset":
    """Conversational `prompt` / `chosen` / `rejected` rows (+ `margin` when a scheme is given, + `strength`)."""
    from datasets import Dataset

    require_columns(ds, [cfg.question_column, cfg.chosen_column, cfg.rejected_column], cfg.source)
    chosen = _texts(ds, cfg.chosen_column, cfg.source)
    rejected = _texts(ds, cfg.rejected_column, cfg.source)
    columns: dict[str, Any] = {
        "prompt": _prompts(ds, cfg),
        "chosen": [[{"role": "assistant", "content": c}] for c in chosen],
        "rejected": [[{"role": "assistant", "content": r}] for r in rejected],
        "strength": [s.value if s is not None else None for s in strengths(ds, cfg)],
    }
    if margin_scheme is not None:
        columns["margin"] = margins(ds, cfg, margin_scheme)
    return Dataset.from_dict(columns)
