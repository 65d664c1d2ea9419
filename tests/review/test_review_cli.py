"""`autoresearch review` end to end: the real CLI in a subprocess on real repositories."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.review.conftest import Repo

SHELL = ("import subprocess\n\n\ndef run(cmd):\n"
         "    return subprocess.run(f'echo {cmd}', shell=True)\n")


@pytest.fixture
def feature(repo: Repo) -> Repo:
    repo.commit("init", **{"app.py": "import subprocess\n"})
    repo.branch("feature")
    repo.commit("run", **{"app.py": SHELL})
    return repo


def test_terminal_review_records_it_and_fail_on_red_exits_1(feature: Repo) -> None:
    plain = run_cli(feature.path, "review")
    assert plain.returncode == 0, plain.stderr
    assert "red: fix before merge (1)" in plain.stdout
    assert "app.py:5" in plain.stdout and "bandit B602" in plain.stdout
    assert "never approves" in plain.stdout
    failing = run_cli(feature.path, "review", "--fail-on", "red")
    assert failing.returncode == 1
    assert "--fail-on red: 1 finding(s)" in failing.stderr
    assert "reported by an earlier review" in failing.stdout  # the first run was recorded
    rows = sqlite3.connect(feature.path / ".autoresearch" / "ledger.db").execute(
        "SELECT subject_key, red FROM reviews ORDER BY id").fetchall()
    assert rows == [("range:feature", 1), ("range:feature", 1)]
    assert (feature.path / ".autoresearch" / ".gitignore").exists()
    assert feature.git("status", "--porcelain") == ""


def test_ci_outputs_sarif_github_json_markdown(feature: Repo, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run_cli(feature.path, "review", "--base", "main", "--no-record", "--format",
                     "sarif", "--github", str(out / "review.json"), "--json",
                     str(out / "all.json"), "--markdown", str(out / "review.md"))
    assert result.returncode == 0, result.stderr
    sarif = json.loads(result.stdout)
    assert sarif["version"] == "2.1.0" and sarif["runs"][0]["results"][0]["level"] == "error"
    body = json.loads((out / "review.json").read_text())
    assert body["event"] == "COMMENT" and body["comments"][0]["line"] == 5
    assert json.loads((out / "all.json").read_text())["counts"]["red"] == 1
    assert "Red: fix before merge" in (out / "review.md").read_text()
    assert not (feature.path / ".autoresearch").exists()  # --no-record
    again = run_cli(feature.path, "review", "--no-record", "--previous", str(out / "all.json"),
                    "--format", "github")
    assert json.loads(again.stdout)["comments"] == []  # reported before: not posted again


def test_diff_input_and_list_reviewers(feature: Repo, tmp_path: Path) -> None:
    patch = tmp_path / "change.diff"
    patch.write_text(feature.git("diff", "main", "feature") + "\n")
    feature.git("checkout", "-q", "main")
    result = run_cli(feature.path, "review", "--diff", str(patch), "--format", "json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["subject"]["kind"] == "diff" and data["counts"]["red"] == 1
    listed = run_cli(feature.path, "review", "--list-reviewers")
    for name in ("ruff", "bandit", "mypy", "history", "logic", "security", "regression",
                 "rules"):
        assert name in listed.stdout


@pytest.mark.slow
def test_user_mistakes_get_clear_errors_and_exit_codes(feature: Repo, tmp_path: Path) -> None:
    bad_rev = run_cli(feature.path, "review", "--base", "nope")
    assert bad_rev.returncode == 3 and "'nope' is not a commit" in bad_rev.stderr
    assert "Traceback" not in bad_rev.stderr
    both = run_cli(feature.path, "review", "--diff", "x.diff", "--session", "s")
    assert both.returncode == 2 and "pass one" in both.stderr
    bad_fail = run_cli(feature.path, "review", "--fail-on", "green")
    assert bad_fail.returncode == 2
    unknown = run_cli(feature.path, "review", "--reviewers", "ruf")
    assert unknown.returncode == 2 and "did you mean 'ruff'" in unknown.stderr
    (feature.path / "autoresearch.toml").write_text("[review]\ngate = 3\n")
    bad_config = run_cli(feature.path, "review")
    assert bad_config.returncode == 2 and "review.gate" in bad_config.stderr
    (feature.path / "autoresearch.toml").write_text("[review]\nllm = true\n")
    no_key = run_cli(feature.path, "review")
    assert no_key.returncode == 2 and "ANTHROPIC_API_KEY" in no_key.stderr
    assert "[review] llm" in no_key.stderr and "[proposer]" not in no_key.stderr
    (feature.path / "autoresearch.toml").unlink()
    missing = run_cli(feature.path, "review", "--diff", str(tmp_path / "none.diff"))
    assert missing.returncode == 1 and "cannot read the diff" in missing.stderr


@pytest.mark.slow
def test_ctrl_c_during_a_slow_model_call_exits_130_at_once(feature: Repo) -> None:
    import signal
    import subprocess
    import sys
    import time

    from tests.conftest import cli_env
    from tests.llm.fake_server import FakeModelServer, Reply

    with FakeModelServer(handler=lambda rec: Reply(text='{"findings": []}', delay=60)) as server:
        (feature.path / "autoresearch.toml").write_text(
            f'[review]\nllm = {{ provider = "anthropic", base_url = "{server.anthropic_url}", '
            'model = "claude-sonnet-4-6", timeout_seconds = 120, max_retries = 0 }\n')
        proc = subprocess.Popen([sys.executable, "-m", "autoresearch", "review", "--no-record"],
                                cwd=feature.path, env=cli_env(), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 60
            while not server.requests and time.monotonic() < deadline:
                time.sleep(0.05)
            assert server.requests, "the review never called the model"
            proc.send_signal(signal.SIGINT)
            start = time.monotonic()
            _, stderr = proc.communicate(timeout=20)
            assert proc.returncode == 130
            assert time.monotonic() - start < 15  # not the 60 s the model call would take
            assert "interrupted" in stderr and "Traceback" not in stderr
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


FAKE_BANDIT = """\
import os, sys, time
if os.environ["FAKE_BANDIT"] == "crash":
    raise SystemExit("Traceback (most recent call last): bandit exploded")  # exit 1, no stdout
with open(os.environ["FAKE_BANDIT_PID"], "w") as out:
    out.write(str(os.getpid()))
time.sleep(120)
"""


def _fake_bandit(tmp_path: Path, mode: str) -> dict[str, str]:
    """An environment whose `python -m bandit` is a stand-in that crashes or hangs."""
    import os

    from tests.conftest import cli_env

    package = tmp_path / "fake" / "bandit"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "__main__.py").write_text(FAKE_BANDIT)
    env = cli_env({"FAKE_BANDIT": mode, "FAKE_BANDIT_PID": str(tmp_path / "bandit.pid")})
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path / "fake"), env["PYTHONPATH"]])
    return env


def test_an_analyzer_that_crashes_is_a_failed_reviewer_not_a_clean_one(feature: Repo,
                                                                       tmp_path: Path) -> None:
    """bandit's exit 1 means "issues found" (on stdout): exit 1 with a traceback and nothing on
    stdout is a crash, shown as failed, and --fail-on says so."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "autoresearch", "review", "--no-record",
                           "--format", "json", "--fail-on", "red"], cwd=feature.path,
                          env=_fake_bandit(tmp_path, "crash"), capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    runs = {r["name"]: r for r in json.loads(proc.stdout)["reviewers"]}
    assert runs["bandit"]["status"] == "failed"
    assert "bandit exploded" in runs["bandit"]["note"]
    assert "reviewer(s) failed: bandit" in proc.stderr


@pytest.mark.slow
def test_sigterm_mid_review_kills_the_analyzers_and_leaves_no_files(feature: Repo,
                                                                     tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys
    import time

    env = _fake_bandit(tmp_path, "hang")
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env["TMPDIR"] = str(scratch)  # where the review's workspace goes
    pid_file = tmp_path / "bandit.pid"
    proc = subprocess.Popen([sys.executable, "-m", "autoresearch", "review", "--offline"],
                            cwd=feature.path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not (pid_file.exists() and pid_file.read_text()):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.05)
        bandit_pid = int(pid_file.read_text())
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    try:
        assert proc.returncode == 130, stderr
        assert "interrupted: nothing was recorded" in stderr and "Traceback" not in stderr
        # Not left running (it would sleep 120 s): waited for, since a loaded machine may take
        # more than a moment to end a killed process, and it may vanish while looked at.
        from tests.support.processes import alive

        deadline = time.monotonic() + 60
        while alive(bandit_pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not alive(bandit_pid)
        assert list(scratch.iterdir()) == []  # the workspace is removed
        ledger = feature.path / ".autoresearch" / "ledger.db"
        if ledger.exists():
            with sqlite3.connect(ledger) as db:
                assert db.execute("SELECT COUNT(*) FROM reviews").fetchone() == (0,)
    finally:
        import os

        if Path(f"/proc/{bandit_pid}").exists():
            os.kill(bandit_pid, signal.SIGKILL)


def test_a_reader_that_goes_away_stops_the_review_quietly_with_141(repo: Repo) -> None:
    """`autoresearch review | head -1`: the review is finished and recorded before anything is
    printed, so a reader that stops reading cuts only the output: exit 141 (128 + SIGPIPE, what
    a shell shows for `cat` cut short), nothing on stderr, the review whole in the ledger."""
    from tests.support.closed_pipe import run_into_closed_pipe, run_reading_one_line

    repo.commit("init", **{"app.py": "x = 1\n"})
    repo.branch("feature")
    many = "".join(f"def f{i}(x):\n    return eval(x)\n\n\n" for i in range(400))
    repo.commit("many findings", **{"app.py": many})
    for output in ("terminal", "json"):  # many writes; one write of ~260 KB
        code, first, stderr = run_reading_one_line(repo.path, "review", "--format", output)
        assert (code, stderr) == (141, ""), (output, code, stderr)
        assert first.strip()
    code, stderr = (lambda p: (p.returncode, p.stderr))(
        run_into_closed_pipe(repo.path, "review", "--format", "markdown"))
    assert (code, stderr) == (141, "")
    with sqlite3.connect(repo.path / ".autoresearch" / "ledger.db") as db:
        rows = db.execute("SELECT r.yellow + r.red, COUNT(f.idx) FROM reviews r JOIN "
                          "review_findings f ON f.review_id = r.id GROUP BY r.id").fetchall()
    assert len(rows) == 3 and all(total == found >= 400 for total, found in rows), rows


@pytest.mark.slow
def test_sigterm_during_a_slow_verification_call_exits_at_once(feature: Repo) -> None:
    """The verification calls ran in a pool the interpreter waits for: a stop during one held
    the exit until the call came back. Now the review exits at once, and the review call that
    had returned is recorded with its cost."""
    import signal
    import subprocess
    import sys
    import time

    from tests.conftest import cli_env
    from tests.llm.fake_server import FakeModelServer, Recorded, Reply

    finding = {"path": "app.py", "line": 5, "angle": "security", "category": "injection",
               "severity": "high", "confidence": 0.9, "title": "Shell injection",
               "body": "cmd reaches a shell.",
               "quote": "return subprocess.run(f'echo {cmd}', shell=True)"}

    def model(rec: Recorded) -> Reply:
        if "You check findings" in rec.prompt_text():
            return Reply(text='{"verdicts": []}', delay=60)
        return Reply(text=json.dumps({"findings": [finding]}))

    with FakeModelServer(handler=model) as server:
        (feature.path / "autoresearch.toml").write_text(
            f'[review]\nllm = {{ provider = "anthropic", base_url = "{server.anthropic_url}", '
            'model = "claude-sonnet-4-6", timeout_seconds = 120, max_retries = 0 }\n')
        proc = subprocess.Popen([sys.executable, "-m", "autoresearch", "review"],
                                cwd=feature.path, env=cli_env(), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 60
            while not any("You check findings" in r.prompt_text() for r in server.requests):
                assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
                time.sleep(0.05)
            proc.send_signal(signal.SIGTERM)
            start = time.monotonic()
            _, stderr = proc.communicate(timeout=30)
            assert time.monotonic() - start < 15  # not the 60 s the verification call takes
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "recorded in the ledger" in " ".join(stderr.split())
    with sqlite3.connect(feature.path / ".autoresearch" / "ledger.db") as db:
        assert db.execute("SELECT input_tokens, scale FROM reviews").fetchall() == [
            (1200, "interrupted")]
