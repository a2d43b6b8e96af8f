"""Starting the annotation app's Streamlit server: the command line, and a child process that is
ready when the server answers its health check (for `serve`, the browser tests and the bench)."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from prefkit.core.errors import ConfigError

APP = Path(__file__).resolve().parent / "app.py"


def streamlit_command(port: int, address: str = "127.0.0.1") -> list[str]:
    """`streamlit run annotate/app.py` for a headless server; the store URL goes in $PREFKIT_DB."""
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(APP),
        "--server.headless",
        "true",
        "--server.address",
        address,
        "--server.port",
        str(port),
        "--server.fileWatcherType",
        "none",
        "--browser.gatherUsageStats",
        "false",
        "--client.toolbarMode",
        "minimal",
    ]


# uvicorn (Streamlit's server) takes the client's address from a proxy's X-Forwarded-For only when
# the connection comes from one of these addresses; by its own default it trusts any local process.
PROXY_ENV = "FORWARDED_ALLOW_IPS"


def proxy_env(trusted_proxies: str | None) -> dict[str, str]:
    """The server's environment for `--trusted-proxies`: the proxies (addresses or networks,
    comma-separated) whose `X-Forwarded-For` names the client; none by default, so the address
    the sign-in limits count is the connection's own (`local` for a same-host proxy)."""
    import ipaddress

    value = (trusted_proxies or "").strip()
    for item in filter(None, (v.strip() for v in value.split(","))):
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise ConfigError(
                f"--trusted-proxies: {item!r} is not an IP address or network (e.g. 127.0.0.1 or 10.0.0.0/8); "
                "name the reverse proxy's own addresses"
            ) from None
    return {PROXY_ENV: ",".join(v.strip() for v in value.split(",") if v.strip())}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_is_free(port: int, address: str = "127.0.0.1") -> bool:
    """Whether a server could listen on `address:port` now (bound the way Tornado binds, with
    SO_REUSEADDR, so a port in TIME_WAIT after a stopped server counts as free)."""
    try:
        infos = socket.getaddrinfo(address or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror:
        return True  # an unknown address is Streamlit's to report
    family, _, _, _, sockaddr = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(sockaddr)
        except OSError as e:
            # only "in use" / "not allowed" mean taken; anything else (e.g. an address not on this
            # machine) Streamlit reports itself
            return e.errno not in (errno.EADDRINUSE, errno.EACCES)
    return True


def check_port(port: int, address: str, option: str = "--port") -> None:
    """ConfigError (one line, exit 2) when the port is taken, naming the option that picks another."""
    if not 0 < port < 65536:
        raise ConfigError(f"port {port} is not a TCP port (1-65535); pick another with {option} N")
    if not port_is_free(port, address):
        raise ConfigError(f"port {port} on {address} is already in use; pick another with {option} N")


def _die_with_parent() -> None:
    """In the child (Linux): get SIGTERM when the process that started us dies, even by kill -9,
    so a killed wrapper never leaves the server behind."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def run_forwarding_signals(command: list[str], env: dict[str, str]) -> int:
    """Run `command` (the Streamlit server) until it exits and return its exit code. SIGTERM,
    SIGINT and SIGHUP sent to us are passed on to it and we wait for it to stop, so `kill` on
    `prefkit annotate serve` (or `prefkit demo`) stops the server and frees its port. The child
    runs in its own process group, so Ctrl-C in a terminal reaches it once, through us."""
    proc = subprocess.Popen(command, env=env, process_group=0, preexec_fn=_die_with_parent)
    forwarded = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)

    def forward(signum: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM if signum == signal.SIGHUP else signum)

    previous = {s: signal.signal(s, forward) for s in forwarded}
    try:
        while True:
            try:
                return proc.wait()
            except KeyboardInterrupt:  # a SIGINT that arrived before our handler was in place
                forward(signal.SIGINT, None)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if proc.poll() is None:  # we are leaving for another reason: never leave it behind
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextlib.contextmanager
def running_server(
    command: Callable[[int], list[str]], env: dict[str, str] | None = None, timeout: float = 60.0
) -> Iterator[str]:
    """Run `command(port)` (a Streamlit server) on a free loopback port; yield its URL once the
    health check answers, and stop the server on exit. The server runs in a process group of its
    own and the whole group is stopped, so a wrapper command (`prefkit annotate serve`) that
    started Streamlit as its child never leaves that child behind."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile("w+") as log:  # a file, not a pipe: a chatty server never blocks on it
        proc = subprocess.Popen(
            command(port),
            env={**os.environ, **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
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
            stop_group(proc)


def stop_group(proc: subprocess.Popen[Any], timeout: float = 10.0) -> None:
    """SIGTERM to `proc` alone first (a wrapper forwards it and waits for its child), then to its
    whole process group for anything left; SIGKILL after `timeout`."""
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    start = time.monotonic()
    while time.monotonic() - start < 2 * timeout:  # the group outlives its leader while a member lives
        try:
            os.killpg(proc.pid, signal.SIGTERM if time.monotonic() - start < timeout else signal.SIGKILL)
        except ProcessLookupError:
            return
        time.sleep(0.1)


def running_app(
    db_url: str, timeout: float = 60.0, *, trusted_proxies: str | None = None
) -> contextlib.AbstractContextManager[str]:
    """The annotation app on loopback against `db_url` (see `running_server`), trusting the
    `X-Forwarded-For` of `trusted_proxies` only (as `prefkit annotate serve` does)."""
    return running_server(streamlit_command, env={"PREFKIT_DB": db_url, **proxy_env(trusted_proxies)}, timeout=timeout)
