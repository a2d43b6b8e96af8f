"""Push an exported dataset (and its card) to the Hugging Face Hub.

The token comes from the argument, `HF_TOKEN`, or the Hugging Face login (`hf auth login`),
and never appears in output: any error text is scrubbed of it before it is raised.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefkit.core.errors import DataError, first_line


def _scrub(text: str, token: str) -> str:
    return text.replace(token, "***") if token else text


def require_token(token: str | None = None) -> str:
    """The token to push with: the argument, `HF_TOKEN`, or the stored login."""
    from huggingface_hub import get_token

    token = token or get_token()
    if not token:
        raise DataError("no Hugging Face token: set HF_TOKEN or run `hf auth login`", field="push_to_hub")
    return token


def push_to_hub(out_or_dsdict: str | Path | Any, repo_id: str, private: bool = False, token: str | None = None) -> str:
    """Push the `DatasetDict` (or an export folder, card included) to `repo_id`; returns its URL."""
    from datasets import DatasetDict, load_from_disk
    from huggingface_hub import HfApi

    token = require_token(token)
    card: Path | None = None
    if isinstance(out_or_dsdict, DatasetDict):
        dsdict = out_or_dsdict
    else:
        folder = Path(out_or_dsdict)
        dsdict = load_from_disk(str(folder))
        card = folder / "README.md" if (folder / "README.md").is_file() else None
    try:
        dsdict.push_to_hub(repo_id, private=private, token=token)
        if card is not None:  # ours replaces the card push_to_hub writes: it says how the data was made
            from prefkit.data.card import hub_card

            HfApi(token=token).upload_file(
                path_or_fileobj=hub_card(card.read_text(encoding="utf-8")).encode("utf-8"),
                path_in_repo="README.md",
                repo_id=repo_id,
                repo_type="dataset",
                commit_message="prefkit dataset card",
            )
    except Exception as e:
        reason = _scrub(first_line(e), token)
        raise DataError(
            f"push to the Hub as {repo_id!r} failed ({type(e).__name__}: {reason})", field="push_to_hub"
        ) from None
    from huggingface_hub import constants

    return f"{constants.ENDPOINT}/datasets/{repo_id}"


def check_model_source(path: str, what: str = "model") -> None:
    """Fail fast, with one clear line, when `path` is neither a local folder nor a reachable Hub model.

    transformers retries an unreachable Hub for about a minute before it says so; this answers at
    once for a missing local-looking path and after one 5-second probe for a Hub id. A Hub model
    already in the local cache passes without any request (offline use keeps working).
    """
    from huggingface_hub import HfApi, constants, try_to_load_from_cache

    from prefkit.core.errors import ConfigError
    from prefkit.data.sources import looks_local

    if Path(path).expanduser().is_dir():
        return
    if looks_local(path):
        raise ConfigError(f"{what} {path!r}: no such model folder")
    if isinstance(try_to_load_from_cache(path, "config.json"), str):
        return
    if constants.HF_HUB_OFFLINE:
        raise ConfigError(f"{what} {path!r}: not a local folder, not in the Hub cache, and HF_HUB_OFFLINE is set")
    try:
        HfApi().model_info(path, timeout=5)
    except Exception as e:
        reason = first_line(e)
        raise ConfigError(
            f"{what} {path!r}: not a local folder, and the Hub did not answer for it "
            f"({type(e).__name__}: {reason}); pass a local model folder or check the id and the network"
        ) from None
