"""The ground floor every room stands on: nothing here knows prompts, pairs or models.

- `config`: config dataclasses (`setting`: a default and its documentation), YAML loading, `--set`;
- `options`: Typer options built from those fields, and the help layout of every command;
- `errors`: `PrefkitError` (exit 2, one line naming file, line or row, field) and `RunFailed`;
- `atomic`: write-then-rename for files and folders, and the fault hook the tests use;
- `outputs`: the output guard (never destroy an input, a store, or what prefkit did not write);
- `writers`: rows to JSONL / JSON / Parquet by suffix, atomically;
- `rejects`: where `--skip-invalid` puts the rows it skipped.

Imports only the standard library and light third-party packages at module level.
"""
