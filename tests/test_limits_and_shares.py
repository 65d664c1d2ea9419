"""What each run really gets of the machine, and the limits that stop a session, said as they
are: thread variables refused or ignored with the reason, slots that must take turns on CPUs or a
GPU warned of, a spending limit that cannot apply warned of, and a stop message that names the
limit that stopped the session with the session's true count and spend."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import textwrap
from pathlib import Path

import pytest

from autoresearch.config import parse_config
from autoresearch.config_sections import MAX_THREADS
from autoresearch.errors import ConfigError
from autoresearch.resources import ThreadPlan, effective, plan_threads
from autoresearch.slots import Resources, contention
from tests.conftest import run_cli
from tests.support.git_repo import make_repo

# The verify command: the objective, each thread variable the run was given (a metric each, so
# a value that is no number fails the run), and a sleep as long as its slot's number says.
SCORE = textwrap.dedent(
    """
    import os, time
    import target
    time.sleep(float(os.environ.get("SLEEP_SLOT_" + os.environ["AUTORESEARCH_SLOT"], "0")))
    print(f"score: {(target.X - 7) ** 2}")
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        print(f"{name.lower()}: {os.environ[name]}")
    """
)


def tune_repo(where: Path, extra: str = "", env: str = "") -> Path:
    """A tune session on X in target.py, its runs recording the thread variables they got."""
    config = textwrap.dedent(
        f"""
        scope = ["target.py"]
        protected = ["score.py"]
        [verify]
        command = "{{python}} score.py"
        budget_seconds = 5
        {env}
        [metric]
        name = "score"
        direction = "minimize"
        record = ["omp_num_threads", "mkl_num_threads"]
        [decision]
        repeats = 1
        deterministic = true
        [proposer]
        name = "tune"
        [knobs]
        "target.py:X" = "float(0, 10)"
        """
    ) + textwrap.dedent(extra)
    return make_repo(where, {"target.py": "X = 3.0\n", "score.py": SCORE,
                             "autoresearch.toml": config})


def said(result: subprocess.CompletedProcess[str]) -> str:
    return " ".join((result.stdout + result.stderr).split())


def recorded(repo: Path, name: str) -> set[float]:
    with sqlite3.connect(repo / ".autoresearch" / "ledger.db") as conn:
        rows = conn.execute("SELECT value FROM metrics WHERE name = ?", (name,)).fetchall()
    assert rows, f"no run recorded {name}"
    return {r[0] for r in rows}


# --- 1. thread variables in [verify] env and in the shell ----------------------------------

VERIFY: dict[str, object] = {"command": "true", "budget_seconds": 10}
BASE: dict[str, object] = {"scope": ["a.py"], "metric": {"name": "m", "direction": "minimize"}}


@pytest.mark.parametrize(("name", "value", "problem"), [
    ("OMP_NUM_THREADS", 0, "out of range"), ("OMP_NUM_THREADS", "abc", "not a whole number"),
    ("OMP_NUM_THREADS", "-3", "not a whole number"), ("OMP_NUM_THREADS", MAX_THREADS + 1,
                                                      "out of range"),
    ("MKL_NUM_THREADS", "4,2", "not a whole number"), ("RAYON_NUM_THREADS", "", "not a whole"),
])
def test_a_thread_variable_in_verify_env_must_be_a_count_as_run_threads_is(
        name: str, value: object, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({**BASE, "verify": {**VERIFY, "env": {name: value}}})
    shown = caught.value.render()
    assert f"verify.env.{name}: " in shown and problem in shown, shown
    assert f"from 1 to {MAX_THREADS}" in shown and "[run] threads" in shown, shown
    # The same names and values are fine elsewhere, and a count is fine here.
    assert parse_config({**BASE, "verify": {**VERIFY, "env": {name: 4}}})
    assert parse_config({**BASE, "verify": {**VERIFY, "env": {"OTHER": str(value)}}})


def test_check_refuses_omp_num_threads_zero_in_verify_env(tmp_path: Path) -> None:
    repo = tune_repo(tmp_path / "repo", env="env = { OMP_NUM_THREADS = 0 }")
    check = run_cli(repo, "check")
    assert check.returncode == 2, said(check)
    assert "verify.env.OMP_NUM_THREADS: \"0\" is out of range" in said(check), said(check)
    assert "set [run] threads" in said(check) and "each run gets" not in said(check)


def test_check_names_each_thread_variable_verify_env_sets(tmp_path: Path) -> None:
    plan = ThreadPlan(2, "[run] threads", per_run=True)
    assert effective(plan, {"MKL_NUM_THREADS": "1"}).describe() == (
        "each run gets 2 threads ([run] threads; MKL_NUM_THREADS=1 from [verify] env)")
    assert effective(plan, {"OMP_NUM_THREADS": "3", "MKL_NUM_THREADS": "3"}).why == (
        "OMP_NUM_THREADS from [verify] env")  # the same count: nothing apart to say
    repo = tune_repo(tmp_path / "repo", extra="[run]\nthreads = 2\n",
                     env="env = { MKL_NUM_THREADS = 1 }")
    check = run_cli(repo, "check")
    assert check.returncode == 0, said(check)
    assert "each run gets 2 threads ([run] threads; MKL_NUM_THREADS=1 from [verify] env)" in (
        said(check))


@pytest.mark.parametrize(("value", "problem"), [
    ("abc", "not a whole number"), ("0", "out of range"), ("-1", "not a whole number"),
    ("4,2", "not a whole number"), ("999999", "out of range")])
def test_an_omp_num_threads_from_the_shell_that_is_no_count_is_ignored_saying_why(
        value: str, problem: str) -> None:
    plan = plan_threads("auto", {"OMP_NUM_THREADS": value})
    assert plan.why.startswith("auto: ") and not plan.per_run
    assert plan.note == (f"the environment's OMP_NUM_THREADS=\"{value}\" is ignored, {problem}: "
                         f"a thread count is a whole number from 1 to {MAX_THREADS}, as in "
                         "[run] threads")
    assert plan_threads("auto", {"OMP_NUM_THREADS": "3"}).threads == 3  # a count is kept
    assert plan_threads("auto", {"OMP_NUM_THREADS": " "}).note == ""  # empty: not set at all


def test_check_and_run_say_the_shells_bad_omp_num_threads_is_ignored(tmp_path: Path) -> None:
    repo = tune_repo(tmp_path / "repo")
    shell = {"OMP_NUM_THREADS": "abc"}
    check = run_cli(repo, "check", env=shell)
    assert check.returncode == 0, said(check)
    assert "the environment's OMP_NUM_THREADS=\"abc\" is ignored, not a whole number" in (
        said(check)), said(check)
    run = run_cli(repo, "run", "--tag", "t", "-n", "1", env=shell)
    assert run.returncode == 0, said(run)
    assert "OMP_NUM_THREADS=\"abc\" is ignored" in said(run), said(run)
    # The runs got the measured count, never "abc": the run would have failed on it.
    pinned = recorded(repo, "omp_num_threads")
    assert len(pinned) == 1 and 1 <= next(iter(pinned)) <= len(os.sched_getaffinity(0))
    assert recorded(repo, "mkl_num_threads") == pinned


# --- 5. slots that take turns on the CPUs or on a GPU --------------------------------------


def test_more_threads_than_a_slots_pinned_cpus_and_slots_on_one_gpu_are_warned_of() -> None:
    pinned = [Resources(cpus=(0,), env_vars=(("OMP_NUM_THREADS", "64"),)),
              Resources(cpus=(1,), env_vars=(("OMP_NUM_THREADS", "64"),))]
    (warning,) = contention(2, pinned, cores=2)
    assert warning.startswith("each run is given 64 threads but slot-1's runs are pinned to "
                              "1 CPU ([run] affinity = true)"), warning
    assert "[run] threads = 1" in warning
    fits = [Resources(cpus=(0, 1), env_vars=(("OMP_NUM_THREADS", "2"),))]
    assert contention(1, fits, cores=2) == []
    unpinned = [Resources(env_vars=(("OMP_NUM_THREADS", "64"),))]
    assert contention(1, unpinned, cores=2) == []  # not pinned: the OS spreads them
    gpus = [Resources(gpu="0"), Resources(gpu="1"), Resources(gpu="0"), Resources(gpu="0")]
    (shared,) = contention(4, gpus, cores=8)
    assert shared.startswith("slot-1, slot-3 and slot-4 share GPU 0 (4 workers, 2 GPUs to hand "
                             "out)"), shared
    assert "--workers 2" in shared


def test_check_and_run_warn_of_threads_over_pinned_cpus_and_a_shared_gpu(
        tmp_path: Path) -> None:
    repo = tune_repo(tmp_path / "repo", extra='[run]\nthreads = 64\naffinity = true\n'
                     'gpus = ["0"]\n')
    cpus = max(1, len(os.sched_getaffinity(0)) // 2)
    threads = (f"each run is given 64 threads but slot-1's runs are pinned to {cpus} "
               f"CPU{'s' * (cpus != 1)} ([run] affinity = true)")
    gpu = "slot-1 and slot-2 share GPU 0 (2 workers, 1 GPU to hand out)"
    check = run_cli(repo, "check", "--workers", "2")
    assert check.returncode == 0, said(check)  # warnings, not problems
    assert threads in said(check) and gpu in said(check), said(check)
    run = run_cli(repo, "run", "--tag", "t", "-n", "1", "--workers", "2")
    assert run.returncode == 0, said(run)
    assert f"! {threads}" in said(run) and f"! {gpu}" in said(run), said(run)
    alone = run_cli(repo, "check", "--workers", "1")  # one slot: one GPU each, CPUs enough
    assert "share GPU" not in said(alone)


def test_a_gpu_listed_twice_is_refused(tmp_path: Path) -> None:
    repo = tune_repo(tmp_path / "repo", extra='[run]\ngpus = ["0", "1", "0"]\n')
    check = run_cli(repo, "check")
    assert check.returncode == 2, said(check)
    assert 'run.gpus: lists GPU "0" more than once' in said(check), said(check)
    assert "list each GPU once" in said(check)
    empty = tune_repo(tmp_path / "empty", extra='[run]\ngpus = ["0", " "]\n')
    refused = run_cli(empty, "check")
    assert refused.returncode == 2, said(refused)
    assert "run.gpus: lists an empty GPU id" in said(refused), said(refused)


# --- 4. a spending limit that can never stop the session -----------------------------------


def test_a_spending_limit_nothing_is_priced_against_is_warned_of(tmp_path: Path) -> None:
    repo = tune_repo(tmp_path / "repo", extra="[limits]\nmax_usd = 5\n")
    warning = ("[limits] max_usd = 5 can never stop this session: the tune proposer makes no "
               "model calls and machine time is not priced (no [limits] compute_usd_per_hour)")
    check = run_cli(repo, "check")
    assert check.returncode == 0, said(check)
    assert warning in said(check), said(check)
    run = run_cli(repo, "run", "--tag", "t", "-n", "1")
    assert run.returncode == 0, said(run)
    assert f"! {warning}" in said(run), said(run)
    zero = tune_repo(tmp_path / "zero", extra="[limits]\nmax_usd = 5\ncompute_usd_per_hour = 0\n")
    assert "machine time is priced at $0 ([limits] compute_usd_per_hour = 0)" in said(
        run_cli(zero, "check"))
    priced = tune_repo(tmp_path / "priced",
                       extra="[limits]\nmax_usd = 5\ncompute_usd_per_hour = 2\n")
    assert "can never stop" not in said(run_cli(priced, "check"))


# --- 2. the spending limit's stop message -------------------------------------------------

SPEND = re.compile(r"\$[\d.]+ on model calls \+ \$[\d.]+ on [^$]+ of machine time at \$\S+/h")


def test_the_spending_stop_says_the_spend_after_the_experiments_in_flight(
        tmp_path: Path) -> None:
    # Two slots, the second's runs 2 s longer: the limit is seen when slot-1's experiment ends,
    # while slot-2's still runs and spends ($1 a second). The stop message must say the
    # session's spend once that one is recorded too, as status says it right after.
    repo = tune_repo(tmp_path / "repo",
                     extra="[limits]\nmax_usd = 2\ncompute_usd_per_hour = 3600\n")
    slow = {"SLEEP_SLOT_1": "0.5", "SLEEP_SLOT_2": "2.5"}
    run = run_cli(repo, "run", "--tag", "t", "-n", "20", "--workers", "2", env=slow)
    assert run.returncode == 0, said(run)
    stop = said(run).split("stopped: ", 1)[1]
    assert stop.startswith("the spending limit is reached: spent $"), stop
    told = SPEND.search(stop)
    assert told is not None, stop
    assert " h of machine time" not in told.group(0) and " s of machine time" in told.group(0)
    status = said(run_cli(repo, "status", "--tag", "t"))
    shown = SPEND.search(status)
    assert shown is not None and shown.group(0) == told.group(0), (status, stop)


def test_machine_time_reads_in_seconds_minutes_or_hours() -> None:
    from autoresearch.budget import Spend

    def time_of(seconds: float) -> str:
        return Spend(0.0, seconds / 3600, seconds, 1.0).describe().split(" on ")[2]

    assert time_of(12) == "12 s of machine time at $1/h"
    assert time_of(4.25) == "4.2 s of machine time at $1/h"
    assert time_of(245) == "4 min 05 s of machine time at $1/h"
    assert time_of(4896) == "1 h 21 min of machine time at $1/h"


# --- 3. the experiment limit that stopped the session -------------------------------------


def test_the_experiment_limit_that_stopped_the_session_is_named(tmp_path: Path) -> None:
    repo = tune_repo(tmp_path / "repo", extra="[limits]\nmax_experiments = 2\n")
    first = run_cli(repo, "run", "--tag", "t")
    assert first.returncode == 0, said(first)
    assert "stopped: reached 2 experiments ([limits] max_experiments)" in said(first)
    more = run_cli(repo, "run", "--tag", "t", "-n", "3")  # this run's -n replaces it
    assert more.returncode == 0, said(more)
    assert "stopped: reached 3 experiments" in said(more)
    again = run_cli(repo, "run", "--tag", "t")  # no -n: the config's limit, passed long ago
    assert again.returncode == 0, said(again)
    assert ("stopped: the session had 3 experiments, more than 2, before this run started: "
            "[limits] max_experiments = 2 counts the session's experiments (3 so far); raise "
            "it, or give -n, which counts them too and replaces it: -n 5 runs 2 more") in (
        said(again)), said(again)
    given = run_cli(repo, "run", "--tag", "t", "-n", "3")
    assert ("stopped: reached 3 experiments, before this run started: -n counts the session's "
            "experiments (3 so far), so -n 6 runs 3 more") in said(given), said(given)


def test_a_remembered_n_that_stops_the_session_is_named_as_remembered(tmp_path: Path) -> None:
    repo = tune_repo(tmp_path / "repo")
    # Runs of 0.6 s and a 2 s limit: stopped by the time, before its -n 5.
    first = run_cli(repo, "run", "--tag", "t", "-n", "5", "--until", "2s",
                    env={"SLEEP_SLOT_1": "0.6"})
    assert first.returncode == 0 and "stopped: the time limit" in said(first), said(first)
    resumed = run_cli(repo, "run", "--tag", "t")
    assert resumed.returncode == 0, said(resumed)
    assert "stopped: reached 5 experiments (the -n 5 this session was run with)" in said(
        resumed), said(resumed)


def test_a_limit_in_fractions_of_a_cent_is_said_as_set(tmp_path: Path) -> None:
    # max_usd = 0.025 was printed "$0.03" beside a spend of $0.03: "spent $0.03 of the $0.03
    # budget" for a limit never set. Money is said to four decimals when it has them.
    repo = tune_repo(tmp_path / "repo",
                     extra="[limits]\nmax_usd = 0.025\ncompute_usd_per_hour = 360\n")
    run = run_cli(repo, "run", "--tag", "t", "-n", "20")
    assert run.returncode == 0, said(run)
    assert " of the $0.025 budget ([limits] max_usd)" in said(run), said(run)
    status = said(run_cli(repo, "status", "--tag", "t"))
    assert " of $0.025: $" in status, status
    # The total and its parts in one rule: the parts add up to the total they stand beside.
    spend = re.search(r"spend (\$[\d.]+) of \$0\.025: (\$[\d.]+) on model calls \+ "
                      r"(\$[\d.]+) on", status)
    assert spend is not None, status
    total, model, machine = (float(v.lstrip("$")) for v in spend.groups())
    assert total == pytest.approx(model + machine, abs=2e-4), spend.group(0)
    out = tmp_path / "report"
    assert run_cli(repo, "report", "--tag", "t", "--out", str(out)).returncode == 0
    assert " of $0.025" in (out / "report.md").read_text()
    assert "of $0.025 budget" in (out / "report.html").read_text()


def test_money_keeps_its_fractions_of_a_cent() -> None:
    from autoresearch.views.format import fmt_usd

    assert [fmt_usd(v) for v in (0.025, 0.03, 0.004, 0.12294, 8.8, 0.0, 1234.5, -0.001,
                                 4e-05)] == [
        "$0.025", "$0.03", "$0.004", "$0.1229", "$8.80", "$0.00", "$1234.50", "-$0.001",
        "$4e-05"]
