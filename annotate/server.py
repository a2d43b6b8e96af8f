"""Starting the annotation app's Streamlit server: the command line, and a child process that is
ready when the server answers its health check (for `serve`, the browser tests and the bench)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

from data.errors import ConfigError

APP = Path(__file__).resolve().parent / "app.py"


def streamlit_command(port: int, address: str = "127.0.0.1") -> list[str]:
    """`streamlit run annotate/app.py` for a headless server; the store URL goes in $PREFKIT_DB."""
    return [
        sys.executable, "-m", "streamlit", "run", str(APP),
        "--server.headless", "true",
        "--server.address", address,
        "--server.port", str(port),
        "--server.fileWatcherType", "none",
        "--browser.gatherUsageStats", "false",
        "--client.toolbarMode", "minimal",
    ]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_server(
    command: Callable[[int], list[str]], env: dict[str, str] | None = None, timeout: float = 60.0
) -> Iterator[str]:
    """Run `command(port)` (a Streamlit server) on a free loopback port; yield its URL once the
    health check answers, and stop the server on exit."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tempfile.TemporaryFile("w+")  # a file, not a pipe: a chatty server never blocks on it
    proc = subprocess.Popen(
        command(port), env={**os.environ, **(env or {})}, stdout=log, stderr=subprocess.STDOUT, text=True
    )
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                log.seek(0)
                raise ConfigError(f"the Streamlit server exited with code {proc.returncode}: {log.read()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise ConfigError(f"the Streamlit server did not answer on {url} within {timeout:.0f} s")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def running_app(db_url: str, timeout: float = 60.0) -> contextlib.AbstractContextManager[str]:
    """The annotation app on loopback against `db_url` (see `running_server`)."""
    return running_server(streamlit_command, env={"PREFKIT_DB": db_url}, timeout=timeout)
