"""Model paths are checked before transformers retries an unreachable Hub for a minute."""

from __future__ import annotations

import pytest

from prefkit.core.errors import ConfigError
from prefkit.data.hub import check_model_source


def test_local_folder_passes(tmp_path, monkeypatch):
    # Only that the folder exists is checked (loading it is transformers' job): a folder with a
    # config.json stands in for a model, with no model built. A relative `org/name` folder is taken
    # as the local folder, not looked up on the Hub.
    folder = tmp_path / "org" / "model"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}", encoding="utf-8")
    check_model_source(str(folder))
    monkeypatch.chdir(tmp_path)
    check_model_source("org/model")


@pytest.mark.parametrize("path", ["./runs/missing", "/nowhere/model", "runs/a/b"])
def test_missing_local_path_is_refused_at_once(path):
    with pytest.raises(ConfigError, match="no such model folder"):
        check_model_source(path, "model.path")


def test_unreachable_hub_id_is_one_clear_error(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    with pytest.raises(ConfigError, match="not a local folder, and the Hub did not answer"):
        check_model_source("some-org/some-model", "model.path")


def test_offline_uncached_hub_id_is_refused(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ConfigError, match="HF_HUB_OFFLINE"):
        check_model_source("some-org/some-model")


def test_a_typo_under_a_local_folder_is_refused_at_once_without_the_hub(tmp_path, monkeypatch):
    """`runs/sft` when `runs/` is a folder here but `runs/sft` is not: a local path with a typo,
    refused at once, never sent to the Hub as the model `sft` of a user `runs` (which waits on
    the network; here the Hub is made unreachable so a lookup would say so instead)."""
    from huggingface_hub import constants

    (tmp_path / "runs").mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    with pytest.raises(ConfigError, match="no such model folder"):
        check_model_source("runs/sft", "model.path")
