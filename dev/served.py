"""`transformers serve` on a free loopback port: the real OpenAI-compatible server the `openai`
engine is tested against (not used by prefkit itself, not in the wheel).

`transformers_serve(model, log)` starts `transformers serve MODEL` (transformers' `serving`
extra: fastapi, uvicorn, openai) on CPU in float32, offline, waits for its health check and yields
its `/v1` base URL; the server is stopped on exit. It raises `ServeUnavailable` when the extra is
not installed (tests skip, saying so).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path


class ServeUnavailable(RuntimeError):
    """transformers' serving extra is not installed."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def transformers_serve(model: str | Path, log: Path, hub_cache: Path, timeout: float = 120) -> Iterator[str]:
    from transformers.utils.import_utils import is_serve_available

    if not is_serve_available():
        raise ServeUnavailable(
            "transformers serve needs its serving extra (pip install 'transformers[serving]': fastapi, openai)"
        )
    port = free_port()
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_HUB_CACHE": str(hub_cache),
        "OMP_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    cmd = [
        sys.executable,
        "-c",
        "import sys; from transformers.cli.transformers import main; sys.exit(main())",
        "serve",
        str(model),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--device",
        "cpu",
        "--dtype",
        "float32",
    ]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(base + "/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"transformers serve did not start:\n{log.read_text(errors='replace')[-2000:]}")
            time.sleep(0.5)
        yield base + "/v1"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
