"""`init --from-log` on what real tools print, and what init cannot guess.

Benchmark tools choose their own units (hyperfine, Criterion and Go print `908.4 ms` one run
and `1.405 s` the next), print a statistic beside its spread, or a row of value-unit pairs; a
metric's name can turn its direction around (accuracy_drop, neg_loss); and a repository may
have none of the files init's defaults name. The sample logs below are written for these tests
in each tool's documented output format.
"""

from __future__ import annotations

import json
import textwrap
import tomllib
from pathlib import Path

import pytest

from autoresearch.metric_discovery import Candidate, candidates, guess_direction, likely_objective
from autoresearch.metrics import parse_metrics
from tests.conftest import git, make_repo, run_cli


def flat(text: str) -> str:
    """Output with rich's line wrapping undone."""
    return " ".join(text.split())


def by_name(text: str) -> dict[str, Candidate]:
    return {c.name: c for c in candidates(text)}


def reads(text: str, cand: Candidate) -> float | None:
    """What the candidate's config reads from `text`."""
    patterns = {cand.name: cand.pattern} if cand.pattern is not None else None
    return parse_metrics(text, cand.format, patterns).get(cand.name)


def written_config(repo: Path) -> dict[str, object]:
    return tomllib.loads((repo / "autoresearch.toml").read_text())


# --- 1. the unit a log printed stays in the pattern ---------------------------------------------

# Prints milliseconds below a second and seconds above, as benchmark tools do.
BENCH_PY = textwrap.dedent(
    """
    import conf
    ms = conf.WORK
    print(f"time: {ms:.1f} ms" if ms < 1000 else f"time: {ms / 1000:.3f} s")
    """
)


def test_a_unit_printed_after_the_number_is_kept_in_the_pattern() -> None:
    log = "iter 10: loss 3.2402, time 110.42ms, mfu 3.36%\nelapsed: 908.4 ms\n"
    found = by_name(log)
    assert (found["time"].unit, found["mfu"].unit, found["elapsed"].unit) == ("ms", "%", "ms")
    assert found["loss"].unit is None
    assert reads(log, found["elapsed"]) == 908.4
    assert reads("elapsed: 1.405 s\n", found["elapsed"]) is None  # another unit: not read
    assert reads("elapsed: 1405ms\n", found["elapsed"]) == 1405  # the same unit, spaced or not
    # Letters glued to a number that are no unit make it no figure (207k, 2nd), and a number
    # that counts the word after it is not the value of the words before it.
    assert "s" not in by_name("estimated 5.1 s (207k iterations)\n")
    assert "tokens" not in by_name("tokens 207k\n")  # 207k is not 207
    # A unit belongs to the number before it, not to the label of the next one.
    latency = by_name("latency 4.1 ms p99 9.8 ms\n")
    assert set(latency) == {"latency", "p99"} and latency["p99"].value == 9.8


def test_init_from_log_keeps_the_unit_and_a_run_in_another_unit_is_a_crash(
        tmp_path: Path) -> None:
    # The pattern was `\btime\s*:\s*(number)`: the candidate's `time: 1.405 s` read as 1.405,
    # below the baseline's 908.4, and a 55 % slowdown would have been kept as a huge gain.
    repo = make_repo(tmp_path / "repo", {
        "bench.py": BENCH_PY, "conf.py": "WORK = 908.4  # knob: choice(908.4, 1405.0)\n"})
    (tmp_path / "run.log").write_text("time: 908.4 ms\n")
    init = run_cli(repo, "init", "--from-log", str(tmp_path / "run.log"), "--metric", "time",
                   "--command", "{python} bench.py", "--scope", "conf.py", "--protected",
                   "bench.py", "--budget", "5")
    assert init.returncode == 0, init.stdout + init.stderr
    out = flat(init.stdout)
    assert "the pattern reads time only where ms follows the number, as in the log" in out
    assert "a run that prints it in another unit" in out and "is a crash" in out
    config = (repo / "autoresearch.toml").read_text()
    (repo / "autoresearch.toml").write_text(
        config.replace("# deterministic = false", "deterministic = true"))
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "autoresearch init")
    run = run_cli(repo, "run", "-n", "2")
    assert run.returncode == 0, run.stdout + run.stderr
    assert ("exit 0 but no time in the output (regex format, which its pattern reads only in "
            "ms): time: 1.405 s") in flat(run.stdout)
    results = json.loads(run_cli(repo, "results", "--json").stdout)
    rows = [(e["status"], e["reason"]) for e in results["experiments"]]
    assert [status for status, _ in rows] == ["keep", "crash"], rows  # the baseline, then it
    assert "no time in the output" in rows[1][1], rows
    branch = results["session"]["branch"]
    assert git(repo, "rev-parse", branch) == git(repo, "rev-parse", "main")  # nothing kept

    # check, on the slower code, says why rather than offer a pattern for seconds.
    (repo / "conf.py").write_text("WORK = 1405.0  # knob: choice(908.4, 1405.0)\n")
    git(repo, "commit", "-qam", "slower")
    check = run_cli(repo, "check")
    assert check.returncode == 1, check.stdout + check.stderr
    said = flat(check.stdout)
    assert ("time was printed in s (time: 1.405 s), but its pattern reads it only in ms: the "
            "command changed its unit") in said
    assert "to make time the objective" not in said


def test_check_warns_when_the_objective_is_printed_in_different_units(tmp_path: Path) -> None:
    # The first label in bold, as a terminal shows it: read as the terminal shows it.
    script = ("X = 1  # knob: int(1, 9)\nprint('\\x1b[1mtime\\x1b[0m: 5.0 s')\n"
              "print('time: 120 ms')\n")
    repo = make_repo(tmp_path / "repo", {"work.py": script})
    init = run_cli(repo, "init", "--metric", "time", "--format", "regex", "--command",
                   "{python} work.py", "--scope", "work.py", "--budget", "5", "--commit")
    assert init.returncode == 0, init.stdout + init.stderr
    check = run_cli(repo, "check")
    said = flat(check.stdout)
    assert "time was printed 2 times (5 s, 120 ms): the last is the one used" in said, said
    assert ("time was printed in different units (s, ms): its values are compared as plain "
            "numbers") in said
    # One unit throughout: no warning.
    (repo / "work.py").write_text(script.replace("5.0 s", "5000 ms"))
    git(repo, "commit", "-qam", "one unit")
    again = flat(run_cli(repo, "check").stdout)
    assert "printed 2 times (5000 ms, 120 ms)" in again and "different units" not in again


# --- 2. the output of standard benchmark tools ----------------------------------------------------

# `go test -bench . -benchmem` on a 2-core machine (GOMAXPROCS=2 appends -2 to each name).
GO_LOG = (
    "goos: linux\n"
    "goarch: amd64\n"
    "pkg: example.org/checksum\n"
    "cpu: AMD EPYC 7B12\n"
    "BenchmarkAdler-2      \t  812345\t      1467 ns/op\t 698.12 MB/s\t       0 B/op\t"
    "       0 allocs/op\n"
    "BenchmarkCRC/small-2  \t 3021744\t       396.8 ns/op\t     128 B/op\t       2 allocs/op\n"
    "PASS\n"
    "ok  \texample.org/checksum\t4.117s\n"
)
# The same benchmark with GOMAXPROCS=1: Go appends no suffix; and on an 8-core machine, -8.
GO_ONE_CORE = "BenchmarkSum   \t     100\t   1234567 ns/op\nPASS\n"
GO_EIGHT_CORES = "BenchmarkSum-8 \t     120\t   1100042 ns/op\nPASS\n"

HYPERFINE_LOG = textwrap.dedent(
    """\
    Benchmark 1: ./target/release/sum data.txt
      Time (mean ± σ):      12.3 ms ±   0.4 ms    [User: 9.1 ms, System: 2.0 ms]
      Range (min … max):    11.6 ms …  13.9 ms    212 runs
    """
)

CRITERION_LOG = textwrap.dedent(
    """\
    Benchmarking sum 1k
    Benchmarking sum 1k: Warming up for 3.0000 s
    Benchmarking sum 1k: Collecting 100 samples in estimated 5.0131 s (192k iterations)
    Benchmarking sum 1k: Analyzing
    sum 1k                  time:   [26.123 µs 26.301 µs 26.505 µs]
                            thrpt:  [37.731 Melem/s 38.022 Melem/s 38.281 Melem/s]
                     change: [-1.9301% -0.3254% +1.2101%] (p = 0.70 > 0.05)
                     No change in performance detected.
    Found 11 outliers among 100 measurements (11.00%)
      6 (6.00%) high mild
      5 (5.00%) high severe
    """
)


def test_go_benchmarks_offer_each_value_per_op_not_the_gomaxprocs_suffix() -> None:
    found = by_name(GO_LOG)
    assert "benchmarkadler" not in found and "benchmarkcrc_small" not in found
    adler = found["benchmarkadler_ns_per_op"]
    assert (adler.value, adler.unit) == (1467, "ns/op")
    assert found["benchmarkadler_mb_per_s"].value == 698.12
    assert found["benchmarkcrc_small_b_per_op"].value == 128
    assert found["benchmarkcrc_small_ns_per_op"].value == 396.8
    assert likely_objective(list(found.values())).name == "benchmarkcrc_small_ns_per_op"
    assert all(reads(GO_LOG, c) == c.value for c in found.values())
    # Listed without the suffix too, and read back whatever the machine's core count.
    one = by_name(GO_ONE_CORE)["benchmarksum_ns_per_op"]
    assert one.value == 1234567
    assert reads(GO_EIGHT_CORES, one) == 1100042
    assert reads(GO_ONE_CORE, by_name(GO_EIGHT_CORES)["benchmarksum_ns_per_op"]) == 1234567
    assert guess_direction(adler.name) == "minimize"
    assert guess_direction("benchmarkadler_mb_per_s") == "maximize"
    # The unit at the end decides, whatever the benchmark is called.
    assert guess_direction("benchmarkparsetime_mb_per_s") == "maximize"


def test_hyperfine_offers_the_mean() -> None:
    found = by_name(HYPERFINE_LOG)
    mean = found["time_mean"]
    assert (mean.value, mean.unit) == (12.3, "ms")
    assert likely_objective(list(found.values())) == mean
    assert reads(HYPERFINE_LOG, mean) == 12.3
    assert reads(HYPERFINE_LOG.replace("12.3 ms", "1.023 s"), mean) is None


def test_criterion_offers_the_middle_estimate_and_reads_no_prose() -> None:
    found = by_name(CRITERION_LOG)
    time = found["time"]
    assert (time.value, time.unit) == (26.301, "µs")  # the estimate, not the lower bound
    assert found["thrpt"].value == 38.022 and found["change"].value == -0.3254
    assert likely_objective(list(found.values())) == time
    assert reads(CRITERION_LOG, time) == 26.301
    # The lower bound in another unit than the estimate is still skipped.
    assert reads("time:   [999.12 ns 1.0012 µs 1.0050 µs]\n", time) == 1.0012
    assert set(found) == {"time", "thrpt", "change"}, found  # no outliers_among, measurements


@pytest.mark.parametrize(
    ("log", "metric", "name", "value", "pattern_unit"),
    [
        (GO_ONE_CORE, "ns_per_op", "benchmarksum_ns_per_op", 1234567, "ns/op"),
        (HYPERFINE_LOG, "time_mean", "time_mean", 12.3, "ms"),
        (CRITERION_LOG, "time", "time", 26.301, "µs"),
    ],
)
def test_init_from_a_benchmark_tools_log_writes_a_config_that_reads_it(
        tmp_path: Path, log: str, metric: str, name: str, value: float,
        pattern_unit: str) -> None:
    repo = make_repo(tmp_path / "repo", {"run.sh": "cat bench.log\n", "conf.ini": "n = 1\n"})
    (tmp_path / "run.log").write_text(log)
    listed = run_cli(repo, "init", "--from-log", str(tmp_path / "run.log"))
    assert listed.returncode == 2 and f"e.g. --metric {name}" in flat(listed.stderr), (
        listed.stdout + listed.stderr)
    result = run_cli(repo, "init", "--from-log", str(tmp_path / "run.log"), "--metric", metric,
                     "--command", "sh run.sh", "--scope", "conf.ini", "--protected", "run.sh")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"objective {name} = {value:g}" in flat(result.stdout)
    metric_table = written_config(repo)["metric"]
    assert isinstance(metric_table, dict)
    assert metric_table["name"] == name and metric_table["direction"] == "minimize"
    pattern = metric_table["patterns"][name]
    assert pattern_unit in pattern
    assert parse_metrics(log, "regex", {name: pattern}) == {name: value}


# --- 3. names that turn the direction around ------------------------------------------------------


@pytest.mark.parametrize(("name", "direction"), [
    ("accuracy_drop", "minimize"), ("accuracyDrop", "minimize"), ("top1_decrease", "minimize"),
    ("neg_loss", "maximize"), ("neg_mean_squared_error", "maximize"),
    ("negative_log_likelihood", "minimize"), ("log_likelihood", "maximize"),
    ("loss_improvement", "maximize"), ("error_reduction", "maximize"),
    ("time_saved", "maximize"), ("accuracy_gain", "maximize"), ("dropout_loss", "minimize"),
    # What the name does not settle: a signed change, two turns, a turn of an unknown quantity.
    ("loss_delta", None), ("accuracy_change", None), ("neg_loss_drop", None),
    ("neg_widgets", None),
    # Names without a turning word are read as before.
    ("val_loss", "minimize"), ("accuracy", "maximize"), ("samples_per_second", "maximize")])
def test_a_word_that_turns_the_direction_around_is_read(name: str, direction: str | None) -> None:
    assert guess_direction(name) == direction


def test_init_guesses_a_turned_direction_and_says_when_it_cannot(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"train.py": "LR = 0.1\n"})
    flags = ("--command", "{python} train.py", "--scope", "train.py", "--force")
    drop = run_cli(repo, "init", "--metric", "accuracy_drop", *flags)
    assert drop.returncode == 0, drop.stdout + drop.stderr
    metric = written_config(repo)["metric"]
    assert isinstance(metric, dict) and metric["direction"] == "minimize"
    assert "a default" not in drop.stdout
    delta = run_cli(repo, "init", "--metric", "loss_delta", *flags)
    assert delta.returncode == 0, delta.stdout + delta.stderr
    assert ("direction = 'minimize': a default, since the name 'loss_delta' says neither way"
            in flat(delta.stdout))


# --- 4. what init cannot guess, it requires -------------------------------------------------------


def test_init_requires_a_command_and_a_scope_it_cannot_guess(tmp_path: Path) -> None:
    # No .py file here: the defaults ({python} evaluate.py, scope *.py) name nothing that exists.
    repo = make_repo(tmp_path / "repo", {"run.sh": "echo 'score: 1'\n", "conf.ini": "n = 1\n",
                                         "README": "a benchmark\n"})
    bare = run_cli(repo, "init", "--metric", "score")
    assert bare.returncode == 2, bare.stdout + bare.stderr
    err = flat(bare.stderr)
    assert ("init cannot guess the verify command (its default, `{python} evaluate.py`, runs "
            "evaluate.py, and this directory has no such file) nor the scope (its default, "
            "'*.py', matches no file in this directory)") in err
    assert "where: --command, --scope" in err and "give --command" in err and "give --scope" in err
    assert "holds only evaluate.py" not in err

    scoped = run_cli(repo, "init", "--metric", "score", "--scope", "README")
    assert scoped.returncode == 2 and "where: --command fix:" in flat(scoped.stderr)
    assert "protected evaluate.py" not in scoped.stdout

    commanded = run_cli(repo, "init", "--metric", "score", "--command", "sh run.sh")
    assert commanded.returncode == 2 and "where: --scope fix:" in flat(commanded.stderr)
    assert not (repo / "autoresearch.toml").exists() and not (repo / "program.md").exists()

    both = run_cli(repo, "init", "--metric", "score", "--command", "sh run.sh", "--scope",
                   "conf.ini", "--protected", "run.sh")
    assert both.returncode == 0, both.stdout + both.stderr
    assert written_config(repo)["scope"] == ["conf.ini"]
    assert "evaluate.py" not in (repo / "autoresearch.toml").read_text()


def test_init_still_takes_defaults_that_name_files_that_exist(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"evaluate.py": "print('score: 1')\n",
                                         "model.py": "X = 1\n"})
    result = run_cli(repo, "init")
    assert result.returncode == 0, result.stdout + result.stderr
    config = written_config(repo)
    assert config["scope"] == ["model.py"] and config["protected"] == ["evaluate.py"]
