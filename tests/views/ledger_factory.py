"""Build a realistic session ledger in a throw-away git repository, through the Ledger API.

The commits are real: kept ones advance `autoresearch/<tag>` in a session worktree, the others are
parked under `refs/autoresearch/<tag>/discarded/<id>` and the branch is reset, the way the session
loop does it. Metrics, logs, fingerprints and costs are written as the loop would record them, so
the views can be tested without running a session (and with statuses a short session rarely hits).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from autoresearch.ledger import ExperimentRow, Ledger, SessionRow
from tests.support.git_repo import git as support_git
from tests.support.git_repo import make_repo

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Test Author", "GIT_AUTHOR_EMAIL": "author@example.invalid",
    "GIT_COMMITTER_NAME": "Test Committer", "GIT_COMMITTER_EMAIL": "committer@example.invalid",
    "GIT_CONFIG_NOSYSTEM": "1",
}

FILES = {
    "train.py": "LR = 0.01\nEPOCHS = 3\n\n\ndef train():\n    return LR * EPOCHS\n",
    "model.py": "HIDDEN = 64\nDROPOUT = 0.0\nDTYPE = 'float32'\n",
    "data.py": "SHUFFLE = False\nBATCH = 32\n",
    "README.md": "# toy\n\nA toy project.\n",
    "program.md": "Make the score small.\n",
    "autoresearch.toml": (
        'scope = ["*.py", "README.md"]\n\n[verify]\ncommand = "python train.py"\n'
        'budget_seconds = 5\n\n[metric]\nname = "score"\ndirection = "minimize"\n'
    ),
    ".gitignore": ".autoresearch/\n",
}


@dataclass(frozen=True)
class Planned:
    hypothesis: str
    status: str
    values: list[float]
    edits: dict[str, str] = field(default_factory=dict)
    cost_usd: float = 0.0


def _sub(path: str, old: str, new: str) -> dict[str, str]:
    return {path: FILES[path].replace(old, new)}


DEFAULT_PLAN: list[Planned] = [
    Planned("raise the learning rate to 0.02", "keep", [9.61, 9.58, 9.63],
            _sub("train.py", "LR = 0.01", "LR = 0.02"), 0.012),
    Planned("wider hidden layer (128 units)", "discard", [9.70, 9.64],
            _sub("model.py", "HIDDEN = 64", "HIDDEN = 128"), 0.010),
    Planned("switch the model to bfloat16", "crash", [],
            _sub("model.py", "'float32'", "'bfloat16'"), 0.011),
    Planned("shuffle the data every epoch", "keep", [9.31, 9.28, 9.35],
            _sub("data.py", "SHUFFLE = False", "SHUFFLE = True"), 0.009),
    Planned("five epochs instead of three", "timeout", [],
            {"train.py": FILES["train.py"].replace("LR = 0.01", "LR = 0.02")
             .replace("EPOCHS = 3", "EPOCHS = 5")}, 0.013),
    Planned("batch of 64", "discard", [9.33],
            {"data.py": "SHUFFLE = True\nBATCH = 64\n"}, 0.008),
    Planned("edit the metric file", "rejected", [], {}, 0.004),
    Planned("cosine learning-rate schedule", "keep", [8.97, 9.01, 8.99],
            {"train.py": FILES["train.py"].replace("LR = 0.01", "LR = 0.02")
             + "SCHEDULE = 'cosine'\n"}, 0.015),
    Planned("dropout 0.1 with a larger batch", "keep", [8.80, 8.84, 8.79],
            {"model.py": FILES["model.py"].replace("DROPOUT = 0.0", "DROPOUT = 0.1"),
             "data.py": "SHUFFLE = True\nBATCH = 48\n"}, 0.014),
    Planned("document the defaults", "keep", [8.81, 8.80, 8.82],
            {"README.md": FILES["README.md"] + "\nDefaults: LR 0.02, cosine.\n"}, 0.006),
]
BASELINE_VALUES = [10.02, 9.97, 10.01]


def git(repo: Path, *args: str) -> str:
    return support_git(repo, *args, identity=GIT_ENV)


def init_repo(repo: Path, files: dict[str, str] | None = None) -> str:
    """A git repository with one commit on `main`; returns that commit."""
    make_repo(repo, files or FILES, message="initial", identity=GIT_ENV)
    return git(repo, "rev-parse", "HEAD")


@dataclass
class BuiltSession:
    repo: Path
    ledger: Ledger
    session: SessionRow
    worktree: Path
    noise: float
    incumbent: float
    experiments: list[ExperimentRow] = field(default_factory=list)

    @property
    def tag(self) -> str:
        return self.session.tag

    def refresh(self) -> SessionRow:
        row = self.ledger.session(self.tag)
        assert row is not None
        self.session = row
        return row


def _record_runs(built: BuiltSession, exp: ExperimentRow, sha: str, values: list[float],
                 status: str, role: str = "candidate") -> None:
    logs = built.repo / ".autoresearch" / "logs" / built.tag
    logs.mkdir(parents=True, exist_ok=True)
    fingerprint = {"python": "3.11.2", "platform": "Linux-x86_64", "cpu_count": 8,
                   "git_commit": sha[:12], "env": {"AUTORESEARCH_TIME_BUDGET": "5"}}
    outcomes = values or [float("nan")]
    for idx, value in enumerate(outcomes):
        log = logs / f"{exp.id}-{idx}.log"
        if status == "crash":
            text = ("loading model\nTraceback (most recent call last):\n  File \"model.py\", "
                    "line 3\nTypeError: bfloat16 is not supported here\n")
        elif status == "timeout":
            text = "epoch 1\nepoch 2\n[autoresearch] killed after the 65 s timeout\n"
        else:
            text = f"epoch 1\nepoch 2\nepoch 3\nscore: {value}\n"
        log.write_text(text)
        built.ledger.add_run(
            exp.id, role=role, idx=idx, commit_sha=sha,
            status="ok" if value == value else status, exit_code=0 if value == value else 1,
            duration_s=4.2 + idx * 0.1, log_path=str(log), fingerprint=fingerprint,
            fingerprint_key="fp-" + sha[:8], started_at=time.time(),
            metrics={"score": value} if value == value else {},
        )


# Called with the session, the experiment and its commit after its runs, before the verdict is
# written (where the loop's review gate sits); a string it returns replaces the decision reason.
BeforeVerdict = Callable[["BuiltSession", ExperimentRow, str], str | None]


def build_session(repo: Path, *, tag: str = "demo", plan: list[Planned] | None = None,
                  max_usd: float | None = 1.0, start: float | None = None,
                  compute_usd_per_hour: float | None = None,
                  baseline_values: list[float] | None = None,
                  before_verdict: BeforeVerdict | None = None) -> BuiltSession:
    """A finished session with a baseline and the planned experiments, one minute apart."""
    base_values = baseline_values if baseline_values is not None else BASELINE_VALUES
    base = init_repo(repo)
    worktree = repo / ".autoresearch" / "worktrees" / tag
    git(repo, "worktree", "add", "-q", "-b", f"autoresearch/{tag}", str(worktree), base)
    ledger = Ledger(repo / ".autoresearch" / "ledger.db")
    config = {"scope": ["*.py"], "verify": {"command": "python train.py", "budget_seconds": 5},
              "metric": {"name": "score", "direction": "minimize"},
              "limits": {"max_usd": max_usd, "max_hours": 8.0, "max_experiments": None,
                         "compute_usd_per_hour": compute_usd_per_hour}}
    t0 = start if start is not None else time.time() - 60.0 * (len(plan or DEFAULT_PLAN) + 2)
    session = ledger.create_session(
        tag=tag, branch=f"autoresearch/{tag}", base_commit=base, worktree=str(worktree),
        metric="score", direction="minimize", config=config, proposer="llm", created_at=t0)
    ledger.set_session_status(session.id, "running")

    noise = statistics.stdev(base_values) if len(base_values) >= 2 else float("nan")
    built = BuiltSession(repo, ledger, session, worktree, noise, statistics.mean(base_values))
    exp = ledger.create_experiment(session, kind="baseline", status="running",
                                   hypothesis="baseline", parent_commit=base, started_at=t0 + 5)
    _record_runs(built, exp, base, base_values, "keep")
    ledger.record_commit(exp.id, commit_sha=base, tree_sha=git(repo, "rev-parse", base + "^{tree}"))
    ledger.finish_experiment(exp.id, status="keep", objective=built.incumbent,
                             reason="baseline: the code as it was", finished_at=t0 + 50)
    ledger.set_session_noise(session.id, noise if noise == noise else None)
    built.experiments.append(_get(ledger, exp.id))
    for i, planned in enumerate(plan or DEFAULT_PLAN):
        add_experiment(built, planned, started_at=t0 + 60.0 * (i + 1),
                       before_verdict=before_verdict)
    ledger.set_session_status(session.id, "finished")
    built.refresh()
    return built


def add_experiment(built: BuiltSession, planned: Planned,
                   started_at: float | None = None,
                   before_verdict: BeforeVerdict | None = None) -> ExperimentRow:
    """Record one more experiment the way the loop does (usable while a dashboard watches)."""
    ledger, wt = built.ledger, built.worktree
    parent = git(wt, "rev-parse", "HEAD")
    t_start = started_at if started_at is not None else time.time() - 50
    exp = ledger.create_experiment(built.session, hypothesis=planned.hypothesis,
                                   rationale=f"Because {planned.hypothesis} may help.",
                                   proposer="llm", parent_commit=parent, status="running",
                                   started_at=t_start)
    sha: str | None = None
    files: list[str] = []
    if planned.status != "rejected":
        for name, text in planned.edits.items():
            (wt / name).write_text(text)
        git(wt, "add", "-A")
        git(wt, "commit", "-q", "-m", f"{planned.hypothesis}\n\nExperiment-Id: {exp.id}")
        sha = git(wt, "rev-parse", "HEAD")
        files = sorted(planned.edits)
        _record_runs(built, exp, sha, planned.values, planned.status)
    if planned.cost_usd:
        ledger.add_usage(built.session.id, exp.id, provider="anthropic", model="claude-test",
                         input_tokens=1200, output_tokens=300, cost_usd=planned.cost_usd)
    objective = statistics.mean(planned.values) if planned.values else None
    delta = None if objective is None else objective - built.incumbent
    reasons = {
        "keep": "improved by more than 2σ of the noise floor",
        "discard": "not better than the incumbent by the noise threshold",
        "crash": "the verify command exited with status 1",
        "timeout": "killed after the 65 s timeout",
        "rejected": "guardrail: autoresearch.toml is protected",
        "interrupted": "the session stopped mid-experiment; marked interrupted on resume",
    }
    if sha is not None:
        ledger.record_commit(exp.id, commit_sha=sha, tree_sha=git(wt, "rev-parse", sha + "^{tree}"),
                             files=files, lines_added=len(files), lines_removed=len(files))
    ledger.record_judgement(exp.id, incumbent_objective=built.incumbent, delta=delta,
                            threshold=2 * built.noise)
    reason = reasons[planned.status]
    if before_verdict is not None and sha is not None:
        reason = before_verdict(built, _get(ledger, exp.id), sha) or reason
    ledger.finish_experiment(exp.id, status=planned.status, objective=objective,
                             reason=reason, finished_at=t_start + 48.0)
    if sha is not None and planned.status != "keep":
        git(built.repo, "update-ref", f"refs/autoresearch/{built.tag}/discarded/{exp.id}", sha)
        git(wt, "reset", "-q", "--hard", parent)
    if planned.status == "keep" and objective is not None:
        built.incumbent = objective
    ledger.add_event(built.session.id, "experiment_finished", f"{exp.id} {planned.status}",
                     experiment_id=exp.id)
    row = _get(ledger, exp.id)
    built.experiments.append(row)
    return row


def _get(ledger: Ledger, exp_id: str) -> ExperimentRow:
    row = ledger.experiment(exp_id)
    assert row is not None
    return row
