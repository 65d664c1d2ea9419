"""`status` says what became of a baseline attempt that has no figure yet, as the ledger has
it: still running, interrupted, left open by a process that died, and "did not pass" only when
it ended failing. Real sessions through the CLI."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from tests.conftest import UNTIMED_CONFIG, cli_env, make_repo, run_cli, use_script

# A run that lasts while the hold file exists (the test lets it go), or crashes when told to.
SCORE_PY = textwrap.dedent(
    """
    import os, time
    import target
    hold = os.environ.get("HOLD_FILE", "")
    if hold and os.path.exists(hold):
        open(hold + ".running", "w").close()
        while os.path.exists(hold):
            time.sleep(0.05)
    if target.CRASH:
        raise SystemExit("the evaluation crashed")
    print(f"score: {(target.X - 7) ** 2}")
    """
)


def toy(tmp_path: Path, crash: bool = False) -> Path:
    repo = make_repo(tmp_path / "repo", {"target.py": f"X = 3.0\nCRASH = {crash}\n",
                                         "score.py": SCORE_PY, "autoresearch.toml": UNTIMED_CONFIG})
    use_script(repo, [{"hypothesis": "X to 6", "edits": {"target.py": "X = 6.0\nCRASH = False\n"}}])
    return repo


def baseline_line(repo: Path) -> str:
    """The text of status's `baseline` row, its wrapped lines joined back."""
    status = run_cli(repo, "status", "--tag", "t", env={"COLUMNS": "300"})
    assert status.returncode == 0, status.stdout + status.stderr
    row = next((line for line in status.stdout.splitlines() if line.startswith("baseline ")),
               None)
    assert row is not None, status.stdout
    return " ".join(row.split()[1:])


def start_held(repo: Path, hold: Path) -> subprocess.Popen[str]:
    """`run` whose baseline run is under way (held) when this returns."""
    marker = Path(str(hold) + ".running")
    marker.unlink(missing_ok=True)
    hold.touch()
    proc = subprocess.Popen([sys.executable, "-m", "autoresearch", "run", "--tag", "t", "-n", "2"],
                            cwd=repo, env=cli_env({"HOLD_FILE": str(hold)}), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while not marker.exists():
        assert proc.poll() is None, proc.communicate()[0]
        assert time.monotonic() < deadline, "the baseline never started"
        time.sleep(0.05)
    return proc


def test_status_says_the_baseline_is_running_was_interrupted_or_was_left_open(tmp_path: Path) -> None:
    repo, hold = toy(tmp_path), tmp_path / "hold"
    run = start_held(repo, hold)
    try:
        assert baseline_line(repo) == "not measured yet (t-0001 is still running)"
        run.send_signal(signal.SIGINT)  # Ctrl-C
        assert run.wait(timeout=120) == 130, run.communicate()[0]
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    assert baseline_line(repo) == ("not measured yet (t-0001 was interrupted; a resume runs it "
                                   "again)")

    run = start_held(repo, hold)  # the resume measures the baseline again, as t-0002
    try:
        assert baseline_line(repo) == "not measured yet (t-0002 is still running)"
        run.kill()  # kill -9: nothing marks the baseline, which the ledger keeps as running
        run.wait(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    assert baseline_line(repo) == ("not measured yet (t-0002 was left open by a process that "
                                   "died; a resume runs it again)")
    # The Ctrl-C was the run before: the killed run recorded no stop, and none is shown for it.
    status = run_cli(repo, "status", "--tag", "t", env={"COLUMNS": "300"}).stdout
    state = next(line for line in status.splitlines() if line.startswith("state"))
    assert "died" in state and "interrupted (Ctrl-C)" not in state, state

    hold.unlink()
    resumed = run_cli(repo, "run", "--tag", "t", "-n", "2")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert baseline_line(repo).startswith("score = 16 ("), baseline_line(repo)


def test_status_says_a_baseline_that_crashed_did_not_pass(tmp_path: Path) -> None:
    repo = toy(tmp_path, crash=True)
    result = run_cli(repo, "run", "--tag", "t", "-n", "2")
    assert result.returncode == 5, result.stdout + result.stderr  # the baseline crashed
    assert baseline_line(repo) == "not measured yet (t-0001 did not pass)"
