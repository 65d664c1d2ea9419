"""Hostile model replies and agents, end to end: `autoresearch run` against the fake model server
and the fake agent CLI (issue 9).

1. Secrets: a string planted in protected files and in an out-of-scope file never appears in any
   request the fake server receives, across every prompt path (propose, the retry after a refused
   edit, crash repair, the stuck prompt, later proposals carrying the last crash's log), nor in
   any prompt the agent CLI is given. The repository offers every road to them: a symlink in the
   scope pointing at the evaluation, a non-canonical spelling (`src/./metric.py`) that matches
   the scope glob, near-miss SEARCH blocks that would earn "the closest lines" as a hint, and a
   crash whose traceback quotes the evaluation's source.
2. Untrusted bytes: a lone surrogate or NUL bytes in an edit, binary files and file names that
   are not UTF-8 from an agent, are rejected proposals with a reason, never a crash.
"""

from __future__ import annotations

import json
import os
import sqlite3
import textwrap
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import CONFIG as TOY_CONFIG
from tests.conftest import git, make_repo, run_cli
from tests.llm.conftest import fake_model_proposer, install_fake_agents, use_fake_model
from tests.llm.fake_server import FakeModelServer, Recorded, Reply

SECRETS = ("SCORE-SECRET-4b1d", "METRIC-SECRET-91c2", "OUTSIDE-SECRET-22b1", "hunter2-7c4e")

# A crash prints protected content the ways a real script does: its own line upper-cased, a
# value read from a protected config on its own, and an exception message quoting that value.
SCORE = textwrap.dedent("""\
    # The evaluation (protected). SCORE-SECRET-4b1d
    import target
    from src import metric
    if getattr(target, "CRASH", False):
        print(open(__file__).readline().upper())
        print(open("secret.cfg").read().split("=")[1].strip())
        SEED = int(open("secret.cfg").read().split("=")[1])  # SCORE-SECRET-4b1d
    print(f"score: {metric.measure(target.X)}")
    """)
METRIC = 'def measure(x):\n    return (x - 7) ** 2  # METRIC-SECRET-91c2\n'
CONFIG = textwrap.dedent("""\
    scope = ["target.py", "src/*/*.py"]
    protected = ["score.py", "src/metric.py", "secret.cfg"]
    [verify]
    command = "{python} score.py"
    budget_seconds = 5
    timeout_seconds = 20
    [metric]
    name = "score"
    direction = "minimize"
    [decision]
    repeats = 1
    stuck_after = 1
    deterministic = true  # the score is exact: identical repeats are the truth
    """)


def hostile_repo(path: Path, proposer: str) -> Path:
    """scope target.py and src/*/*.py; protected score.py and src/metric.py (no glob overlaps, so
    the config check accepts it); src/sub/alias.py is an in-scope symlink to src/metric.py."""
    repo = make_repo(path, {
        "target.py": "X = 3.0\n",
        "score.py": SCORE,
        "src/__init__.py": "",
        "src/metric.py": METRIC,
        "src/sub/model.py": "DEPTH = 2\n",
        "notes/private.md": "the held-out split: OUTSIDE-SECRET-22b1\n",
        "secret.cfg": "SEED=hunter2-7c4e\n",
        "program.md": "Minimise score = (X - 7)^2 by changing X.\n",
        "autoresearch.toml": CONFIG + proposer,
    })
    os.symlink("../metric.py", repo / "src" / "sub" / "alias.py")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "an in-scope symlink to the evaluation")
    return repo


def block(path: str, search: str, replace: str) -> str:
    return f"{path}\n<<<<<<< SEARCH\n{search}=======\n{replace}>>>>>>> REPLACE\n"


def crashing_model(kinds: list[str]) -> Callable[[Recorded], Reply]:
    """A model that proposes a change that crashes the evaluation (CRASH = True) and gives up
    every repair it is asked for; `kinds` records what it was asked, in order."""
    def handler(rec: Recorded) -> Reply:
        if "## Repair a crash" in rec.prompt_text():
            kinds.append("repair")
            return Reply(text="GIVE_UP: no")
        kinds.append("propose")
        return Reply(text="HYPOTHESIS: crash\n" + block("target.py", "X = 3.0\n",
                                                        "X = 3.0\nCRASH = True\n"))

    return handler


class LeakyModel:
    """Tries every road to the secrets, and walks the session through every prompt path."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.kinds: list[str] = []

    def __call__(self, request: Recorded) -> Reply:
        text = request.prompt_text()
        last = json.dumps(request.body["messages"][-1])
        with self.lock:
            if "Reply again with the complete corrected reply" in last:
                self.kinds.append("retry")
                # A valid edit that makes the evaluation raise: a crash, then a repair.
                return Reply(text="HYPOTHESIS: a crash flag\n"
                             + block("target.py", "X = 3.0\n", "X = 3.0\nCRASH = True\n"))
            if "## Repair a crash" in text:
                self.kinds.append("repair")
                return Reply(text="GIVE_UP: the crash flag is the idea")
            if "## You are stuck" in text:
                self.kinds.append("stuck")
                return Reply(text="HYPOTHESIS: move X\n" + block("target.py", "X = 3.0\n",
                                                                 "X = 6.0\n"))
            self.kinds.append("propose")
            # Near misses (one character off) on the protected and out-of-scope files, spelled
            # so that the first matches the scope glob src/*/*.py.
            return Reply(text="HYPOTHESIS: peek at the evaluation\n"
                         + block("src/./metric.py", "    return (x - 7) ** 2  # METRIC-SECRET-91c\n",
                                 "    return 0.0\n")
                         + block("notes/private.md", "the held-out split: OUTSIDE-SECRET-22b\n",
                                 "x\n")
                         + block("score.py", "# The evaluation (protected). SCORE-SECRET-4b1\n",
                                 "x\n"))


def leaked(texts: list[str]) -> list[str]:
    return [s for s in SECRETS for t in texts if s.lower() in t.lower()]


@pytest.mark.slow
def test_no_secret_reaches_the_model_on_any_prompt_path(tmp_path: Path) -> None:
    model = LeakyModel()
    with FakeModelServer(handler=model) as server:
        repo = hostile_repo(tmp_path / "repo", fake_model_proposer(server, max_edit_retries=1))
        result = run_cli(repo, "run", "--tag", "s", "--iterations", "4", timeout=240)
        requests = [r.prompt_text() for r in server.requests]
    assert result.returncode == 0, result.stdout + result.stderr
    # Every prompt path was taken: the protected edit was refused and retried, the crash was
    # sent for repair (with its log tail), the stuck prompt came, and a proposal after the crash
    # carried its log.
    assert model.kinds[:4] == ["propose", "retry", "repair", "stuck"], model.kinds
    assert any("## Log tail of the last crash" in t and "Traceback (most recent call last)" in t
               for t in requests)
    assert any("refused: protected (matches src/metric.py)" in t for t in requests)
    assert any("[line hidden: it quotes a protected file]" in t for t in requests)
    assert leaked(requests) == []
    # The evaluation was never written, by any spelling.
    assert "METRIC-SECRET" in git(repo, "show", "autoresearch/s:src/metric.py")
    log = git(repo, "log", "--all", "-p", "--", "src/metric.py", "score.py")
    assert "return 0.0" not in log


@pytest.mark.slow
def test_no_secret_reaches_the_agent_prompt(tmp_path: Path) -> None:
    bin_dir = install_fake_agents(tmp_path / "bin")
    modes = tmp_path / "modes"
    modes.write_text("crash\nnothing\nimprove\n")  # a crash, a repair that changes nothing, a keep
    repo = hostile_repo(tmp_path / "repo", textwrap.dedent("""\
        [proposer]
        name = "agent"
        agent = "claude"
        agent_timeout_seconds = 60
        """))
    calls = tmp_path / "calls.jsonl"
    env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "FAKE_AGENT_MODES": str(modes),
           "FAKE_AGENT_LOG": str(calls), "FAKE_AGENT_PIDFILE": str(tmp_path / "pid")}
    result = run_cli(repo, "run", "--tag", "a", "--iterations", "3", env=env, timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    prompts = [json.loads(line)["prompt"] for line in calls.read_text().splitlines()]
    assert len(prompts) == 3
    assert "## Repair a crash" in prompts[1] and "Traceback (most recent call last)" in prompts[1]
    assert "## You are stuck" in prompts[2] and "## Log tail of the last crash" in prompts[2]
    assert leaked(prompts) == []


# --- untrusted bytes ------------------------------------------------------------------------


def statuses(repo: Path) -> list[tuple[str, str, str]]:
    with sqlite3.connect(repo / ".autoresearch" / "ledger.db") as conn:
        return conn.execute("SELECT status, hypothesis, decision_reason FROM experiments "
                            "ORDER BY seq").fetchall()


@pytest.mark.slow
def test_a_reply_that_is_not_text_is_rejected_never_a_crash(toy_repo: Path) -> None:
    replies = [
        # A lone surrogate in a REPLACE block (it crashed the session), then NUL bytes in a
        # FILE block (they were committed and run), then a control character: one proposal.
        "HYPOTHESIS: surrogate\n" + block("target.py", "X = 3.0\n", "X = 6.0  # \ud800\n"),
        "HYPOTHESIS: binary\ntarget.py\n<<<<<<< FILE\nX = 6.0\n\0\0\n>>>>>>> FILE\n",
        "HYPOTHESIS: backspace\n" + block("target.py", "X = 3.0\n", "X = 6.0  # \x08\n"),
        # A hypothesis that is not text either; the edit itself is fine: cleaned and kept.
        "HYPOTHESIS: move X \ud83d toward 7\n" + block("target.py", "X = 3.0\n", "X = 6.0\n"),
    ]
    with FakeModelServer([Reply(text=r) for r in replies]) as server:
        config = toy_repo / "autoresearch.toml"
        config.write_text(config.read_text() + fake_model_proposer(server))
        git(toy_repo, "commit", "-qam", "use the llm proposer")
        result = run_cli(toy_repo, "run", "--tag", "b", "--iterations", "3", timeout=240)
        sent = [r.body for r in server.requests]
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Traceback" not in output
    rows = statuses(toy_repo)
    assert [r[0] for r in rows] == ["keep", "rejected", "keep"], rows
    assert "after 3 attempts" in rows[1][2] and "U+0008" in rows[1][2], rows[1][2]
    assert rows[2][1] == "move X \ufffd toward 7"
    # Nothing binary was ever committed; what was sent back to the model was encodable text.
    assert "\0" not in git(toy_repo, "log", "--all", "-p")
    retry = json.dumps(sent[1]["messages"])
    assert "lone surrogate U+D800" in retry and "NUL byte" in json.dumps(sent[2]["messages"])


@pytest.mark.slow
def test_binary_files_and_undecodable_names_from_an_agent_are_rejected(
        toy_repo: Path, tmp_path: Path) -> None:
    bin_dir = install_fake_agents(tmp_path / "bin")
    modes = tmp_path / "modes"
    modes.write_text("binary\nbadname\nimprove\n")
    config = toy_repo / "autoresearch.toml"
    config.write_text(config.read_text().replace('scope = ["target.py"]',
                                                 'scope = ["target.py", "lib/*.py"]')
                      + '\n[proposer]\nname = "agent"\nagent = "claude"\n')
    git(toy_repo, "commit", "-qam", "use the agent proposer")
    env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "FAKE_AGENT_MODES": str(modes),
           "FAKE_AGENT_LOG": str(tmp_path / "calls.jsonl"),
           "FAKE_AGENT_PIDFILE": str(tmp_path / "pid")}
    result = run_cli(toy_repo, "run", "--tag", "c", "--iterations", "4", env=env, timeout=240)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Traceback" not in output
    rows = statuses(toy_repo)
    assert [r[0] for r in rows] == ["keep", "rejected", "rejected", "keep"], rows
    assert "lib/blob.py: its content holds a NUL byte" in rows[1][2]
    assert "'lib/b\\udcff.py': is not valid UTF-8" in rows[2][2]
    assert git(toy_repo, "show", "autoresearch/c:target.py") == "X = 7.0"
    worktree = toy_repo / ".autoresearch" / "worktrees" / "c"
    assert not (worktree / "lib").exists()  # the rejected files were removed with the change


def test_a_protected_file_git_does_not_track_is_hidden_from_the_repair_prompt(
        tmp_path: Path) -> None:
    # `.env` is git-ignored, shared into every worktree ([verify] share) and protected: a crash
    # whose message quotes its value must not carry it into the repair request.
    secret = "Kx9vQ2mZ7rT4"
    score = textwrap.dedent("""\
        import target
        env = dict(line.split("=", 1) for line in open(".env").read().split())
        if getattr(target, "CRASH", False):
            threads = int(env["API_TOKEN"])  # a ValueError that quotes the token
        print(f"score: {(target.X - 7) ** 2}")
        """)
    config = TOY_CONFIG.replace('protected = ["score.py"]', 'protected = ["score.py", ".env"]')
    config = config.replace("[verify]\n", '[verify]\nshare = [".env"]\n')
    kinds: list[str] = []
    handler = crashing_model(kinds)

    with FakeModelServer(handler=handler) as server:
        repo = make_repo(tmp_path / "repo", {"target.py": "X = 3.0\n", "score.py": score,
                                             ".gitignore": ".env\n", "autoresearch.toml": config})
        (repo / ".env").write_text(f"API_TOKEN={secret}\n")
        use_fake_model(repo, server)
        result = run_cli(repo, "run", "--tag", "d", "--iterations", "2")
        assert result.returncode == 0, result.stdout + result.stderr
        prompts = [r.prompt_text() for r in server.requests]
    assert "repair" in kinds, kinds  # the crash log went to the model
    assert not [p for p in prompts if secret in p]


def test_protected_values_of_short_pieces_and_a_regex_heldout_stay_out_of_the_repair_prompt(
        tmp_path: Path) -> None:
    # Secrets whose every word is short (an address, a phone number, a dashed key), printed by
    # the evaluation before it crashes, and a held-out metric read by a regex from a line that
    # does not name it (its words are in target.py, and its value is computed, so that no
    # rule for protected text hides it).
    secrets = ("10.0.113.57", "555-867-5309", "sk-a1b-c2d-e3f")
    score = textwrap.dedent("""\
        import target
        cfg = dict(line.strip().split("=", 1) for line in open("secrets.cfg") if "=" in line)
        print("holdout accuracy was", round(0.9 + 0.0321, 4))
        if getattr(target, "CRASH", False):
            print("connecting to", cfg["DB_HOST"])
            print(cfg["PHONE"])
            raise ValueError(cfg["API_KEY"])
        print(f"score: {(target.X - 7) ** 2}")
        """)
    config = TOY_CONFIG.replace('protected = ["score.py"]',
                                'protected = ["score.py", "secrets.cfg"]')
    config = config.replace('record = ["mem_mb"]\n', textwrap.dedent("""\
        format = "regex"
        heldout = ["test_acc"]
        [metric.patterns]
        score = 'score: (\\S+)'
        test_acc = 'holdout accuracy was (\\S+)'
        """))
    kinds: list[str] = []
    handler = crashing_model(kinds)

    with FakeModelServer(handler=handler) as server:
        repo = make_repo(tmp_path / "repo", {
            "target.py": "# holdout accuracy was measured apart\nX = 3.0\n", "score.py": score,
            "autoresearch.toml": config,
            "secrets.cfg": "DB_HOST=10.0.113.57\nPHONE=555-867-5309\nAPI_KEY=sk-a1b-c2d-e3f\n"})
        use_fake_model(repo, server)
        result = run_cli(repo, "run", "--tag", "v", "--iterations", "2")
        assert result.returncode == 0, result.stdout + result.stderr
        prompts = [r.prompt_text() for r in server.requests]
    assert "repair" in kinds, kinds  # the crash log went to the model
    repair = next(p for p in prompts if "## Repair a crash" in p)
    assert "Traceback (most recent call last)" in repair
    assert "[line hidden: it quotes a protected file]" in repair
    assert "[line hidden: it mentions a held-out metric]" in repair
    assert [s for s in (*secrets, "0.9321") for p in prompts if s in p.lower()] == []
