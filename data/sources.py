"""Raw records and where each came from: JSONL (plain or gzipped), JSON, CSV/TSV (header row =
field names), Parquet, a `save_to_disk` folder, or a Hub id.

Every record comes with its `Location` so that any later error can name the file and the line
(1-based, text formats) or row (0-based, tables). Files are streamed: JSONL line by line, Parquet
batch by batch, so big inputs never sit in memory whole.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from prefkit.core.errors import DataError, first_line

TEXT_SUFFIXES = (".jsonl", ".jsonl.gz", ".ndjson", ".json", ".json.gz", ".csv", ".csv.gz", ".tsv", ".tsv.gz")
TABLE_SUFFIXES = (".parquet",)


@dataclass(frozen=True)
class Location:
    """Where a record came from: `line` (1-based) for JSONL/JSON, `row` (0-based) for tables."""

    file: str
    line: int | None = None
    row: int | None = None

    def error(self, message: str, field: str | None = None) -> DataError:
        return DataError(message, file=self.file, line=self.line, row=self.row, field=field)

    def __str__(self) -> str:
        if self.line is not None:
            return f"{self.file}:{self.line}"
        if self.row is not None:
            return f"{self.file} row {self.row}"
        return self.file


# A record or the error that stopped it; `iter_records` yields both so `validate` can go on
# past a bad line, while `read_rows` raises at the first one.
Record = tuple[Location, dict[str, Any] | DataError]


def source_kind(source: str | Path) -> str:
    """'jsonl', 'json', 'csv', 'tsv', 'parquet', 'parquet_dir' (a folder of Parquet shards),
    'disk' (a save_to_disk folder) or 'hub'."""
    path = Path(source)
    name = path.name.lower()
    if path.is_dir():
        return "parquet_dir" if parquet_shards(path) else "disk"
    if name.endswith((".jsonl", ".jsonl.gz", ".ndjson")):
        kind = "jsonl"
    elif name.endswith((".json", ".json.gz")):
        kind = "json"
    elif name.endswith((".csv", ".csv.gz")):
        kind = "csv"
    elif name.endswith((".tsv", ".tsv.gz")):
        kind = "tsv"
    elif name.endswith(TABLE_SUFFIXES):
        kind = "parquet"
    elif path.exists():
        raise DataError(
            f"unknown file type (expected {', '.join(TEXT_SUFFIXES + TABLE_SUFFIXES)} or a save_to_disk folder)",
            file=path,
        )
    else:
        return "hub" if _looks_like_hub_id(str(source)) and not looks_local(path) else "missing"
    if not path.exists():
        raise missing_source(path)
    return kind


# What writes the inputs prefkit's commands read, for the "no such file or folder" line.
MADE_BY = (
    "a dataset folder is written by `prefkit data export` or `prefkit annotate export`, "
    "a pairs folder by `prefkit generate`"
)


def missing_source(source: str | Path, made_by: str = MADE_BY) -> DataError:
    """The one line for a local path that is not there: "no such file or folder", a close name
    in its folder if there is one (a typo), and what writes such an input."""
    import difflib

    path = Path(source)
    parent = path.parent if str(path.parent) else Path(".")
    hint = ""
    if parent.is_dir() and path.name:
        names = [p.name for p in parent.iterdir() if not p.name.startswith(".")]
        close = difflib.get_close_matches(path.name, names, n=1, cutoff=0.75)
        if close:
            hint = f" (did you mean {parent / close[0]}?)"
    elif not parent.is_dir():
        hint = f" (its folder {parent} does not exist either)"
    return DataError(f"no such file or folder{hint}; {made_by}", file=str(source))


def parquet_shards(path: Path) -> list[Path]:
    """The shards of a folder of Parquet files (e.g. `prefkit generate` output), in name order;
    empty for a save_to_disk folder or a folder without Parquet files."""
    if (path / "dataset_dict.json").exists() or (path / "state.json").exists():
        return []
    return sorted(path.glob("*.parquet"))


def _looks_like_hub_id(source: str) -> bool:
    parts = source.split("/")
    return 1 <= len(parts) <= 2 and all(p and not p.startswith(".") for p in parts) and "\\" not in source


def looks_local(path: str | Path) -> bool:
    """Whether `path` is meant as a local file or folder rather than a Hub id `user/name`: it
    starts with ., / or ~, has more than one slash, exists, or its first part is a folder here
    (`runs/exprot` with `runs/` here is a local path with a typo, not the Hub repo `exprot` of a
    user `runs`), so a missing one is said at once, with no network wait. Models and datasets."""
    text = str(path)
    p = Path(text).expanduser()
    return (
        text.startswith((".", "/", "~"))
        or text.count("/") > 1
        or p.exists()
        or (len(p.parts) > 1 and Path(p.parts[0]).is_dir())
    )


def _open_text(path: Path) -> IO[str]:
    if path.name.lower().endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8")
    return path.open("r", encoding="utf-8")


ColumnMap = Mapping[str, str]


def iter_records(source: str | Path, split: str | None = None, columns: ColumnMap | None = None) -> Iterator[Record]:
    """Every record of `source` with its location; unreadable records come as `DataError`s.
    `columns` ({name: the file's column}, `--columns question=instruction`) renames the file's
    columns to the names the formats read, as LLaMA-Factory's `dataset_info` columns do.

    Errors that make the whole source unreadable (missing file, no network for a Hub id, a
    Parquet file that is not Parquet) are raised, not yielded.
    """
    if columns:
        yield from _renamed(_iter_records(source, split), columns, str(source))
    else:
        yield from _iter_records(source, split)


def _renamed(records: Iterator[Record], columns: ColumnMap, where: str) -> Iterator[Record]:
    back = {column: name for name, column in columns.items()}
    checked = False
    for loc, rec in records:
        if isinstance(rec, DataError):
            yield loc, rec
            continue
        if not checked:  # the first record tells whether the file has the mapped columns
            missing = [c for c in back if c not in rec]
            if missing:
                raise DataError(
                    f"--columns maps column(s) {', '.join(missing)}, which the file does not have "
                    f"(columns: {', '.join(rec)})",
                    file=where,
                    field=missing[0],
                )
            checked = True
        yield loc, {back.get(k, k): v for k, v in rec.items() if not (k in columns and k not in back)}


def _iter_records(source: str | Path, split: str | None = None) -> Iterator[Record]:
    kind = source_kind(source)
    if kind == "missing":
        raise missing_source(source)
    if kind == "jsonl":
        yield from _iter_jsonl(Path(source))
    elif kind == "json":
        yield from _iter_json(Path(source))
    elif kind in ("csv", "tsv"):
        yield from _iter_csv(Path(source), "\t" if kind == "tsv" else ",")
    elif kind == "parquet":
        yield from _iter_parquet(Path(source))
    elif kind == "parquet_dir":
        for shard in parquet_shards(Path(source)):
            yield from _iter_parquet(shard)
    elif kind == "disk":
        yield from _iter_dataset(_load_from_disk(Path(source), split), str(source))
    else:
        yield from _iter_dataset(_load_from_hub(str(source), split), str(source))


def _as_record(value: Any, loc: Location) -> dict[str, Any] | DataError:
    if not isinstance(value, dict):
        return loc.error(f"expected a JSON object, got {type(value).__name__}")
    return value


def _open_bytes(path: Path) -> io.BufferedIOBase:
    if path.name.lower().endswith(".gz"):
        return gzip.open(path, "rb")
    return path.open("rb")


def _bad_line(loc: Location, message: str, raw: str) -> DataError:
    err = loc.error(message)
    err.record = raw  # what `--skip-invalid` writes to the rejected file
    return err


def _iter_jsonl(path: Path) -> Iterator[Record]:
    """Line by line, decoded per line, so a non-UTF-8 or malformed line is named by its number
    (and can be skipped) instead of stopping the whole file."""
    try:
        with _open_bytes(path) as f:
            for n, raw in enumerate(f, start=1):
                loc = Location(str(path), line=n)
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    yield (
                        loc,
                        _bad_line(
                            loc,
                            f"not UTF-8 text: {e.reason} at byte {e.start + 1} of the line",
                            raw.decode("utf-8", "replace").rstrip("\r\n"),
                        ),
                    )
                    continue
                if not line.strip():
                    continue
                try:
                    value = json.loads(line)
                except json.JSONDecodeError as e:
                    yield loc, _bad_line(loc, f"malformed JSON: {e.msg} (column {e.colno})", line.rstrip("\r\n"))
                    continue
                except RecursionError:
                    yield loc, _bad_line(loc, "JSON nested too deep to read", line[:200])
                    continue
                yield loc, _as_record(value, loc)
    except (OSError, EOFError, gzip.BadGzipFile) as e:  # e.g. a truncated or fake .gz
        raise DataError(f"cannot read: {e}", file=path) from None


def _iter_json(path: Path) -> Iterator[Record]:
    """A JSON list of objects, or {"data": [...]}; each object located by its starting line."""
    try:
        with _open_text(path) as f:
            text = f.read()
    except UnicodeDecodeError as e:
        raise DataError(f"not UTF-8 text: {e.reason}", file=path, line=_line_of_byte(path, e.start)) from None
    except (OSError, EOFError) as e:
        raise DataError(f"cannot read: {e}", file=path) from None
    decoder = json.JSONDecoder()
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"malformed JSON: {e.msg} (column {e.colno})", file=path, line=e.lineno) from None
    except RecursionError:
        raise DataError("JSON nested too deep to read", file=path) from None
    if isinstance(value, dict):
        if not isinstance(value.get("data"), list):
            raise DataError('a JSON object must hold its records in a "data" list', file=path, field="data")
        start = _find_data_array(text, decoder)
    elif isinstance(value, list):
        start = _skip_ws(text, 0)
    else:
        raise DataError(f'expected a JSON list of objects or {{"data": [...]}}, got {type(value).__name__}', file=path)
    # Walk the array a second time with raw_decode only to learn where each element starts.
    pos = _skip_ws(text, start + 1)
    line, counted = 1, 0
    while text[pos] != "]":
        line += text.count("\n", counted, pos)
        counted = pos
        element, pos = decoder.raw_decode(text, pos)
        loc = Location(str(path), line=line)
        yield loc, _as_record(element, loc)
        pos = _skip_ws(text, pos)
        if text[pos] == ",":
            pos = _skip_ws(text, pos + 1)


# CSV/TSV cells are text; these fields (bare, or after a_/b_/chosen_/rejected_) are read as
# numbers when they parse as one (else left as text, so the converter names line and field).
_NUMBER_FIELDS = {
    "margin",
    "agreement",
    "n_annotators",
    "n_model_annotators",
    "temperature",
    "top_p",
    "seed",
    "n_tokens",
    "seconds",
}


def _csv_cell(name: str, value: str) -> Any:
    if value == "":
        return None  # an empty cell is a missing value
    base = name.split("_", 1)[1] if name.startswith(("a_", "b_", "chosen_", "rejected_")) else name
    if base in _NUMBER_FIELDS or (name == "strength" and value.strip().isdigit()):
        try:
            number = float(value)
        except ValueError:
            return value
        return int(number) if number.is_integer() and "." not in value else number
    return value


def _iter_csv(path: Path, delimiter: str) -> Iterator[Record]:
    """CSV or TSV with a header row of field names; each record located by the line it starts on."""
    what = "TSV" if delimiter == "\t" else "CSV"
    try:
        with _open_text(path) as f:
            reader = csv.reader(f, delimiter=delimiter, strict=True)
            try:
                header = next(reader)
            except StopIteration:
                return
            except csv.Error as e:
                raise DataError(f"malformed {what} header: {e}", file=path, line=1) from None
            names = [h.strip().lstrip("\ufeff") for h in header]
            for i, n in enumerate(names):
                if not n:
                    raise DataError(f"{what} header: column {i + 1} has no name", file=path, line=1)
                if names.index(n) != i:
                    raise DataError(f"{what} header: column name {n!r} appears twice", file=path, line=1, field=n)
            start = reader.line_num + 1
            while True:
                loc = Location(str(path), line=start)
                try:
                    cells = next(reader)
                except StopIteration:
                    break
                except csv.Error as e:
                    yield loc, loc.error(f"malformed {what}: {e}")
                    start = reader.line_num + 1
                    continue
                start = reader.line_num + 1
                if not cells or cells == [""]:
                    continue
                if len(cells) != len(names):
                    field = names[len(cells)] if len(cells) < len(names) else None
                    yield loc, loc.error(f"{len(cells)} fields, the header has {len(names)}", field)
                    continue
                yield loc, {n: _csv_cell(n, v) for n, v in zip(names, cells, strict=True)}
    except UnicodeDecodeError as e:
        raise DataError(f"not UTF-8 text: {e.reason}", file=path) from None
    except (OSError, EOFError) as e:
        raise DataError(f"cannot read: {e}", file=path) from None


def _line_of_byte(path: Path, offset: int) -> int | None:
    """The 1-based line holding byte `offset` of the (decompressed) file."""
    try:
        with _open_bytes(path) as f:
            return f.read(offset).count(b"\n") + 1
    except (OSError, EOFError):
        return None


def _skip_ws(text: str, pos: int) -> int:
    while text[pos] in " \t\r\n":
        pos += 1
    return pos


def _find_data_array(text: str, decoder: json.JSONDecoder) -> int:
    """Position of the '[' that opens the top-level "data" value (the text is valid JSON)."""
    pos = _skip_ws(text, _skip_ws(text, 0) + 1)
    while True:
        key, pos = decoder.raw_decode(text, pos)
        pos = _skip_ws(text, _skip_ws(text, pos) + 1)  # past ':'
        if key == "data":
            return pos
        _, pos = decoder.raw_decode(text, pos)
        pos = _skip_ws(text, _skip_ws(text, pos) + 1)  # past ','


def _iter_parquet(path: Path) -> Iterator[Record]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as e:
        raise DataError(f"not a readable Parquet file: {first_line(e)}", file=path) from None
    row = 0
    batches = pf.iter_batches(batch_size=4096)
    while True:
        try:
            batch = next(batches, None)
        except (pa.ArrowException, OSError) as e:  # corrupt data pages: the rows after `row` are lost
            raise DataError(f"corrupt Parquet data from this row on: {first_line(e)}", file=path, row=row) from None
        if batch is None:
            break
        for rec in batch.to_pylist():
            yield Location(str(path), row=row), rec
            row += 1


def parquet_columns(path: str | Path) -> list[str]:
    """Column names from the Parquet schema (known even when the file has no rows)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return list(pq.read_schema(path).names)
    except (pa.ArrowException, OSError) as e:
        raise DataError(f"not a readable Parquet file: {first_line(e)}", file=path) from None


def saved_splits(source: str | Path) -> list[str]:
    """The split names of a `save_to_disk` DatasetDict folder (e.g. an earlier export), in their
    saved order; empty for anything else."""
    path = Path(source)
    try:
        names = json.loads((path / "dataset_dict.json").read_text(encoding="utf-8")).get("splits", [])
    except (OSError, ValueError, AttributeError):
        return []
    return [str(n) for n in names] if isinstance(names, list) else []


def _pick_split(dsdict: Any, split: str | None, where: str) -> Any:
    names = list(dsdict.keys())
    if split is None:
        split = "train" if "train" in names or len(names) != 1 else names[0]
    if split not in names:
        raise DataError(f"no split {split!r} (splits: {', '.join(names) or 'none'})", file=where)
    return dsdict[split]


def _load_from_disk(path: Path, split: str | None) -> Any:
    import datasets

    try:
        loaded = datasets.load_from_disk(str(path))
    except (FileNotFoundError, ValueError, OSError) as e:
        raise DataError(f"not a save_to_disk folder: {e}", file=path) from None
    if isinstance(loaded, datasets.DatasetDict):
        return _pick_split(loaded, split, str(path))
    if split is not None:
        raise DataError(f"the folder holds one Dataset, not splits; drop --split {split}", file=path)
    return loaded


def _load_from_hub(repo_id: str, split: str | None) -> Any:
    import datasets

    check_hub_dataset(repo_id)
    try:
        loaded = datasets.load_dataset(repo_id, split=split or "train", streaming=True)
    except Exception as e:
        raise _not_on_hub(repo_id, e) from None
    return loaded


def check_hub_dataset(repo_id: str) -> None:
    """One quick request (5 s at most) that the Hub has dataset `repo_id`, before anything waits
    on it: `load_dataset` retries a dead network for ~25 s. Nothing is asked offline
    (`HF_HUB_OFFLINE`), where the cache answers."""
    from huggingface_hub import HfApi, constants

    if constants.HF_HUB_OFFLINE:
        return
    try:
        HfApi().dataset_info(repo_id, timeout=5)
    except Exception as e:
        raise _not_on_hub(repo_id, e) from None


def _not_on_hub(repo_id: str, e: Exception) -> DataError:
    return DataError(
        f"no such file or folder here, and cannot load Hub dataset {repo_id!r} ({type(e).__name__}: "
        f"{first_line(e)}); check the path, or the Hub id and the network ({MADE_BY})",
        file=repo_id,
    )


def _iter_dataset(ds: Any, where: str) -> Iterator[Record]:
    try:
        for row, rec in enumerate(ds):
            yield Location(where, row=row), dict(rec)
    except DataError:
        raise
    except Exception as e:
        raise DataError(f"reading stopped: {type(e).__name__}: {e}", file=where) from None


def first_records(
    source: str | Path, split: str | None = None, *, skip_bad: bool = False, columns: ColumnMap | None = None
) -> Iterator[tuple[list[str], dict[str, Any] | None, Location | None]]:
    """(columns, record, its location) of the readable records of `source`, from the first, for
    telling its format (columns from the schema for Parquet, where the first record is enough),
    renamed by `columns` as `iter_records` renames them; one ([], None, None) when it has none. An
    unreadable record raises unless `skip_bad`."""
    kind = source_kind(source)
    back = {column: name for name, column in (columns or {}).items()}
    table = None
    if kind == "parquet":
        table = [back.get(c, c) for c in parquet_columns(source)]
    elif kind == "parquet_dir":
        table = [back.get(c, c) for c in parquet_columns(parquet_shards(Path(source))[0])]
    any_read = False
    for loc, rec in iter_records(source, split, columns):
        if isinstance(rec, DataError):
            if skip_bad:
                continue
            raise rec
        any_read = True
        yield (table if table is not None else list(rec)), rec, (None if table is not None else loc)
        if table is not None:
            return
    if not any_read:
        yield (table or []), None, None


def first_columns(
    source: str | Path, split: str | None = None, *, skip_bad: bool = False, columns: ColumnMap | None = None
) -> tuple[list[str], dict[str, Any] | None]:
    """The columns and first readable record of `source` (`first_records`' first)."""
    names, first, _loc = next(first_records(source, split, skip_bad=skip_bad, columns=columns))
    return names, first


def read_rows(
    source: str | Path, split: str | None = None, columns: ColumnMap | None = None
) -> Iterator[tuple[Location, dict[str, Any]]]:
    """Raw records with their locations; raises `DataError` at the first unreadable one."""
    for loc, rec in iter_records(source, split, columns):
        if isinstance(rec, DataError):
            raise rec
        yield loc, rec
