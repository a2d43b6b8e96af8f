"""The `prefkit` command: every room mounted, light start-up, the demo end to end."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from prefkit.cli import app

runner = CliRunner()


def test_every_room_is_mounted():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("data", "generate", "annotate", "train", "round", "demo"):
        assert command in result.output


def test_data_commands_do_not_load_heavy_libraries():
    # `prefkit data ...` must start fast: building the command tree may not import torch,
    # transformers, streamlit or vllm (they load inside the commands that need them).
    code = (
        "import sys, json; import prefkit.cli; "
        "print(json.dumps(sorted(m for m in ('torch', 'transformers', 'streamlit', 'vllm', 'trl', 'datasets') "
        "if m in sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_bad_input_is_one_line_and_exit_2(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q", "chosen": "a", "rejected": "b"}\n{"question": "q2", "chosen": ""}\n')
    proc = subprocess.run(
        [sys.executable, "-m", "prefkit.cli", "data", "export", str(bad), str(tmp_path / "out")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "bad.jsonl" in proc.stderr and "line 2" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()


def test_version_and_debug_flags(tmp_path):
    from importlib.metadata import version

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"prefkit {version('prefkit')}"

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q"\n')
    plain = subprocess.run(
        [sys.executable, "-m", "prefkit.cli", "data", "validate", str(bad)], capture_output=True, text=True
    )
    debug = subprocess.run(
        [sys.executable, "-m", "prefkit.cli", "--debug", "data", "validate", str(bad)], capture_output=True, text=True
    )
    assert plain.returncode == debug.returncode == 2
    assert "Traceback" not in plain.stderr
    assert "Traceback" in debug.stderr and "DataError" in debug.stderr
    assert debug.stderr.rstrip().splitlines()[-1] == plain.stderr.rstrip().splitlines()[-1]


def test_demo_runs_the_pipeline_and_seeds_a_store(tmp_path):
    from datasets import load_from_disk

    from prefkit.annotate.store import Store

    out = tmp_path / "demo"
    result = runner.invoke(app, ["demo", "--out", str(out), "--no-serve"])
    assert result.exit_code == 0, result.output
    dsdict = load_from_disk(str(out / "dataset"))
    assert set(dsdict) == {"train", "test"}
    assert dsdict["train"].num_rows + dsdict["test"].num_rows == 61  # 66 sample rows less 5 near duplicates
    assert (out / "dataset" / "README.md").read_text(encoding="utf-8").startswith("---")

    tokens = json.loads((out / "demo-tokens.json").read_text())
    assert set(tokens) == {"demo-admin", "demo-annotator"}
    assert tokens["demo-annotator"] in result.output  # printed so a newcomer can sign in
    store = Store.open(f"sqlite:///{out / 'annotate.db'}")
    try:
        annotator = store.authenticate(tokens["demo-annotator"])
        assert annotator is not None and not annotator.is_admin
        assert store.authenticate(tokens["demo-admin"]).is_admin
        assert store.count_pairs("demo") == 61  # the deduplicated sample, not the raw 66 rows
        assignment = store.claim("demo", annotator)
        assert assignment is not None  # ready to label
    finally:
        store.close()

    again = runner.invoke(app, ["demo", "--out", str(out), "--no-serve"])
    assert again.exit_code == 0, again.output  # re-running the demo reuses the store and tokens


def test_a_run_that_fails_outside_the_input_is_one_line_and_exit_1(monkeypatch, capsys):
    """An engine that ends a request without an answer (vLLM's `abort`/`error`) is not bad input:
    one line, exit 1, no traceback (`--debug` shows it)."""
    import prefkit.cli as cli
    from prefkit.generate.engines.base import GenerationFailed

    def failing_app() -> None:
        raise GenerationFailed("request 3, sample 0: vLLM ended a request with finish reason 'abort'")

    monkeypatch.setattr(cli, "app", failing_app)
    with pytest.raises(SystemExit) as exc:
        cli.main()
    assert exc.value.code == 1
    err = capsys.readouterr().err
    assert err.strip() == "error: request 3, sample 0: vLLM ended a request with finish reason 'abort'"


def test_debug_shows_log_lines_and_plain_runs_do_not(tmp_path):
    # domain modules log (`logging.getLogger(__name__)`); the entry point sends it to stderr, DEBUG with --debug
    src = tmp_path / "prefs.jsonl"
    src.write_text(
        "".join(
            json.dumps(
                {
                    "question": f"câu hỏi số {i} về chủ đề {i * 7}",
                    "chosen": f"trả lời tốt {i}",
                    "rejected": f"trả lời kém {i}",
                },
                ensure_ascii=False,
            )
            + "\n"
            for i in range(6)
        ),
        encoding="utf-8",
    )
    plain = runner.invoke(app, ["data", "export", str(src), str(tmp_path / "a"), "--language", "vi"])
    debug = runner.invoke(app, ["--debug", "data", "export", str(src), str(tmp_path / "b"), "--language", "vi"])
    again = runner.invoke(app, ["--debug", "data", "export", str(src), str(tmp_path / "c"), "--language", "vi"])
    assert plain.exit_code == debug.exit_code == again.exit_code == 0, plain.output + debug.output
    assert "DEBUG" not in plain.output
    assert f"DEBUG prefkit.data.export: {src}: read as vi_alpaca_preference" in debug.output
    # a second command in one process: one handler, one line
    assert again.output.count("DEBUG prefkit.data.export") == 1
    assert "wrote " in plain.output and "DEBUG" not in plain.output
