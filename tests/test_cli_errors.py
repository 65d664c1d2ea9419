"""Bad input gets a clear error (what, where, how to fix) and a non-zero exit; init and check."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.conftest import CONFIG, SCORE_PY, cli_env, git, make_repo, run_cli


def broken(tmp_path: Path, config: str) -> Path:
    return make_repo(tmp_path / "repo", {"target.py": "X = 3.0\n", "score.py": SCORE_PY,
                                         "autoresearch.toml": config})


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (CONFIG.replace('direction = "minimize"', 'direction = "down"'), "metric.direction"),
        (CONFIG + "\n[decison]\nrepeats = 3\n", "decison"),
        (CONFIG.replace("budget_seconds = 5", "budget_seconds = -1"), "verify.budget_seconds"),
        (CONFIG.replace("scope = [\"target.py\"]", "scope = []"), "scope"),
        (CONFIG + '\n[[guards]]\nmetric = "mem_mb"\n', "has no bound"),
        (CONFIG + '\n[knobs]\n"target.py:X" = "log(0, 1)"\n', "knob"),
        (CONFIG.replace('name = "score"', 'name = "score"\nformat = "regex"'), "pattern"),
        (CONFIG.replace('name = "score"', 'name = "score"\nformat = "regex"\n'
                        "patterns = { score = 'score: [0-9.]+' }"), "capture group"),
        (CONFIG + "min_effect = -0.5\n", "decision.min_effect"),
        (CONFIG.replace("[verify]", "[verify\n"), "not valid TOML"),
        # Numbers that are not numbers: a guard bound of nan passed every candidate, a
        # min_effect of nan discarded them all, max_log_mb = inf crashed every run.
        (CONFIG + '\n[[guards]]\nmetric = "mem_mb"\nmax = nan\n', "guards[0].max"),
        (CONFIG + "min_effect = nan\n", "is not a finite number"),
        (CONFIG + '\n[[guards]]\nmetric = "mem_mb"\nmax_increase = "nan"\n', "not a finite"),
        (CONFIG.replace("budget_seconds = 5", "budget_seconds = 5\nmax_log_mb = inf"),
         "verify.max_log_mb"),
        # What no process can be given: a traceback at the spawn, and a junk experiment, before.
        (CONFIG.replace("budget_seconds = 5", 'budget_seconds = 5\nenv = { "CUDA=1" = "x" }'),
         "not a name an environment variable can have"),
        (CONFIG.replace("budget_seconds = 5", 'budget_seconds = 5\nenv = { A = "x\\u0000y" }'),
         "contains a NUL character"),
        # A value of another type is refused, not converted: `true` was a budget of 1 s, "5"
        # was 5, "false" was false (tests/test_config_types.py has every field).
        (CONFIG.replace("budget_seconds = 5", "budget_seconds = true"),
         "verify.budget_seconds: expected a number, got true (a boolean)"),
        (CONFIG.replace("budget_seconds = 5", 'budget_seconds = "5"'),
         "write budget_seconds = 5 under [verify], without quotes"),
        (CONFIG.replace("deterministic = true", 'deterministic = "false"'),
         'decision.deterministic: expected true or false, got "false" (a string)'),
        (CONFIG.replace('scope = ["target.py"]', 'scope = ["target.py", 1]'),
         "scope[1]: expected a string, got 1"),
    ],
)
def test_invalid_config_is_refused_with_where_and_fix(tmp_path: Path, config: str,
                                                      expected: str) -> None:
    repo = broken(tmp_path, config)
    result = run_cli(repo, "run", "--iterations", "1")
    assert result.returncode == 2, result.stdout + result.stderr
    assert expected in result.stderr
    assert "where:" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (repo / ".autoresearch" / "ledger.db").exists()


@pytest.mark.parametrize(
    ("proposer", "message", "hint"),
    [
        ('name = "tune"\nsaampler = "random"', "unknown [proposer] option 'saampler' for the tune",
         "did you mean 'sampler'?"),
        ('name = "auto"\ntemprature = 0.2', "unknown [proposer] option 'temprature'",
         "did you mean 'temperature'?"),
        ('name = "llm"\nsampler = "random"', "unknown [proposer] option 'sampler' for the llm",
         "the llm proposer's options are: api_key_env, base_url"),
        ('name = "agent"\nagent = "claude"\nagnet_timeout_seconds = 60',
         "unknown [proposer] option 'agnet_timeout_seconds'", "did you mean 'agent_timeout_seconds'?"),
    ],
)
def test_a_misspelt_proposer_option_is_refused(tmp_path: Path, proposer: str, message: str,
                                               hint: str) -> None:
    config = CONFIG + '\n[knobs]\n"target.py:X" = "float(0, 10)"\n\n[proposer]\n' + proposer + "\n"
    repo = broken(tmp_path, config)
    for command in ("check", "run"):
        args = ("--iterations", "1") if command == "run" else ()
        result = run_cli(repo, command, *args)
        assert result.returncode == 2, result.stdout + result.stderr
        err = " ".join((result.stdout + result.stderr).split())  # check reports on stdout
        assert message in err and hint in err and "autoresearch.toml → proposer." in err
        assert "Traceback" not in result.stderr
    assert not (repo / ".autoresearch" / "ledger.db").exists()


def test_auto_accepts_the_options_of_both_proposers_it_may_pick(tmp_path: Path) -> None:
    # One file for a laptop without a key (tune) and a machine with one (llm).
    config = (CONFIG + '\n[knobs]\n"target.py:X" = "float(0, 10)"\n\n[proposer]\nname = "auto"\n'
              'seed = 1\nmodel = "claude-sonnet-5-5"\nmax_tokens = 4000\n')
    repo = broken(tmp_path, config)
    result = run_cli(repo, "check")
    assert result.returncode == 0, result.stdout + result.stderr


def test_toml_syntax_error_names_the_line(tmp_path: Path) -> None:
    repo = broken(tmp_path, CONFIG.replace("[verify]", "[verify\n"))
    result = run_cli(repo, "check")
    assert result.returncode == 2
    assert "line" in result.stderr


def test_protected_glob_inside_scope_is_a_config_error(tmp_path: Path) -> None:
    repo = broken(tmp_path, CONFIG.replace('scope = ["target.py"]', 'scope = ["*.py"]'))
    for command in ("run", "check"):
        result = run_cli(repo, command)
        assert result.returncode == 2, result.stdout + result.stderr
        assert "protected 'score.py' is inside the scope '*.py'" in result.stderr
        assert "autoresearch.toml → scope / protected" in result.stderr  # the file and field
        assert "fix:" in result.stderr
    assert not (repo / ".autoresearch" / "ledger.db").exists()


def test_protected_file_inside_scope_is_a_config_error(tmp_path: Path) -> None:
    # The globs don't obviously overlap; only the repository's files show that lib/secret.py is
    # in both, and that is the same config error, with the file and the field named.
    config = CONFIG.replace('scope = ["target.py"]', 'scope = ["target.py", "**/*.txt"]').replace(
        'protected = ["score.py"]', 'protected = ["score.py", "lib/*"]')
    repo = make_repo(tmp_path / "repo", {"target.py": "X = 3.0\n", "score.py": SCORE_PY,
                                         "lib/secret.txt": "k\n", "autoresearch.toml": config})
    result = run_cli(repo, "run", "--iterations", "1")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "protected files are inside the scope: lib/secret.txt" in result.stderr
    assert f"{repo / 'autoresearch.toml'} → scope / protected" in result.stderr
    assert not (repo / ".autoresearch" / "ledger.db").exists()
    check = run_cli(repo, "check")
    assert check.returncode == 2, check.stdout + check.stderr
    assert "lib/secret.txt" in flat(check.stdout)


def flat(text: str) -> str:
    """Output with rich's line wrapping undone."""
    return " ".join(text.split())


def tune_config(knobs: str) -> str:
    return CONFIG + f'\n[proposer]\nname = "tune"\n\n[knobs]\n{knobs}'


def experiment_rows(repo: Path) -> list[tuple[object, ...]]:
    db = repo / ".autoresearch" / "ledger.db"
    if not db.exists():
        return []
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT id, status FROM experiments").fetchall()


def session_rows(repo: Path) -> list[tuple[object, ...]]:
    db = repo / ".autoresearch" / "ledger.db"
    if not db.exists():
        return []
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT tag, status FROM sessions").fetchall()


def test_check_reports_a_declared_knob_whose_line_is_missing(tmp_path: Path) -> None:
    repo = broken(tmp_path, tune_config('"target.py:Y" = "float(0, 10)"\n'))
    result = run_cli(repo, "check")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "no line assigning a literal to Y in target.py" in flat(result.stdout)
    assert "Y = 0.01" in flat(result.stdout)  # the fix shows the line it expects
    assert "1 problem(s) found" in result.stdout
    # `run` refuses the same way before the baseline: nothing is recorded.
    run = run_cli(repo, "run", "--tag", "t", "--iterations", "3")
    assert run.returncode == 2, run.stdout + run.stderr
    assert "no line assigning a literal to Y" in run.stderr
    assert experiment_rows(repo) == [] and session_rows(repo) == []


def test_check_lists_the_knobs_it_found(tmp_path: Path) -> None:
    repo = broken(tmp_path, tune_config('"target.py:X" = "float(0, 10)"\n'))
    result = run_cli(repo, "check")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 knob(s): target.py:X" in flat(result.stdout)


def test_plain_init_then_run_fails_fast_on_no_knobs(tmp_path: Path) -> None:
    # The audit's endless loop: after a plain `init`, tune found no knobs and rejected every
    # experiment (662 in 6 s). Now `check` says so and `run` stops before the baseline.
    repo = make_repo(tmp_path / "repo", {"evaluate.py": "print('score: 1.0')\n",
                                         "model.py": "X = 1\n"})
    assert run_cli(repo, "init", "--commit").returncode == 0  # scope model.py, evaluate.py protected
    started = time.monotonic()
    check = run_cli(repo, "check")
    checked_in = time.monotonic() - started
    assert check.returncode == 2, check.stdout + check.stderr
    assert "found no knobs to tune" in flat(check.stdout) and "# knob:" in check.stdout
    started = time.monotonic()
    result = run_cli(repo, "run", "--iterations", "50")
    # 30 s, or a few times what `check` (which finds the same) took: on a loaded machine one CLI
    # call alone took 8-12 s.
    assert time.monotonic() - started < max(30, 4 * checked_in)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "found no knobs to tune" in result.stderr
    assert "where: autoresearch.toml → knobs" in result.stderr
    assert experiment_rows(repo) == [] and session_rows(repo) == []
    assert "Traceback" not in result.stderr


def test_a_failed_start_leaves_no_session_behind(tmp_path: Path) -> None:
    repo = broken(tmp_path, CONFIG + '\n[proposer]\nname = "nope"\n')
    result = run_cli(repo, "run", "--iterations", "1")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "unknown proposer 'nope'" in result.stderr
    assert session_rows(repo) == []
    assert git(repo, "branch", "--list", "autoresearch/*") == ""
    status = run_cli(repo, "status")
    assert status.returncode == 1 and "autoresearch run" in status.stderr
    # Fixed, the same command starts a session under the default tag.
    (repo / "autoresearch.toml").write_text(tune_config('"target.py:X" = "float(0, 10)"\n'))
    git(repo, "commit", "-qam", "fix the proposer")
    again = run_cli(repo, "run", "--iterations", "2")
    assert again.returncode == 0, again.stdout + again.stderr
    assert [s for _, s in session_rows(repo)] == ["finished"]


def test_preconditions(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "autoresearch.toml").write_text(CONFIG)
    result = run_cli(plain, "run")
    assert result.returncode == 3 and "not inside a git repository" in result.stderr

    repo = broken(tmp_path, CONFIG)
    (repo / "target.py").write_text("X = 4.0\n")
    result = run_cli(repo, "run")
    assert result.returncode == 3 and "uncommitted changes" in result.stderr
    assert "git stash" in result.stderr
    git(repo, "checkout", "-q", "target.py")

    git(repo, "checkout", "-q", "--detach")
    result = run_cli(repo, "run")
    assert result.returncode == 3 and "detached" in result.stderr
    git(repo, "checkout", "-q", "main")

    (repo / "autoresearch.toml").write_text(CONFIG.replace('["target.py"]', '["nothing/*.py"]'))
    git(repo, "commit", "-qam", "bad scope")
    result = run_cli(repo, "run")
    assert result.returncode == 3 and "matches no committed file" in result.stderr


def test_a_refused_run_leaves_nothing_git_would_commit(tmp_path: Path) -> None:
    """README, "State in your repository (git-ignored)": even a `run` refused by a precondition
    has measured the thread count it pins for the session; that file is git-ignored too."""
    repo = make_repo(tmp_path / "repo", {"score.py": SCORE_PY, "autoresearch.toml": CONFIG})
    result = run_cli(repo, "run")
    assert result.returncode == 3 and "matches no committed file" in result.stderr
    assert (repo / ".autoresearch" / "sessions").is_dir()  # the pinned thread count was written
    assert git(repo, "status", "--porcelain", "--untracked-files=all").strip() == ""


def test_missing_config_points_to_init(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"a.py": "x = 1\n"})
    result = run_cli(repo, "run")
    assert result.returncode == 2
    assert "autoresearch init" in result.stderr


def test_init_without_a_tty_uses_flags_and_check_dry_runs(tmp_path: Path) -> None:
    # A marked knob, so the default offline proposer has something to tune.
    repo = make_repo(tmp_path / "repo", {"target.py": "X = 3.0  # knob: float(0, 10)\n",
                                         "score.py": SCORE_PY})
    result = run_cli(repo, "init", "--metric", "score", "--command", "{python} score.py",
                     "--scope", "target.py", "--protected", "score.py", "--budget", "5",
                     "--commit")
    assert result.returncode == 0, result.stderr
    config = (repo / "autoresearch.toml").read_text()
    assert 'name = "score"' in config and 'scope = ["target.py"]' in config
    assert "Improve `score`" in (repo / "program.md").read_text()
    assert git(repo, "status", "--porcelain") == ""
    again = run_cli(repo, "init")
    assert again.returncode == 2 and "--force" in again.stderr

    check = run_cli(repo, "check")
    assert check.returncode == 0, check.stdout + check.stderr
    assert "score" in check.stdout and "16" in check.stdout
    assert "ready" in check.stdout


def test_init_refuses_a_bad_flag_before_writing_and_regex_gets_a_pattern(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"target.py": "X = 3.0  # knob: float(0, 10)\n",
                                         "score.py": "import target\nprint(f'eval score={target.X}')\n"})
    bad = run_cli(repo, "init", "--budget", "-3")
    assert bad.returncode == 2 and "where: --budget" in bad.stderr
    assert not (repo / "autoresearch.toml").exists() and not (repo / "program.md").exists()
    # --format regex has no flag for the pattern: init writes one for the objective.
    result = run_cli(repo, "init", "--format", "regex", "--command", "{python} score.py",
                     "--scope", "target.py", "--protected", "score.py", "--budget", "5",
                     "--commit")
    assert result.returncode == 0, result.stderr
    check = run_cli(repo, "check")
    assert check.returncode == 0, check.stdout + check.stderr
    assert "3" in check.stdout and "ready" in check.stdout
    assert "score.py can never change" in (repo / "program.md").read_text()


def test_plain_init_claims_no_protection_the_config_lacks(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"train.py": "LR = 0.1\n"})
    assert run_cli(repo, "init", "--command", "{python} train.py", "--scope", "train.py",
                   ).returncode == 0
    assert 'protected = []' in (repo / "autoresearch.toml").read_text()
    assert "can never change" not in (repo / "program.md").read_text()
    # The default command runs evaluate.py: where there is none, init asks for a command rather
    # than write one that runs (and protects) a file that does not exist.
    refused = run_cli(repo, "init", "--force")
    assert refused.returncode == 2 and "where: --command" in refused.stderr, refused.stderr
    assert 'protected = []' in (repo / "autoresearch.toml").read_text()  # left as it was
    # Where there is one, init protects it: program.md says so, truly.
    (repo / "evaluate.py").write_text("print('score: 1')\n")
    assert run_cli(repo, "init", "--force").returncode == 0
    assert 'protected = ["evaluate.py"]' in (repo / "autoresearch.toml").read_text()
    assert "evaluate.py can never change" in (repo / "program.md").read_text()


def test_check_reports_a_missing_metric(tmp_path: Path) -> None:
    knob = '\n[knobs]\n"target.py:X" = "float(0, 10)"\n'  # so the metric is the only problem
    repo = broken(tmp_path, CONFIG.replace('name = "score"', 'name = "loss"') + knob)
    result = run_cli(repo, "check")
    assert result.returncode == 1, result.stdout
    assert "no loss in the output" in result.stdout
    assert "loss: " in result.stdout  # shows the expected format


def test_status_and_results_without_a_session(tmp_path: Path) -> None:
    repo = broken(tmp_path, CONFIG)
    result = run_cli(repo, "status")
    assert result.returncode == 1
    assert "autoresearch run" in result.stderr


def test_status_after_a_session(toy_repo: Path) -> None:
    config = (toy_repo / "autoresearch.toml").read_text() + textwrap.dedent(
        """
        [proposer]
        name = "tune"
        [knobs]
        "target.py:X" = "float(0, 10)"
        """
    )
    (toy_repo / "autoresearch.toml").write_text(config)
    git(toy_repo, "commit", "-qam", "tune")
    result = run_cli(toy_repo, "run", "--iterations", "4", "--tag", "s1")
    assert result.returncode == 0, result.stdout + result.stderr
    status = run_cli(toy_repo, "status")
    assert status.returncode == 0
    assert "s1" in status.stdout and "baseline" in status.stdout
    assert "experiments" in status.stdout


def test_until_stops_before_an_experiment_that_would_overrun(toy_repo: Path) -> None:
    from tests.conftest import use_script

    use_script(toy_repo, [{"hypothesis": f"x{i}", "edits": {"target.py": f"X = {i}\nSLEEP = 1\n"}}
                          for i in range(20)])
    result = run_cli(toy_repo, "run", "--tag", "t", "--until", "4s")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "time limit" in result.stdout
    bad = run_cli(toy_repo, "run", "--tag", "t", "--until", "soon")
    # A bad option value is exit 2, as README's exit codes say (and as click's own, `-n 0`).
    assert bad.returncode == 2 and "8h, 90m" in bad.stderr
    assert run_cli(toy_repo, "run", "--tag", "t", "-n", "0").returncode == 2


def test_an_until_of_zero_or_nothing_is_refused_before_a_session_is_made(toy_repo: Path) -> None:
    for value, said in (("0s", "leaves no time"), ("0", "leaves no time"),
                        ("", "cannot read the duration")):
        bad = run_cli(toy_repo, "run", "--tag", "z", "--until", value)
        assert bad.returncode == 2, (value, bad.stdout + bad.stderr)
        assert said in " ".join(bad.stderr.split()), (value, bad.stderr)
    # Nothing was started: no empty session to become the one `status` shows.
    assert not (toy_repo / ".autoresearch" / "ledger.db").exists()
    assert git(toy_repo, "branch", "--list", "autoresearch/z") == ""


def test_a_config_saved_with_a_byte_order_mark_is_read_and_one_not_utf8_says_how_to_fix(
        tmp_path: Path) -> None:
    repo = broken(tmp_path, CONFIG)
    config = repo / "autoresearch.toml"
    config.write_bytes(b"\xef\xbb\xbf" + config.read_bytes())  # what some editors write first
    git(repo, "commit", "-qam", "saved with a BOM")
    checked = run_cli(repo, "check")
    assert "autoresearch.toml is valid" in checked.stdout, checked.stdout + checked.stderr
    config.write_bytes(config.read_bytes().replace(b"score", b"sc\xffore", 1))
    result = run_cli(repo, "run", "--iterations", "1")
    assert result.returncode == 2 and "is not UTF-8 text (byte" in result.stderr, result.stderr
    assert "fix:" in result.stderr and "Traceback" not in result.stderr


def test_check_says_an_evaluation_input_is_missing_as_run_would(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-dataset"
    repo = broken(tmp_path, CONFIG.replace("budget_seconds = 5",
                                           f'budget_seconds = 5\ninputs = ["{missing}"]'))
    checked = run_cli(repo, "check")
    assert checked.returncode != 0, checked.stdout
    assert f"the evaluation input {missing} does not exist" in " ".join(checked.stdout.split())
    assert "ready:" not in checked.stdout


def test_a_long_path_is_printed_whole_when_the_output_is_not_a_terminal(tmp_path: Path) -> None:
    # Written to a pipe or a log, rich wrapped at 80 columns and broke such a path mid-word: a
    # path copied from a night's log carried a line break.
    missing = tmp_path / ("a-dataset-directory-with-a-long-name-" * 3) / "and-a-file-in-it.bin"
    repo = broken(tmp_path, CONFIG.replace("budget_seconds = 5",
                                           f'budget_seconds = 5\ninputs = ["{missing}"]'))
    env = {k: v for k, v in cli_env().items() if k not in ("COLUMNS", "LINES")}
    for command in ("check", "run"):
        result = subprocess.run([sys.executable, "-m", "autoresearch", command, "--repo", str(repo)],
                                cwd=repo, env=env, capture_output=True, text=True, timeout=300,
                                stdin=subprocess.DEVNULL)
        lines = (result.stdout + result.stderr).splitlines()
        assert result.returncode != 0, lines
        assert any(str(missing) in line for line in lines), lines


def test_a_metric_lost_in_a_cut_log_is_said_to_be_lost_there_not_missing(tmp_path: Path) -> None:
    # 300 KB of one unbroken line, the score, 300 KB more, under a 0.1 MB log cap: the score is
    # in the part cut from the middle. It was "exit 0 but no score in the output", blaming the
    # script, and check offered the cut's own marker line as a metric named "autoresearch".
    noisy = ("import sys\nsys.stdout.write('x' * 300_000)\nprint('\\nscore: 1.5')\n"
             "sys.stdout.write('x' * 300_000)\n")
    repo = make_repo(tmp_path / "repo", {
        "target.py": "X = 3.0  # knob: float(0, 10)\n", "score.py": noisy,
        "autoresearch.toml": CONFIG.replace("budget_seconds = 5",
                                            "budget_seconds = 5\nmax_log_mb = 0.1")})
    lost = ("exit 0 but no score in the output (kv format); the log was cut at [verify] "
            "max_log_mb = 0.1 and ")
    checked = run_cli(repo, "check")
    said = " ".join(checked.stdout.split())
    assert checked.returncode != 0 and lost in said, said
    assert "print the metric near the end of the output, or raise max_log_mb" in said
    assert "autoresearch" not in said.split("kv format: expected lines like")[1], said
    result = run_cli(repo, "run", "--iterations", "1")
    assert result.returncode == 5 and lost in " ".join(result.stdout.split()), result.stdout


def test_knob_markers_in_a_file_that_is_not_utf8_are_named_with_the_fix(tmp_path: Path) -> None:
    # A Latin-1 source file's markers were passed over and the message said no in-scope file
    # had one.
    repo = broken(tmp_path, CONFIG)
    (repo / "target.py").write_bytes("# réglage\nX = 3.0  # knob: float(0, 10)\n".encode("latin-1"))
    git(repo, "commit", "-qam", "a Latin-1 target")
    for command in ("check", "run"):
        result = run_cli(repo, command)
        said = " ".join((result.stdout + result.stderr).split())
        assert result.returncode != 0, said
        assert ("target.py has `# knob:` markers but is not UTF-8 text, so tune can neither read "
                "nor rewrite its lines") in said, said
        assert "save target.py as UTF-8" in said and "no in-scope file" not in said


def test_a_ray_address_without_the_ray_executor_is_refused(tmp_path: Path) -> None:
    # It was ignored: the session ran on this machine while the user thought of a cluster.
    repo = make_repo(tmp_path / "repo", {"target.py": "X = 3.0  # knob: float(0, 10)\n",
                                         "score.py": SCORE_PY, "autoresearch.toml": CONFIG})
    for command in ("run", "check", "report", "finalize"):
        result = run_cli(repo, command, "--ray-address", "10.1.2.3:6379")
        said = " ".join((result.stdout + result.stderr).split())
        assert result.returncode == 2, said
        assert "--ray-address names a Ray cluster, but the runs would happen on 'local'" in said
        assert "add --executor ray" in said and "Traceback" not in said
    assert not (repo / ".autoresearch" / "ledger.db").exists()
