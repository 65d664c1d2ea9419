"""What `check` (and the start of `run`) says about a config that runs but cannot work as meant:
every problem it counts is a ✗ line naming its field, and its advice can be followed; and what
`init` says of a bad flag (the flag, not a file it never wrote)."""

from __future__ import annotations

import sqlite3
import subprocess
from pathlib import Path

import pytest

from tests.conftest import CONFIG, SCORE_PY, git, make_repo, run_cli

# Seeded, so the sessions here are reproducible. Unseeded, tune's first step from X = 3 goes down
# (worse) half the time, and the guard test below, which must keep one of two candidates, failed
# ~4.5% of runs. Under seed 2 the first candidate steps up, X 3 → 4.05, and is kept.
TUNE = '\n[proposer]\nname = "tune"\nseed = 2\n\n[knobs]\n"target.py:X" = "float(0, 10)"\n'


def flat(text: str) -> str:
    """Output with rich's line wrapping undone."""
    return " ".join(text.split())


def repo_with(tmp_path: Path, config: str, files: dict[str, str] | None = None) -> Path:
    return make_repo(tmp_path / "repo", {"target.py": "X = 3.0\n", "score.py": SCORE_PY,
                                         "autoresearch.toml": config, **(files or {})})


def crosses_match_the_count(result: subprocess.CompletedProcess[str]) -> int:
    """The number of ✗ lines, checked against the "N problem(s) found" summary."""
    crosses = result.stdout.count("✗")
    assert f"{crosses} problem(s) found" in result.stdout, result.stdout
    return crosses


def experiments(repo: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(repo / ".autoresearch" / "ledger.db") as conn:
        return conn.execute("SELECT kind, status FROM experiments ORDER BY id").fetchall()


# --- finding 4: a guard on a metric the command never prints ---------------------------------


def test_a_guard_on_a_metric_never_printed_is_named_and_stops_run_after_the_baseline(
        tmp_path: Path) -> None:
    guard = '\n[[guards]]\nmetric = "memory"\nmax = 10\n'
    repo = repo_with(tmp_path, CONFIG + guard + TUNE)
    check = run_cli(repo, "check")
    assert check.returncode == 1, check.stdout + check.stderr
    out = flat(check.stdout)
    assert "✗ guards[0]: metric 'memory' is not in the output — print it, or fix the name" in out
    assert "where: autoresearch.toml → guards[0]" in out
    assert crosses_match_the_count(check) == 1

    # `run` stops after the baseline instead of discarding every improvement all night.
    run = run_cli(repo, "run", "--iterations", "6")
    assert run.returncode == 5, run.stdout + run.stderr
    said = flat(run.stdout + run.stderr)
    assert "guards[0]: metric 'memory' is not in the output of the unchanged code" in said
    assert "fix the guard's name in autoresearch.toml" in said
    assert experiments(repo) == [("baseline", "crash")]  # no candidate was run

    # Fixed, the same command resumes the session: the baseline passes and candidates run.
    config = (repo / "autoresearch.toml").read_text().replace('"memory"', '"mem_mb"')
    (repo / "autoresearch.toml").write_text(config.replace("max = 10", "max = 1000"))
    git(repo, "commit", "-qam", "guard the metric score.py prints")
    again = run_cli(repo, "run", "--iterations", "4")
    assert again.returncode == 0, again.stdout + again.stderr
    rows = experiments(repo)
    assert rows[:2] == [("baseline", "crash"), ("baseline", "keep")]
    assert any(status == "keep" for kind, status in rows if kind == "candidate"), rows


# --- finding 10: the count of problems matches the ✗ lines -----------------------------------


def test_a_nan_objective_is_one_problem(tmp_path: Path) -> None:
    # score.py prints only `score: nan` here: no mem_mb to record either, so no record list.
    config = CONFIG.replace('record = ["mem_mb"]\n', "") + TUNE
    repo = repo_with(tmp_path, config, {"target.py": "X = 3.0\nNAN = True\n"})
    check = run_cli(repo, "check")
    assert check.returncode == 1, check.stdout + check.stderr
    assert "score is nan" in check.stdout
    assert crosses_match_the_count(check) == 1


def test_check_in_a_repository_without_a_commit_counts_its_problems(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "autoresearch.toml").write_text(CONFIG + TUNE)
    (repo / "target.py").write_text("X = 3.0\n")
    check = run_cli(repo, "check")
    assert check.returncode == 1, check.stdout + check.stderr
    assert "the repository has no commit yet" in check.stdout
    assert crosses_match_the_count(check) >= 1


# --- finding 6: a protected glob that matches no file ----------------------------------------


def test_a_protected_glob_matching_no_file_is_a_warning_with_the_nearest_name(
        tmp_path: Path) -> None:
    config = CONFIG.replace('protected = ["score.py"]', 'protected = ["scor.py", "out/*.json"]')
    repo = repo_with(tmp_path, config + TUNE)
    check = run_cli(repo, "check")
    # A warning, not an error: a glob may name a file created later (out/*.json here).
    assert check.returncode == 0, check.stdout + check.stderr
    out = flat(check.stdout)
    assert ("! protected 'scor.py' matches no committed file, so it protects nothing yet "
            "(did you mean 'score.py'?) where: autoresearch.toml → protected[0]") in out
    assert "fix: write 'score.py' if that is the file to guard" in out
    assert "! protected 'out/*.json' matches no committed file" in out
    assert "where: autoresearch.toml → protected[1]" in out
    assert "ready:" in out
    run = run_cli(repo, "run", "--iterations", "2")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "protected 'scor.py' matches no committed file" in flat(run.stdout)
    # A glob that does match (a directory, a case-folded spelling) is not warned about.
    fine = CONFIG.replace('protected = ["score.py"]', 'protected = ["Score.py", "lib"]')
    (repo / "autoresearch.toml").write_text(fine + TUNE)
    (repo / "lib").mkdir()
    (repo / "lib" / "data.txt").write_text("d\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "protect a directory")
    again = run_cli(repo, "check")
    assert again.returncode == 0 and "matches no committed file" not in again.stdout


# --- finding 8: fix advice that can be followed ----------------------------------------------


def test_a_knob_in_a_protected_file_is_said_to_be_protected_not_out_of_scope(
        tmp_path: Path) -> None:
    repo = repo_with(tmp_path, CONFIG + '\n[proposer]\nname = "tune"\n\n[knobs]\n'
                     '"score.py:noise" = "float(0, 1)"\n')
    check = run_cli(repo, "check")
    assert check.returncode == 2, check.stdout + check.stderr
    out = flat(check.stdout)
    assert ("knob 'score.py:noise' is in score.py, which is protected (protected glob "
            "'score.py'): the proposer may never change it") in out
    assert "to scope in autoresearch.toml" not in out  # following it would only swap errors
    assert "fix: remove the knob, or move the value into an in-scope file" in out
    # The contract itself: always protected, so "drop it from protected" is no advice.
    config = CONFIG + '\n[proposer]\nname = "tune"\n\n[knobs]\n"autoresearch.toml:x" = "float(0, 1)"\n'
    (repo / "autoresearch.toml").write_text(config)
    git(repo, "commit", "-qam", "knob in the contract")
    out = flat(run_cli(repo, "check").stdout)
    assert "is in autoresearch.toml, which is always protected" in out
    assert "fix: remove the knob;" in out and "from protected" not in out


def test_a_knob_in_a_missing_file_says_the_file_does_not_exist(tmp_path: Path) -> None:
    knobs = '\n[proposer]\nname = "tune"\n\n[knobs]\n"targt.py:X" = "float(0, 10)"\n'
    repo = repo_with(tmp_path, CONFIG + knobs)
    check = run_cli(repo, "check")
    assert check.returncode == 2, check.stdout + check.stderr
    out = flat(check.stdout)
    assert "knob 'targt.py:X': targt.py does not exist" in out
    assert 'did you mean "target.py:X"?' in out
    assert "outside the scope" not in out and 'add "targt.py" to scope' not in out


def test_an_always_protected_file_inside_the_scope_is_not_advised_off_protected(
        tmp_path: Path) -> None:
    # A glob that obviously covers the contract: refused when the config is read.
    repo = repo_with(tmp_path, CONFIG.replace('scope = ["target.py"]', 'scope = ["**"]')
                     .replace('protected = ["score.py"]', "protected = []") + TUNE)
    check = run_cli(repo, "check")
    assert check.returncode == 2, check.stdout + check.stderr
    err = flat(check.stderr)
    assert "always-protected 'autoresearch.toml' is inside the scope '**'" in err
    assert "autoresearch.toml, program.md, .gitignore are always protected" in err
    assert "from protected" not in err and "→ scope / protected" not in err
    # A glob that covers the brief only once the repository's files are known.
    config = CONFIG.replace('scope = ["target.py"]', 'scope = ["target.py", "*.md"]') + TUNE
    (repo / "autoresearch.toml").write_text(config)
    (repo / "program.md").write_text("# brief\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "scope the markdown files")
    check = run_cli(repo, "check")
    assert check.returncode == 2, check.stdout + check.stderr
    out = flat(check.stdout)
    assert "protected files are inside the scope: program.md" in out
    assert "narrow the scope so it leaves them out" in out and "program.md is always protected" in out
    assert "from protected" not in out


def makefile_repo(tmp_path: Path, tuning: str) -> Path:
    """A Makefile project whose knobs live in lib/tuning.mk (loss = |BLOCK - 16| + LR)."""
    makefile = ("include lib/tuning.mk\nall:\n\t@python3 -c "
                "\"print('METRIC loss=%s' % (abs($(BLOCK) - 16) + $(LR)))\"\n")
    config = "\n".join(['scope = ["lib/tuning.mk"]', 'protected = ["Makefile"]', "[verify]",
                        'command = "make -s"', "budget_seconds = 5", "[metric]", 'name = "loss"',
                        'direction = "minimize"', 'format = "metric-line"', "[decision]",
                        "deterministic = true", "[proposer]", 'name = "tune"', ""])
    return make_repo(tmp_path / "mk", {"Makefile": makefile, "lib/tuning.mk": tuning,
                                       "autoresearch.toml": config})


def test_makefile_assignments_with_colon_and_question_equals_are_knobs(tmp_path: Path) -> None:
    repo = makefile_repo(tmp_path, "BLOCK := 8  # knob: choice(4, 8, 16)\n"
                                   "LR ?= 0.5  # knob: float(0, 1)\n")
    check = run_cli(repo, "check")
    assert check.returncode == 0, check.stdout + check.stderr
    assert "2 knob(s): lib/tuning.mk:BLOCK, lib/tuning.mk:LR" in flat(check.stdout)
    run = run_cli(repo, "run", "--iterations", "8")
    assert run.returncode == 0, run.stdout + run.stderr
    # What the proposer wrote keeps each line's operator and comment; only the value changes.
    tried = git(repo, "log", "--all", "-p", "--format=", "--", "lib/tuning.mk")
    added = [line[1:] for line in tried.splitlines()
             if line.startswith("+") and not line.startswith("+++")]
    assert added, tried
    for line in added:
        assert line.startswith(("BLOCK := ", "LR ?= ")) and "# knob: " in line, line


def test_a_marker_on_a_line_it_cannot_rewrite_says_which_forms_work(tmp_path: Path) -> None:
    repo = makefile_repo(tmp_path, "BLOCK = 8\nLR = 0.5\nCFLAGS += 3  # knob: int(1, 5)\n")
    check = run_cli(repo, "check")
    assert check.returncode == 2, check.stdout + check.stderr
    out = flat(check.stdout)
    assert ("the `# knob:` marker at lib/tuning.mk:3 is on a line it cannot rewrite: "
            "CFLAGS += 3 # knob: int(1, 5)") in out
    assert "`NAME := value` / `NAME ?= value`" in out and "`+=` appends" in out


def test_markers_that_are_no_knob_are_named_beside_the_knobs_there_are(tmp_path: Path) -> None:
    # Named only when there was no knob at all: beside one, such a marker was dropped without a
    # word, and the user's knob never tuned.
    repo = makefile_repo(tmp_path, "BLOCK := 8  # knob: int(1, 64)\nLR = 0.5\n"
                                   "CFLAGS += 3  # knob: int(1, 5)\n")
    check = run_cli(repo, "check")
    assert check.returncode == 0, check.stdout + check.stderr
    out = flat(check.stdout)
    assert ("1 knob(s): lib/tuning.mk:BLOCK; 1 `# knob:` marker(s) ignored: lib/tuning.mk:3 (not "
            "a line tune can rewrite: CFLAGS += 3 # knob: int(1, 5))") in out, out


# --- finding 7: init blames the flag -----------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "what", "where", "fix"),
    [
        (["--budget", "-1"], "the budget must be a positive number of seconds, not -1",
         "--budget", "e.g. --budget 60"),
        (["--budget", "nan"], "not nan", "--budget", "e.g. --budget 60"),
        (["--pattern", "(a)(b)"], "must have exactly one capture group", "--pattern",
         "one group capturing the number"),
        (["--command", ""], "the verify command is empty", "--command",
         '--command "{python} evaluate.py"'),
        (["--metric", " "], "the metric name is empty", "--metric", "--metric val_loss"),
        (["--scope", "../x.py"], "--scope '../x.py' contains '..'", "--scope", "relative"),
        # What only the config's own validation sees is still said against the flags.
        (["--scope", "*.py", "--protected", "t.py"], "would make an invalid autoresearch.toml: "
         "protected 't.py' is inside the scope '*.py'", "--scope / --protected", "narrow scope"),
        (["--scope", "*"], "always-protected 'autoresearch.toml' is inside the scope '*'",
         "--scope", "are always protected"),
    ],
)
def test_init_reports_a_bad_flag_against_the_flag(tmp_path: Path, flags: list[str], what: str,
                                                  where: str, fix: str) -> None:
    repo = make_repo(tmp_path / "repo", {"t.py": "print(1)\n"})
    # A command, unless the case is about it: the default one's evaluate.py is not there.
    command = [] if "--command" in flags else ["--command", "{python} t.py"]
    result = run_cli(repo, "init", *flags, *command)
    assert result.returncode == 2, result.stdout + result.stderr
    err = flat(result.stderr)
    assert what in err and f"where: {where} fix:" in err and fix in err, err
    assert "autoresearch check" not in err and "Traceback" not in err
    assert not (repo / "autoresearch.toml").exists() and not (repo / "program.md").exists()


# --- finding 5: thousands separators -----------------------------------------------------------


def test_numbers_with_thousands_separators_are_read_whole() -> None:
    from autoresearch.metric_discovery import candidates
    from autoresearch.metrics import parse_metric_value, parse_metrics

    assert parse_metric_value("12,345") == 12345 and parse_metric_value("1,234.5") == 1234.5
    assert parse_metric_value("-1,234,567.25") == -1234567.25
    for not_grouped in ("1,2345", "0,5", "12,34", ",345", "1,,234"):
        assert parse_metric_value(not_grouped) is None, not_grouped
    assert parse_metrics("loss: 1,234.5\n", "kv") == {"loss": 1234.5}
    assert parse_metrics("METRIC tok_s=12,345 loss=2\n", "metric-line") == {"tok_s": 12345,
                                                                            "loss": 2}
    line = "step 100 | throughput: 12,345 tok/s | loss 2.1, acc 1,000, lr 0,5"
    found = {c.name: c for c in candidates(line + "\n")}
    assert found["throughput"].value == 12345 and found["acc"].value == 1000
    assert found["loss"].value == 2.1  # a comma that ends a clause still ends it
    assert "lr" not in found  # `0,5` is no single figure: not read as 0
    pattern = found["throughput"].pattern or ""
    assert parse_metrics(line, "regex", {"throughput": pattern}) == {"throughput": 12345}


def test_init_from_log_and_checks_suggestion_read_thousands_separators(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {
        "train.py": "X = 3  # knob: int(1, 9)\n"
                    "print('step 100 | throughput: 12,345 tok/s | loss 1,234.5')\n"})
    (tmp_path / "run.log").write_text("step 100 | throughput: 12,345 tok/s | loss 1,234.5\n")
    init = run_cli(repo, "init", "--from-log", str(tmp_path / "run.log"), "--metric",
                   "throughput", "--direction", "maximize", "--command", "{python} train.py",
                   "--scope", "train.py", "--commit")
    assert init.returncode == 0, init.stdout + init.stderr
    assert "objective throughput = 12345, read by the regex format" in flat(init.stdout)
    check = run_cli(repo, "check")
    assert check.returncode == 0, check.stdout + check.stderr
    assert "│ throughput │ 12345 │ objective │" in flat(check.stdout)

    # The objective renamed to one the output does not print: check suggests the lines that
    # read `loss`, and those lines, copied into the config, read 1234.5 (not 1).
    config = (repo / "autoresearch.toml").read_text()
    start = config.index("[metric]")
    end = config.index("\n[", start + 1)
    (repo / "autoresearch.toml").write_text(
        config[:start] + '[metric]\nname = "los"\ndirection = "minimize"\n' + config[end:])
    git(repo, "commit", "-qam", "a metric the output does not print")
    check = run_cli(repo, "check")
    assert check.returncode == 1, check.stdout + check.stderr
    lines = check.stdout.splitlines()
    at = next(i for i, line in enumerate(lines) if "to make loss the objective" in line)
    suggested = [line.strip() for line in lines[at + 1:at + 4]]
    assert suggested[0] == 'name = "loss"' and suggested[2].startswith("patterns = "), suggested
    (repo / "autoresearch.toml").write_text(
        config[:start] + "[metric]\n" + "\n".join(suggested) + '\ndirection = "minimize"\n'
        + config[end:])
    git(repo, "commit", "-qam", "the suggested metric")
    check = run_cli(repo, "check")
    assert check.returncode == 0, check.stdout + check.stderr
    assert "│ loss │ 1234.5 │ objective │" in flat(check.stdout)


def test_a_guard_on_a_metric_printed_as_nan_is_one_problem_and_stops_run(tmp_path: Path) -> None:
    score = SCORE_PY.replace("print(f\"mem_mb: {getattr(target, 'MEM', 100)}\")",
                             'print("mem_mb: nan")')
    assert score != SCORE_PY
    guard = '\n[[guards]]\nmetric = "mem_mb"\nmax_increase = "10%"\n'
    repo = repo_with(tmp_path, CONFIG + guard + TUNE, {"score.py": score})
    check = run_cli(repo, "check")
    assert check.returncode == 1, check.stdout + check.stderr
    assert ("✗ guards[0]: metric 'mem_mb' is nan in the output — the unchanged code must print "
            "a finite value") in flat(check.stdout)
    assert crosses_match_the_count(check) == 1  # mem_mb is also recorded: said once
    run = run_cli(repo, "run", "--iterations", "4")
    assert run.returncode == 5, run.stdout + run.stderr
    assert experiments(repo) == [("baseline", "crash")]


def test_a_metric_printed_several_times_is_said_with_the_one_used(tmp_path: Path) -> None:
    repo = repo_with(tmp_path, CONFIG, {"score.py": "print('score: 9.0')\nprint('score: 5.0')\n"})
    result = run_cli(repo, "check")
    said = flat(result.stdout)
    assert "score was printed 2 times (9, 5): the last is the one used" in said
    once = repo_with(tmp_path / "once", CONFIG)
    assert "was printed" not in flat(run_cli(once, "check").stdout)


def test_a_guard_added_after_the_baseline_is_named_when_the_session_resumes(
        tmp_path: Path) -> None:
    repo = repo_with(tmp_path, CONFIG + TUNE)
    assert run_cli(repo, "run", "--iterations", "2").returncode == 0
    config = repo / "autoresearch.toml"
    config.write_text(config.read_text() + '\n[[guards]]\nmetric = "memory"\nmax = 10\n'
                      '\n[[guards]]\nmetric = "mem_mb"\nmax = 1000\n')
    git(repo, "commit", "-qam", "two guards, one on a metric the runs recorded")
    resumed = run_cli(repo, "run", "--iterations", "3")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    said = flat(resumed.stdout)
    assert "guards[0] bounds 'memory', which the incumbent's runs did not record" in said
    assert "guards[1]" not in said  # mem_mb is recorded (record = ["mem_mb"])


def test_the_default_tag_is_the_date_as_the_readme_writes_it() -> None:
    """README: the first session's tag is today's date (`nov23`, `mar5`: the day not padded)."""
    import time

    from autoresearch.state import default_tag

    assert default_tag(time.strptime("2026-03-05", "%Y-%m-%d")) == "mar5"
    assert default_tag(time.strptime("2026-11-23", "%Y-%m-%d")) == "nov23"


def test_check_names_the_session_run_will_start(tmp_path: Path) -> None:
    """README: "`check` says which `run` will do", the new session's tag included."""
    from autoresearch.state import default_tag

    repo = repo_with(tmp_path, CONFIG, {"target.py": "X = 3.0  # knob: float(0, 10)\n"})
    check = flat(run_cli(repo, "check").stdout)
    assert f"`autoresearch run` will start session {default_tag()} (today's date" in check
    run = run_cli(repo, "run", "--iterations", "1")
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"session {default_tag()} on branch autoresearch/{default_tag()}" in flat(run.stdout)


def test_check_says_the_worktrees_do_not_hold_the_submodules(tmp_path: Path) -> None:
    helper = make_repo(tmp_path / "helper", {"helper.py": "OFFSET = 0.0\n"})
    repo = make_repo(tmp_path / "repo", {"target.py": "X = 3.0\n", "score.py": SCORE_PY,
                                         "autoresearch.toml": CONFIG})
    git(repo, "-c", "protocol.file.allow=always", "submodule", "-q", "add", str(helper), "lib")
    git(repo, "commit", "-qam", "a submodule")
    said = " ".join(run_cli(repo, "check").stdout.split())
    assert "the repository has submodules (lib)" in said, said
    assert "git submodule update --init" in said


def test_a_crash_is_not_buried_under_the_metrics_it_could_not_print(tmp_path: Path) -> None:
    # Every recorded metric the crashed run did not print was one more ✗ ("metric 'mem_mb' …
    # is not in the output — print it, or fix the name"): five of them, under the one that
    # mattered, in a tester's GPT project.
    repo = repo_with(tmp_path, CONFIG, {"target.py": "X = 3.0  # knob: float(0, 10)\nCRASH = True\n"})
    check = run_cli(repo, "check")
    assert check.returncode == 1, check.stdout + check.stderr
    assert crosses_match_the_count(check) == 1
    out = flat(check.stdout)
    assert "verify command crash: exit code 3" in out and "boom" in out
    assert "what is missing above is the failed run's doing: fix that first" in out
    assert "is not in the output" not in out
