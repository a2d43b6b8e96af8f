"""The audit gate of `prefkit train` (`prefkit.train.audit_gate`) and the per-pair numbers DPO and the
reward model use (`prefkit.train.pair_terms`)."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from prefkit.core.config import load_config
from prefkit.core.errors import DataError
from prefkit.data.export import export_dataset
from prefkit.data.schema import PreferenceRow, Strength
from prefkit.train import pair_terms
from prefkit.train.audit_gate import AuditFailed, check_audit, log_red_flags
from prefkit.train.config import DataConfig, DpoConfig


def _confounded(n: int = 40) -> list[PreferenceRow]:
    """Chosen is always the longer answer: the audit's length confound."""
    return [
        PreferenceRow(f"Câu hỏi {i} về phở?", f"Trả lời dài hơn nhiều cho câu {i} về phở và nước dùng.", f"Ngắn {i}.")
        for i in range(n)
    ]


@pytest.fixture(scope="module")
def confounded(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("confounded") / "ds"
    export_dataset(_confounded(), out, test_size=0.2, seed=0)
    return out


def _cfg(source: Path, *extra: str) -> DpoConfig:
    return load_config(DpoConfig, None, [f"data.source={source}", "model.path=unused", *extra])


def test_warn_logs_each_flag_and_goes_on(confounded: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="prefkit.train.audit_gate"):
        flags = check_audit(_cfg(confounded))
        log_red_flags(flags)
    assert "length_confound" in [f["name"] for f in flags]
    assert any("audit red flag length_confound" in r.getMessage() for r in caplog.records)


def test_strict_stops_naming_the_flags_and_off_reads_nothing(confounded: Path, tmp_path: Path) -> None:
    with pytest.raises(AuditFailed, match="length_confound") as e:
        check_audit(_cfg(confounded, "audit=strict"))
    assert "audit.json" in str(e.value)
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    assert check_audit(_cfg(confounded, "audit=off", f"audit_file={broken}")) == []
    with pytest.raises(DataError, match="cannot read the audit"):
        check_audit(_cfg(confounded, f"audit_file={broken}"))
    clean = tmp_path / "clean.json"
    clean.write_text(json.dumps({"red_flags": []}))
    assert check_audit(_cfg(confounded, "audit=strict", f"audit_file={clean}")) == []
    # no audit at all (a plain file): nothing to say
    export_dataset(_confounded(), tmp_path / "noaudit", test_size=0.2, seed=0, audit=False)
    assert check_audit(_cfg(tmp_path / "noaudit", "audit=strict")) == []


@pytest.mark.slow  # a `prefkit` process (imports torch)
def test_strict_exits_2_before_any_work(confounded: Path, tmp_path: Path, tiny_model_path: Path) -> None:
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "prefkit.cli", "train", "dpo", "--set", f"data.source={confounded}"]
    cmd += ["--set", f"model.path={tiny_model_path}", "--set", f"output_dir={out}", "--set", "audit=strict"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 2, done.stderr
    assert "length_confound" in done.stderr and "strict" in done.stderr
    assert not out.exists()  # stopped before the output folder (and any model)


def test_weights_are_mean_one_from_level_and_agreement() -> None:
    levels = [3, 2, 1, 0, pair_terms.NO_LEVEL]
    labels = [1.0, 2 / 3, 1.0, 0.5, 1.0]
    n = [3, 3, 1, 2, None]
    w = pair_terms.weights(levels, labels, n, [1.0, 2.0, 3.0, 4.0])
    raw = [4.0, 3.0 * (1 / 3), 2.0, 0.0, 2.5]  # the even split weighs nothing; no level: the mean weight
    assert w == pytest.approx([x / (sum(raw) / 5) for x in raw])
    assert sum(w) / len(w) == pytest.approx(1.0)
    assert pair_terms.weights(levels, labels, n, [1.0, 2.0, 3.0, 4.0], agreement=False)[1] == pytest.approx(
        3.0 / ((4 + 3 + 2 + 1 + 2.5) / 5)
    )
    with pytest.raises(DataError, match="weight 0"):
        pair_terms.weights([0, 0], [0.5, 0.5], [2, 2], [1.0, 1.0, 1.0, 1.0])
    assert pair_terms.offsets([1.0, 2 / 3, 0.0], 0.5) == pytest.approx([0.5, 1 / 3, 0.0])
    assert pair_terms.levels([Strength.BETTER, None]) == [2, pair_terms.NO_LEVEL]


def test_soft_labels_read_the_vote_columns() -> None:
    from datasets import Dataset

    ds = Dataset.from_dict(
        {
            "n_annotators": [3, 4, 0],
            "votes_chosen": [2, 3, None],
            "votes_rejected": [0, 1, None],
            "agreement": [0.66, 0.75, None],
        }
    )
    assert pair_terms.soft_labels(ds, DataConfig(source="x")) == pytest.approx([2.5 / 3, 0.75, 1.0])
    bad = Dataset.from_dict({"n_annotators": [2], "votes_chosen": [3], "votes_rejected": [0]})
    with pytest.raises(DataError, match="not a share"):
        pair_terms.soft_labels(bad, DataConfig(source="x"))
