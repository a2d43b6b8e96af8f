"""Data room: the data model, readers/writers of every format, MinHash dedup, export.

Importing `data` is instant: pyarrow, datasets and huggingface_hub load inside the functions
that need them.
"""

from prefkit.core.errors import ConfigError, DataError, PrefkitError
from prefkit.core.writers import write_rows
from prefkit.data.aggregate import AggregateReport, aggregate
from prefkit.data.export import export_dataset
from prefkit.data.hub import push_to_hub
from prefkit.data.readers import (
    Location,
    canonical_records,
    detect_format,
    read_judgements,
    read_pairs,
    read_preferences,
    read_prompts,
    read_rows,
    source_format,
)
from prefkit.data.schema import (
    EXPORT_COLUMNS,
    PAIR_COLUMNS,
    Judgement,
    MarginScheme,
    Pair,
    PreferenceRow,
    Prompt,
    Response,
    Strength,
)
from prefkit.data.writers import write_judgements, write_pairs, write_preferences

__all__ = [
    "EXPORT_COLUMNS",
    "PAIR_COLUMNS",
    "AggregateReport",
    "ConfigError",
    "DataError",
    "Judgement",
    "Location",
    "MarginScheme",
    "Pair",
    "PreferenceRow",
    "PrefkitError",
    "Prompt",
    "Response",
    "Strength",
    "aggregate",
    "canonical_records",
    "detect_format",
    "export_dataset",
    "push_to_hub",
    "read_judgements",
    "read_pairs",
    "read_preferences",
    "read_prompts",
    "read_rows",
    "source_format",
    "write_judgements",
    "write_pairs",
    "write_preferences",
    "write_rows",
]
