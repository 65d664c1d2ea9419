"""The README's quickstart, run verbatim in a fresh shell after `make demo`.

A fresh shell has none of this test process's environment: only a system PATH (no `.venv/bin`,
which is what made a bare `autoresearch` "command not found"), a HOME with the user's git
identity, and the repository checkout as its working directory. The block runs in bash with
`-e`, so any command that fails fails the test; the last one, `dashboard`, serves until Ctrl-C,
so it is fetched once and then interrupted the way a user would stop it.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import TESTS

CHECKOUT = TESTS.parent
FRESH_PATH = "/usr/local/bin:/usr/bin:/bin"
DASHBOARD_PORT = 8765  # the dashboard's default, which the quickstart uses


def quickstart_block() -> str:
    readme = (CHECKOUT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Quickstart", 1)[1]
    match = re.search(r"```bash\n(.*?)```", section, re.DOTALL)
    assert match is not None, "the quickstart has no bash block"
    return match.group(1)


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the dashboard binds
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_the_quickstart_names_commands_a_fresh_shell_has() -> None:
    block = quickstart_block()
    lines = [line.split("#", 1)[0].strip() for line in block.splitlines()]
    first_use = next(i for i, line in enumerate(lines) if line.startswith("autoresearch "))
    activate = next(i for i, line in enumerate(lines) if "activate" in line)
    assert activate < first_use  # PATH is set before the first bare `autoresearch`


@pytest.mark.slow
def test_the_quickstart_runs_verbatim_in_a_fresh_shell(tmp_path: Path) -> None:
    if not (CHECKOUT / ".venv" / "bin" / "activate").is_file():
        pytest.skip("needs the .venv that `make demo` (or `make install`) creates")
    if not port_free(DASHBOARD_PORT):
        pytest.skip(f"port {DASHBOARD_PORT} is taken on this machine: the quickstart's "
                    "`dashboard` line cannot serve here")
    home = tmp_path / "home"
    home.mkdir()
    (home / ".gitconfig").write_text("[user]\n\tname = New User\n\temail = new@example.com\n"
                                     "[init]\n\tdefaultBranch = main\n")
    env = {"HOME": str(home), "PATH": FRESH_PATH, "LANG": "C.UTF-8", "TERM": "dumb",
           "USER": "newuser"}
    proc = subprocess.Popen(
        ["bash", "-e", "-c", quickstart_block()], cwd=CHECKOUT, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    output: list[str] = []
    try:
        url = None
        deadline = time.monotonic() + 400
        assert proc.stdout is not None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break  # the shell ended before serving: a command failed
            output.append(line)
            found = re.search(r"at (http://127\.0\.0\.1:\d+/\S*)", line)
            if "dashboard for session" in line and found:
                url = found.group(1)
                break
        text = "".join(output)
        assert url is not None, f"the quickstart stopped (exit {proc.poll()}):\n{text}"
        with urllib.request.urlopen(url, timeout=30) as page:
            assert page.status == 200 and b"autoresearch" in page.read().lower()
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C, as the README says
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if proc.stdout is not None:
            output.append(proc.stdout.read())
            proc.stdout.close()
    text = "".join(output)
    assert "command not found" not in text, text
    assert "ready:" in text  # check
    assert "stopped: reached 30 experiments" in text  # run -n 30
    assert '"experiments"' in text or '"status"' in text  # results --json
    bowl = home / "bowl"
    assert (bowl / ".autoresearch" / "ledger.db").is_file()
