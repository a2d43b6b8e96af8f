"""Reading the exported preference dataset and shaping it for each TRL trainer.

Sources: a `save_to_disk` folder (what `prefkit data export` writes), a Parquet/JSONL/JSON file,
a folder of per-split files, a path with a `{split}` placeholder (`out/{split}.parquet`), or a
Hub id. Rows become conversational examples (system/user/assistant messages) so every trainer
applies the model's own chat template over the whole conversation:

- SFT: `messages` = [system?, user, assistant, …, user: question, assistant: chosen]; system: the
  row's, else `data.system_prompt`
- reward / DPO: `prompt` = [system?, user, assistant, …, user: question], `chosen` / `rejected` =
  [assistant: …], plus `margin` (reward), `strength` and `safety_bin` (accuracy per level / bin).

The earlier turns come from the `history` column (JSON text, as `prefkit data export` writes it),
or the whole prompt from a `prompt` message-list column (an `export --trl` folder, TRL data);
`chosen` / `rejected` may be texts or one-assistant-message lists. `data.set: safety` keeps
Llama 2's safety set (adversarial or flagged pairs, without chosen-unsafe-rejected-safe), and a
folder `prefkit data export --sets` wrote is entered at its `helpfulness/` or `safety/` set.

A missing column or an empty field is a `DataError` naming the source, the row and the field.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from prefkit.core.errors import DataError
from prefkit.data.schema import MarginScheme, Prompt, Strength, in_safety_set, parse_turns
from prefkit.train.config import DataConfig

if TYPE_CHECKING:
    from datasets import Dataset

# what writes data.source, for the line saying it is not there
MADE_BY = (
    "the dataset is written by `prefkit annotate export --project P PATH` or `prefkit data export IN PATH` "
    "(set data.source in the config, or --set data.source=PATH)"
)

# per-split files in one folder: <split>.jsonl as `prefkit data export --jsonl` writes them (jsonl/),
# <split>-*.parquet shards as `--parquet` writes them (data/)
_SPLIT_FILE_PATTERNS = ("{split}.parquet", "{split}.jsonl", "{split}.jsonl.gz", "{split}.json", "{split}-*.parquet")


def load_split(cfg: DataConfig, split: str) -> Dataset:
    """One split of `cfg.source` as a `datasets.Dataset` (first `max_rows` rows when set)."""
    if not cfg.source:
        raise DataError("data.source is empty: give an exported dataset folder, a file, or a Hub id")
    ds = _load(set_source(cfg), split)
    if cfg.set == "safety" and not (Path(cfg.source) / "safety").is_dir():
        ds = _safety_rows(ds, cfg)
    if cfg.max_rows is not None:
        ds = ds.select(range(min(cfg.max_rows, len(ds))))
    return ds


def set_source(cfg: DataConfig) -> str:
    """`source`, or its `helpfulness/` / `safety/` folder when it holds Llama 2's sets."""
    if cfg.set and (Path(cfg.source) / cfg.set).is_dir():
        return str(Path(cfg.source) / cfg.set)
    if cfg.set and any((Path(cfg.source) / s).is_dir() for s in ("helpfulness", "safety")):
        raise DataError(f"no {cfg.set}/ set in this folder (export it with --sets)", file=cfg.source, field="set")
    return cfg.source


def _safety_rows(ds: Dataset, cfg: DataConfig) -> Dataset:
    """Llama 2's safety set out of a plain export (`prefkit.data.schema.in_safety_set`)."""

    def col(name: str) -> list[Any]:
        return ds[name] if name in ds.column_names else [None] * len(ds)

    keep = [
        i
        for i, (a, c, r) in enumerate(
            zip(col("adversarial"), col("chosen_unsafe"), col("rejected_unsafe"), strict=True)
        )
        if in_safety_set(a, c, r)
    ]
    if not keep:
        raise DataError(
            "data.set is safety but no row is on an adversarial prompt or has a response flagged unsafe "
            "(columns adversarial, chosen_unsafe, rejected_unsafe)",
            file=cfg.source,
            field="set",
        )
    return ds.select(keep)


def _load(source: str, split: str) -> Dataset:
    """Formats are resolved by `prefkit.data.sources`; only the split logic lives here."""
    from prefkit.data.sources import missing_source, source_kind

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
        raise missing_source(source, MADE_BY)
    if kind == "disk":
        return _from_disk(path, split)
    if kind != "hub" and split != "train":  # a file or a folder of generate's Parquet shards
        raise DataError(
            f"a single file holds only the 'train' split, asked for {split!r}: write the path as "
            f"'…/{{split}}.jsonl' for per-split files, or set data.test_split=null",
            file=path,
        )
    return _from_rows([source], split if kind == "hub" else None, split)


def _from_disk(path: Path, split: str) -> Dataset:
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


def _from_rows(sources: list[str], source_split: str | None, split: str) -> Dataset:
    """Every record of files, a Parquet-shard folder or a Hub split (errors name file and line/row)."""
    from datasets import Dataset

    from prefkit.data.sources import read_rows, source_kind

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
    from prefkit.data.readers import read_prompts

    prompts = read_prompts(set_source(cfg), cfg.split)
    if cfg.max_rows is not None:
        prompts = prompts[: cfg.max_rows]
    if not prompts:
        raise DataError("no prompts", file=cfg.source)
    return prompts


def require_columns(ds: Dataset, columns: list[str], source: str) -> None:
    missing = [c for c in columns if c not in ds.column_names]
    if missing:
        raise DataError(
            f"missing column(s) {', '.join(missing)} (columns: {', '.join(ds.column_names)})",
            file=source,
            field=missing[0],
        )


def _texts(ds: Dataset, column: str, source: str) -> list[str]:
    """The column's texts; a one-assistant-message list (TRL's conversational answer) gives its text."""
    values = list(ds[column])
    for i, v in enumerate(values):
        if isinstance(v, list) and len(v) == 1 and isinstance(v[0], dict) and v[0].get("role") == "assistant":
            v = values[i] = v[0].get("content")
        if not isinstance(v, str) or not v.strip():
            raise DataError(f"empty or not text: {v!r}", file=source, row=i, field=column)
    return values


def _is_message_list(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(m, dict) and "role" in m for m in value)


def prompt_messages(ds: Dataset, cfg: DataConfig) -> list[list[dict[str, str]]]:
    """Each row's prompt as chat messages [system?, user, assistant, …, user: question]: from a
    `prompt` message-list column when there is one, else from system + history + question."""
    if "prompt" in ds.column_names and ds.num_rows and _is_message_list(ds[0]["prompt"]):
        out = []
        for i, msgs in enumerate(ds["prompt"]):
            try:
                Prompt.from_messages(msgs)
            except (ValueError, KeyError, TypeError) as e:
                raise DataError(
                    f"not a conversation ending with a user turn: {e}", file=cfg.source, row=i, field="prompt"
                ) from None
            out.append([{"role": m["role"], "content": m["content"]} for m in msgs])
        return out
    questions = _texts(ds, cfg.question_column, cfg.source)
    systems = ds[cfg.system_column] if cfg.system_column and cfg.system_column in ds.column_names else None
    histories = ds["history"] if "history" in ds.column_names else None
    out = []
    for i, q in enumerate(questions):
        system = systems[i] if systems is not None else None
        if not (isinstance(system, str) and system.strip()):
            system = cfg.system_prompt  # the config's system prompt, where the row has none
        msgs = [{"role": "system", "content": system}] if isinstance(system, str) and system.strip() else []
        try:
            history = parse_turns(histories[i]) if histories is not None else ()
        except (ValueError, TypeError) as e:
            raise DataError(
                f"not a list of user/assistant messages: {e}", file=cfg.source, row=i, field="history"
            ) from None
        msgs += [{"role": r, "content": c} for r, c in history]
        out.append([*msgs, {"role": "user", "content": q}])
    return out


_prompts = prompt_messages


def _require_prompt(ds: Dataset, cfg: DataConfig) -> None:
    if not ("prompt" in ds.column_names and ds.num_rows and _is_message_list(ds[0]["prompt"])):
        require_columns(ds, [cfg.question_column], cfg.source)


def move_answer_prefix(prompts: list[list[dict[str, str]]], answers: dict[str, list[str]], cfg: DataConfig) -> None:
    """`data.answer_prefix`: take it off the start of every answer (`answers`: column -> texts) and, with
    `answer_prefix_to: prompt`, end each prompt's last turn with it on a line of its own; in place.
    An answer that does not start with it, or holds nothing else, is a `DataError` naming row and field."""
    prefix = cfg.answer_prefix
    if not prefix:
        return
    for column, texts in answers.items():
        for i, text in enumerate(texts):
            if not text.lstrip().startswith(prefix):
                raise DataError(f"does not start with answer_prefix {prefix!r}", file=cfg.source, row=i, field=column)
            texts[i] = text.lstrip()[len(prefix) :].strip()
            if not texts[i]:
                raise DataError(f"nothing after answer_prefix {prefix!r}", file=cfg.source, row=i, field=column)
    if cfg.answer_prefix_to == "prompt":
        for p in prompts:
            p[-1] = {**p[-1], "content": p[-1]["content"].rstrip() + "\n" + prefix}


def sft_dataset(ds: Dataset, cfg: DataConfig) -> Dataset:
    """`messages` rows (system?, user, assistant=chosen) for TRL's SFTTrainer."""
    from datasets import Dataset

    _require_prompt(ds, cfg)
    require_columns(ds, [cfg.chosen_column], cfg.source)
    prompts = _prompts(ds, cfg)
    chosen = _texts(ds, cfg.chosen_column, cfg.source)
    move_answer_prefix(prompts, {cfg.chosen_column: chosen}, cfg)
    return Dataset.from_dict(
        {"messages": [p + [{"role": "assistant", "content": c}] for p, c in zip(prompts, chosen, strict=True)]}
    )


def margins(ds: Dataset, cfg: DataConfig, scheme: str) -> list[float]:
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


def strengths(ds: Dataset, cfg: DataConfig) -> list[Strength | None]:
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


def preference_dataset(ds: Dataset, cfg: DataConfig, *, margin_scheme: str | None = None) -> Dataset:
    """Conversational `prompt` / `chosen` / `rejected` rows (+ `margin` when a scheme is given, + `strength`)."""
    from datasets import Dataset

    _require_prompt(ds, cfg)
    require_columns(ds, [cfg.chosen_column, cfg.rejected_column], cfg.source)
    chosen = _texts(ds, cfg.chosen_column, cfg.source)
    rejected = _texts(ds, cfg.rejected_column, cfg.source)
    prompts = _prompts(ds, cfg)
    move_answer_prefix(prompts, {cfg.chosen_column: chosen, cfg.rejected_column: rejected}, cfg)
    columns: dict[str, Any] = {
        "prompt": prompts,
        "chosen": [[{"role": "assistant", "content": c}] for c in chosen],
        "rejected": [[{"role": "assistant", "content": r}] for r in rejected],
        "strength": [s.value if s is not None else None for s in strengths(ds, cfg)],
        "safety_bin": list(ds["safety_bin"]) if "safety_bin" in ds.column_names else [None] * len(ds),
    }
    if margin_scheme is not None:
        columns["margin"] = margins(ds, cfg, margin_scheme)
    return Dataset.from_dict(columns)
