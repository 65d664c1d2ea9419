"""Every number of autoresearch.toml has a range, and a setting that could not work is refused.

A finite but extreme value crashed a session with a traceback (`max_log_mb = 1e308`,
`drift_prior = 1e-300`) or made it quietly do nothing useful (`headline_pairs = 1`, a guard no
value passes, `max_usd = 0`); a key the chosen setting never reads (`patterns` without `format =
"regex"`) was ignored. Each is now a config error naming the field, the allowed range or the
fix, with exit 2 and nothing recorded; `check` warns when the unchanged code already breaks a
guard's bound.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
from pathlib import Path
from typing import get_args

import pytest

from autoresearch import config as config_module
from autoresearch.config_errors import allowed_range
from tests.conftest import CONFIG, SCORE_PY, make_repo, run_cli

KNOB = '\n[knobs]\n"target.py:X" = "float(0, 10)"\n'


def repo_with(tmp_path: Path, config: str) -> Path:
    return make_repo(tmp_path / "repo", {"target.py": "X = 3.0\n", "score.py": SCORE_PY,
                                         "autoresearch.toml": config})


def refused(repo: Path, *args: str) -> str:
    """The error of a command that must refuse the config (exit 2, no traceback, no ledger),
    with its lines joined as one."""
    result = run_cli(repo, *(args or ("check",)))
    out = result.stdout + result.stderr
    assert result.returncode == 2, out
    assert "Traceback" not in out
    assert not (repo / ".autoresearch" / "ledger.db").exists()
    return " ".join(out.split())


def decision(line: str) -> str:
    return CONFIG.replace("deterministic = true", f"deterministic = true\n{line}")


def verify(line: str) -> str:
    return CONFIG.replace("timeout_seconds = 8", f"timeout_seconds = 8\n{line}")


@pytest.mark.parametrize(
    ("config", "field", "allowed"),
    [
        # Overflowed the log cap at the first run (OverflowError in executor.py).
        (verify("max_log_mb = 1e308"), "verify.max_log_mb", "from 0.1 to 100000"),
        # Overflowed the drift model judging the first candidate (effect.py).
        (decision("drift_prior = 1e-300"), "decision.drift_prior", "from 0.001 to 1"),
        (CONFIG.replace("budget_seconds = 5", "budget_seconds = 1e12"), "verify.budget_seconds",
         "more than 0 and at most 2592000"),
        (CONFIG.replace("timeout_seconds = 8", "timeout_seconds = 1e300"),
         "verify.timeout_seconds", "more than 0 and at most 2592000"),
        (CONFIG + '\n[[guards]]\ncommand = "true"\ntimeout_seconds = 1e300\n',
         "guards[0].timeout_seconds", "more than 0 and at most 2592000"),
        (decision("target_effect = 1e308"), "decision.target_effect", "from 0.01 to 100"),
        (decision("false_keep = 1e-300"), "decision.false_keep", "at least 1e-06 and less than"),
        (decision("simplicity_budget = 1e308"), "decision.simplicity_budget", "from 0 to 100"),
        (decision("control_every = 9223372036854775807"), "decision.control_every",
         "from 0 to 10000"),
        (decision("max_consecutive_crashes = 1000000000"), "decision.max_consecutive_crashes",
         "from 1 to 1000"),
        (decision('policy = "classic"\nnoise_k = 1e308'), "decision.noise_k",
         "more than 0 and at most 10"),
        (CONFIG + "\n[limits]\nmax_hours = 1e308\n", "limits.max_hours",
         "more than 0 and at most 8784"),
        (CONFIG + "\n[limits]\ncompute_usd_per_hour = 1e308\n", "limits.compute_usd_per_hour",
         "from 0 to 100000"),
        (CONFIG + "\n[limits]\nmax_experiments = 9223372036854775807\n",
         "limits.max_experiments", "from 1 to 1000000"),
        (CONFIG + "\n[run]\nray_cpus = 1e-300\n", "run.ray_cpus", "from 0.01 to 1024"),
        (CONFIG + "\n[run]\nray_gpus = 1e-300\n", "run.ray_gpus", "0 or from 0.01 to 64"),
        (CONFIG + "\n[run]\nthreads = 1000000\n", "run.threads", '"auto" or from 1 to 4096'),
        (CONFIG.replace("repeats = 2", "repeats = 100000"), "decision.repeats",
         '"auto" or from 1 to 100'),
        (CONFIG + "\n[review]\ntool_timeout_seconds = 1e308\n", "review.tool_timeout_seconds",
         "more than 0 and at most 2592000"),
        (CONFIG + "\n[review]\ninline_cap = 1000000000\n", "review.inline_cap",
         "from 0 to 10000"),
    ],
)
def test_a_number_out_of_its_range_is_refused_naming_the_field_and_the_range(
        tmp_path: Path, config: str, field: str, allowed: str) -> None:
    err = refused(repo_with(tmp_path, config))
    assert f"{field}: " in err and "is out of range" in err and allowed in err, err
    assert f"autoresearch.toml → {field}" in err  # where
    assert f"fix: set {field.rsplit('.', 1)[-1]} to " in err  # how


def test_the_crashing_extremes_are_refused_before_run_records_anything(tmp_path: Path) -> None:
    repo = repo_with(tmp_path, verify("max_log_mb = 1e308") + KNOB)
    err = refused(repo, "run", "-n", "2")
    assert "verify.max_log_mb: 1e+308 is out of range" in err


@pytest.mark.parametrize("pairs", ["1", "-1", "51"])
def test_a_headline_of_one_pair_is_refused_and_two_to_fifty_off_or_auto_are_not(
        tmp_path: Path, pairs: str) -> None:
    # One pair gives no interval: the verified headline said a real 32σ gain "covers 0".
    err = refused(repo_with(tmp_path, decision(f"headline_pairs = {pairs}")))
    assert "decision.headline_pairs" in err
    assert 'it must be 0 (off), "auto", or from 2 to 50' in err
    assert ("one pair gives no interval" in err) == (pairs == "1")


def test_the_headline_pairs_that_give_an_interval_are_accepted(tmp_path: Path) -> None:
    for pairs in ("0", "2", "50", '"auto"'):
        repo = repo_with(tmp_path / pairs.strip('"'), decision(f"headline_pairs = {pairs}") + KNOB)
        result = run_cli(repo, "check")
        assert result.returncode == 0, result.stdout + result.stderr


def test_a_guard_no_value_can_pass_is_refused_naming_the_guard_and_both_bounds(
        tmp_path: Path) -> None:
    config = CONFIG + '\n[[guards]]\nmetric = "mem_mb"\nmax = 1000\n' \
        '\n[[guards]]\nmetric = "mem_mb"\nmin = 10\nmax = 5\n'
    err = refused(repo_with(tmp_path, config), "run", "-n", "2")
    assert "guards[1]: min = 10 is above max = 5: no value can pass this guard" in err
    assert "autoresearch.toml → guards[1]" in err and "fix: make min at most max" in err


@pytest.mark.parametrize(
    ("guard", "where", "words"),
    [
        ('metric = "mem_mb"\nmax_increase = -5', "guards[0].max_increase",
         "max_increase must be 0 or more"),
        ('metric = "mem_mb"\nmax_decrease = "-10%"', "guards[0].max_decrease",
         "max_decrease must be 0 or more"),
        ('command = "true"\nmax = 5', "guards[0].max", "its max would never be checked"),
        ('metric = "mem_mb"\nmax = 500\ntimeout_seconds = 30', "guards[0].timeout_seconds",
         "a metric guard runs nothing"),
    ],
)
def test_a_guard_bound_that_fails_everything_or_is_never_read_is_refused(
        tmp_path: Path, guard: str, where: str, words: str) -> None:
    err = refused(repo_with(tmp_path, CONFIG + f"\n[[guards]]\n{guard}\n"))
    assert words in err and f"autoresearch.toml → {where}" in err, err


def test_check_warns_when_the_unchanged_code_already_breaks_a_guard_bound(
        tmp_path: Path) -> None:
    # score.py prints mem_mb: 100: a max of 50 fails every candidate that keeps that value.
    config = CONFIG + KNOB + '\n[[guards]]\nmetric = "mem_mb"\nmin = 1\nmax = 50\n'
    result = run_cli(repo_with(tmp_path, config), "check")
    out = " ".join(result.stdout.split())
    assert "the unchanged code's mem_mb = 100 is already above max = 50" in out, out
    assert "where: autoresearch.toml → guards[0].max" in out
    assert "min = 1" not in out  # the bound it meets is not named


def test_a_spending_limit_of_zero_is_refused_saying_no_line_is_no_limit(tmp_path: Path) -> None:
    # It stopped the session before its baseline and recorded an empty "finished" session.
    err = refused(repo_with(tmp_path, CONFIG + KNOB + "\n[limits]\nmax_usd = 0\n"),
                  "run", "-n", "3")
    assert "limits.max_usd: 0 would stop the session before its baseline" in err
    assert "fix: remove the max_usd line for no spending limit" in err


def test_a_recorded_spending_limit_of_zero_is_shown_as_a_limit(tmp_path: Path) -> None:
    # A session recorded before the limit of 0 was refused: the views said "no spending limit".
    repo = repo_with(tmp_path, CONFIG + KNOB
                     + "\n[limits]\nmax_usd = 5\ncompute_usd_per_hour = 1\n")
    assert run_cli(repo, "run", "-n", "2").returncode == 0
    with sqlite3.connect(repo / ".autoresearch" / "ledger.db") as db:
        (raw,) = db.execute("SELECT config_json FROM sessions").fetchone()
        recorded = json.loads(raw)
        recorded["limits"]["max_usd"] = 0.0
        db.execute("UPDATE sessions SET config_json = ?", (json.dumps(recorded),))
    status = run_cli(repo, "status")
    assert status.returncode == 0, status.stderr
    assert "of $0.00" in status.stdout
    out = tmp_path / "report"
    assert run_cli(repo, "report", "--out", str(out)).returncode == 0
    html = (out / "report.html").read_text()
    assert "no spending limit" not in html and "of $0.00 budget" in html
    assert "of $0.00" in "".join(p.read_text() for p in out.glob("*.md"))


@pytest.mark.parametrize(
    ("config", "where", "words", "fix"),
    [
        # The objective came from the kv line, not from the pattern, with no word.
        (CONFIG.replace('direction = "minimize"',
                        "direction = \"minimize\"\npatterns = { score = 'val=([0-9.]+)' }"),
         "metric.patterns", 'patterns are read only with format = "regex", and format is "kv"',
         'add format = "regex" under [metric], or remove patterns'),
        (CONFIG.replace('direction = "minimize"', 'direction = "minimize"\nformat = "json"\n'
                        "patterns = { score = 'val=([0-9.]+)' }"),
         "metric.patterns", 'and format is "json":', "remove patterns"),
        (decision("noise_k = 3"), "decision.noise_k",
         'only the classic rule reads noise_k: policy = "sequential" (the default) never uses it',
         'remove noise_k, or set policy = "classic"'),
        (decision('policy = "classic"\nfalse_keep = 0.05'), "decision.false_keep",
         "only the sequential rule reads false_keep", 'set policy = "sequential"'),
        (decision("drift = false\ndrift_prior = 0.1"), "decision.drift_prior",
         "drift_prior is read only when drift = true", "remove drift_prior, or set drift = true"),
    ],
)
def test_a_key_the_chosen_setting_never_reads_is_refused(tmp_path: Path, config: str,
                                                         where: str, words: str, fix: str) -> None:
    err = refused(repo_with(tmp_path, config))
    assert words in err and f"autoresearch.toml → {where}" in err and fix in err, err


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda p: p.mkdir(), "autoresearch.toml is a directory, not a file"),
        (lambda p: os.symlink(p.parent / "gone.toml", p),
         "autoresearch.toml is a symbolic link to"),
        (lambda p: os.symlink(p.name, p), "autoresearch.toml is a symbolic link that loops"),
    ],
)
def test_a_config_path_that_is_no_file_is_named_as_what_it_is(tmp_path: Path, make: object,
                                                              words: str) -> None:
    # It was "no autoresearch.toml found ... run autoresearch init", and init said it existed.
    repo = make_repo(tmp_path / "repo", {"target.py": "X = 3.0\n", "score.py": SCORE_PY})
    assert callable(make)
    make(repo / "autoresearch.toml")
    for command in ("check", "run", "init", "init --force"):
        err = refused(repo, *command.split())
        assert words in err, err
        assert "no autoresearch.toml found" not in err and "already exists" not in err
        assert "fix: remove or rename it, then run `autoresearch init`" in err


@pytest.mark.parametrize(
    ("knobs", "words"),
    [
        ('"target.py:X" = 5', "expected a string, got 5"),
        ('"target.py:X" = "log(0, 1)"', "knob 'target.py:X'"),
    ],
)
def test_a_knob_error_names_the_whole_knob_key(tmp_path: Path, knobs: str, words: str) -> None:
    # The key has a colon and a dot: `where` was cut at the colon ("knobs.target.py").
    err = refused(repo_with(tmp_path, CONFIG + f"\n[knobs]\n{knobs}\n"))
    assert words in err, err
    assert 'autoresearch.toml → knobs."target.py:X"' in err


# Numbers a validator bounds itself (a count that may be "auto", a limit refused at 0), and a
# guard's own bounds, which may be any finite number.
BOUNDED_BY_A_VALIDATOR = {"DecisionConfig.repeats", "DecisionConfig.headline_pairs",
                          "RunConfig.threads", "LimitsConfig.max_usd", "GuardConfig.max",
                          "GuardConfig.min"}


def test_every_number_of_the_config_declares_both_ends_of_its_range() -> None:
    # A new number without an upper bound is how max_log_mb = 1e308 crashed every run.
    models = (config_module.VerifyConfig, config_module.GuardConfig,
              config_module.DecisionConfig, config_module.LimitsConfig,
              config_module.RunConfig, config_module.ReviewConfig)
    unbounded = []
    for model in models:
        for key, field in model.model_fields.items():
            types = {field.annotation, *get_args(field.annotation)}
            if not types & {int, float} or f"{model.__name__}.{key}" in BOUNDED_BY_A_VALIDATOR:
                continue
            words = allowed_range(model, key) or ""
            if not (re.search(r"at least|more than|from", words)
                    and re.search(r"at most|less than| to ", words)):
                unbounded.append(f"{model.__name__}.{key}: {words or 'no range'}")
    assert not unbounded, unbounded
