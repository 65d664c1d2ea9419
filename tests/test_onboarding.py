"""The first half hour on a project: init fits real output, check and run say what is wrong."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from autoresearch.config import parse_config
from autoresearch.errors import ConfigError
from autoresearch.metric_discovery import candidates, default_pattern, source_line
from autoresearch.metrics import parse_metrics
from tests.conftest import CONFIG, SCORE_PY, git, make_repo, run_cli

NANOGPT_LOG = textwrap.dedent(
    """
    tokens per iteration will be: 16,384
    found vocab_size = 65 (inside data/shakespeare_char/meta.pkl)
    step 0: train loss 4.2874, val loss 4.2823
    iter 0: loss 4.2654, time 12345.67ms, mfu -100.00%
    iter 10: loss 3.2402, time 110.42ms, mfu 3.36%
    step 200: train loss 2.50, val loss 2.52
    iter 200: loss 2.4997, time 109.66ms, mfu 3.38%
    """
)


def flat(text: str) -> str:
    return " ".join(text.split())


# --- reading numbers from output nobody formatted for us -----------------------------------------


def test_candidates_list_the_last_numbers_with_a_pattern_that_reads_them_back() -> None:
    found = {c.name: c for c in candidates(NANOGPT_LOG)}
    # Most recent first: the last line's numbers, then the eval line's.
    assert list(found)[:3] == ["mfu", "time", "loss"]
    val = found["val_loss"]
    assert (val.label, val.value, val.format) == ("val loss", 2.52, "regex")
    assert val.line == "step 200: train loss 2.50, val loss 2.52"
    assert parse_metrics(NANOGPT_LOG, "regex", {"val_loss": val.pattern or ""}) == {"val_loss": 2.52}
    assert found["train_loss"].value == 2.50 and found["step"].value == 200
    assert found["loss"].value == 2.4997  # the last `loss`, not the one in `train loss`


@pytest.mark.parametrize(
    ("text", "name", "value", "fmt"),
    [
        ("val_bpb: 0.9979\ntraining_seconds: 60.1\n", "val_bpb", 0.9979, "kv"),
        ("METRIC acc=0.91 loss=0.3\n", "acc", 0.91, "metric-line"),
        ('{"eval": {"loss": 1.5}, "step": 3}\n', "eval.loss", 1.5, "json"),
        ("Epoch 3/10 - loss: 0.1234 - accuracy: 0.9500\n", "accuracy", 0.95, "regex"),
        ("{'loss': 2.3, 'learning_rate': 0.001, 'epoch': 1.0}\n", "learning_rate", 0.001, "regex"),
        ("eval | bleu 27.4 | chrf 55.1\n", "bleu", 27.4, "regex"),
    ],
)
def test_candidates_take_the_format_the_line_has(text: str, name: str, value: float,
                                                 fmt: str) -> None:
    found = {c.name: c for c in candidates(text)}
    assert found[name].value == value and found[name].format == fmt
    cand = found[name]
    patterns = {name: cand.pattern} if cand.pattern else None
    assert parse_metrics(text, cand.format, patterns)[name] == value


def test_a_diverged_run_reads_as_nan_not_as_an_older_value() -> None:
    text = "step 100: val loss 2.52\nstep 200: val loss nan\n"
    pattern = default_pattern("val_loss")
    value = parse_metrics(text, "regex", {"val_loss": pattern})["val_loss"]
    assert value != value  # nan
    assert source_line(text, "regex", "val_loss", pattern) == "step 200: val loss nan"


@pytest.mark.parametrize("line", ["val_loss: 2.5", "val_loss=2.5", "val loss 2.5",
                                  "val-loss 2.5", "step 3 | val loss: 2.5 |"])
def test_the_default_regex_matches_how_people_print_a_name(line: str) -> None:
    assert parse_metrics(line, "regex", {"val_loss": default_pattern("val_loss")}) == {"val_loss": 2.5}


# --- init ------------------------------------------------------------------------------------


def log_repo(tmp_path: Path) -> Path:
    repo = make_repo(tmp_path / "repo", {"train.py": "LR = 0.1  # knob: log(1e-3, 1)\n"})
    (tmp_path / "run.log").write_text(NANOGPT_LOG)
    return repo


def test_init_from_log_needs_a_choice_off_a_terminal(tmp_path: Path) -> None:
    repo = log_repo(tmp_path)
    result = run_cli(repo, "init", "--from-log", str(tmp_path / "run.log"))
    assert result.returncode == 2, result.stdout + result.stderr
    err = flat(result.stderr)
    assert "which of the numbers" in err and "val_loss = 2.52" in err
    assert "add --metric NAME, e.g. --metric val_loss" in err
    assert "val_loss" in result.stdout  # the table of what it found
    assert not (repo / "autoresearch.toml").exists()
    wrong = run_cli(repo, "init", "--from-log", str(tmp_path / "run.log"), "--metric", "bpb")
    assert wrong.returncode == 2 and "printed no number called 'bpb'" in flat(wrong.stderr)


def test_init_from_log_writes_a_config_that_reads_the_log(tmp_path: Path) -> None:
    repo = log_repo(tmp_path)
    result = run_cli(repo, "init", "--from-log", str(tmp_path / "run.log"), "--metric", "val loss",
                     "--command", "{python} train.py", "--scope", "train.py")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "objective val_loss = 2.52" in flat(result.stdout)
    config = (repo / "autoresearch.toml").read_text()
    assert 'name = "val_loss"' in config and 'format = "regex"' in config
    assert 'direction = "minimize"' in config  # a loss is minimised
    parsed = parse_config(__import__("tomllib").loads(config))
    assert parse_metrics(NANOGPT_LOG, "regex", parsed.metric.patterns) == {"val_loss": 2.52}
    program = (repo / "program.md").read_text()
    assert "`python train.py`" in program and "{python}" not in program


@pytest.mark.parametrize(("name", "direction"), [
    ("tokens_s", "maximize"), ("samples_per_s", "maximize"), ("top1", "maximize"),
    ("mrr", "maximize"), ("ndcg_at_10", "maximize"), ("mfu_percent", "maximize"),
    ("step_time", "minimize"), ("train_steps", None), ("num_params", None)])
def test_directions_are_guessed_from_rates_and_ranking_measures_too(name: str,
                                                                    direction: str | None) -> None:
    from autoresearch.metric_discovery import guess_direction

    assert guess_direction(name) == direction


def test_init_says_when_the_direction_is_a_default_the_name_does_not_decide(
        tmp_path: Path) -> None:
    # A metric init could not classify was written `minimize` without a word, only check's
    # "(minimize)" hinting at it: a throughput would have been minimized all night.
    repo = log_repo(tmp_path)
    result = run_cli(repo, "init", "--metric", "widgets", "--command", "{python} train.py",
                     "--scope", "train.py")
    assert result.returncode == 0, result.stdout + result.stderr
    assert ("direction = 'minimize': a default, since the name 'widgets' says neither way; if "
            'widgets should grow, write direction = "maximize"') in flat(result.stdout)
    given = run_cli(repo, "init", "--metric", "widgets", "--direction", "maximize", "--force",
                    "--command", "{python} train.py", "--scope", "train.py")
    assert given.returncode == 0 and "a default" not in given.stdout, given.stdout


def test_init_keeps_a_program_md_that_is_already_there(tmp_path: Path) -> None:
    # It refused ("program.md already exists"), and --force, the only way on, overwrote the
    # user's research brief with the skeleton.
    repo = log_repo(tmp_path)
    (repo / "program.md").write_text("my brief: try a cosine schedule\n")
    args = ("init", "--metric", "val_loss", "--command", "{python} train.py", "--scope",
            "train.py", "--commit")
    result = run_cli(repo, *args)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "kept your program.md (the research brief)" in flat(result.stdout)
    assert (repo / "program.md").read_text() == "my brief: try a cosine schedule\n"
    assert (repo / "autoresearch.toml").is_file()
    assert git(repo, "show", "--name-only", "--format=", "HEAD") == "autoresearch.toml"
    refused = run_cli(repo, *args[:-1])
    assert refused.returncode != 0 and "autoresearch.toml already exists" in flat(refused.stderr)
    assert (repo / "program.md").read_text().startswith("my brief")
    # --force, asked for, rewrites both: what program.md says of the config stays true
    # (tests/test_cli_errors.py::test_plain_init_claims_no_protection_the_config_lacks).
    again = run_cli(repo, *args[:-1], "--force")
    assert again.returncode == 0 and (repo / "program.md").read_text().startswith("# Research")


def test_init_pattern_flag_and_its_default(tmp_path: Path) -> None:
    repo = log_repo(tmp_path)
    pattern = r"val loss (\d+\.\d+)"
    result = run_cli(repo, "init", "--metric", "val_loss", "--pattern", pattern,
                     "--command", "{python} train.py", "--scope", "train.py")
    assert result.returncode == 0, result.stdout + result.stderr
    parsed = parse_config(__import__("tomllib").loads((repo / "autoresearch.toml").read_text()))
    assert parsed.metric.format == "regex" and parsed.metric.patterns == {"val_loss": pattern}
    # --format regex without --pattern: a default that matches `val loss 2.52` too.
    regex = run_cli(repo, "init", "--force", "--format", "regex", "--metric", "val_loss",
                    "--command", "{python} train.py")
    assert regex.returncode == 0, regex.stdout + regex.stderr
    parsed = parse_config(__import__("tomllib").loads((repo / "autoresearch.toml").read_text()))
    assert parse_metrics(NANOGPT_LOG, "regex", parsed.metric.patterns) == {"val_loss": 2.52}
    bad = run_cli(repo, "init", "--force", "--format", "kv", "--pattern", pattern)
    assert bad.returncode == 2 and "--pattern is for --format regex" in bad.stderr
    broken = run_cli(repo, "init", "--force", "--pattern", "val (loss) (x)")
    assert broken.returncode == 2 and "exactly one capture group" in broken.stderr


# --- check -----------------------------------------------------------------------------------


def test_check_shows_each_value_with_the_line_it_was_read_from(toy_repo: Path) -> None:
    config = CONFIG + '\n[knobs]\n"target.py:X" = "float(0, 10)"\n'
    (toy_repo / "autoresearch.toml").write_text(config)
    git(toy_repo, "commit", "-qam", "knob")
    result = run_cli(toy_repo, "check", env={"COLUMNS": "200"})
    assert result.returncode == 0, result.stdout + result.stderr
    row = next(line for line in result.stdout.splitlines() if line.startswith("│ score"))
    assert "16" in row and "score: 16.0" in row  # value, then the line it came from


def test_check_proposes_the_metric_the_output_did_print(tmp_path: Path) -> None:
    train = "print('step 200: train loss 2.50, val loss 2.52')\nLR = 0.1  # knob: log(1e-3, 1)\n"
    config = textwrap.dedent(
        """
        scope = ["train.py"]
        [verify]
        command = "{python} train.py"
        budget_seconds = 5
        [metric]
        name = "val_loss"
        direction = "minimize"
        """
    )
    repo = make_repo(tmp_path / "repo", {"train.py": train, "autoresearch.toml": config})
    result = run_cli(repo, "check", env={"COLUMNS": "200"})
    assert result.returncode == 1, result.stdout + result.stderr
    out = result.stdout
    assert "kv format: expected lines like `val_loss: 0.99`" in out
    assert "expected: expected" not in out
    assert "to make val_loss the objective, set under [metric] in autoresearch.toml:" in out
    lines = [line.strip() for line in out.splitlines()]
    assert 'format = "regex"' in lines
    patterns = next(line for line in lines if line.startswith("patterns = "))
    # Pasted as printed, the config reads the value.
    fixed = config.replace('direction = "minimize"\n',
                           f'direction = "minimize"\nformat = "regex"\n{patterns}\n')
    (repo / "autoresearch.toml").write_text(fixed)
    git(repo, "commit", "-qam", "read the metric")
    again = run_cli(repo, "check", env={"COLUMNS": "200"})
    assert again.returncode == 0, again.stdout + again.stderr
    assert "step 200: train loss 2.50, val loss 2.52" in again.stdout
    assert (repo / ".autoresearch" / "check.log").read_text().startswith("step 200")
    assert git(repo, "status", "--porcelain") == ""  # the kept log is git-ignored


def test_check_lists_every_knob_and_run_says_how_to_see_them_all(tmp_path: Path) -> None:
    names = [f"KNOB_NUMBER_{i}" for i in range(14)]
    target = "".join(f"{n} = 1.0  # knob: float(0, 10)\n" for n in names) + "X = 3.0\n"
    repo = make_repo(tmp_path / "repo", {"target.py": target, "score.py": SCORE_PY,
                                         "autoresearch.toml": CONFIG + '[proposer]\nname = "tune"\n'})
    check = run_cli(repo, "check")
    assert check.returncode == 0, check.stdout + check.stderr
    for name in names:
        assert f"target.py:{name}" in flat(check.stdout)
    run = run_cli(repo, "run", "--iterations", "1")
    assert run.returncode == 0, run.stdout + run.stderr
    header = flat(run.stdout.split("each run gets")[0])
    assert "14 knob(s): target.py:KNOB_NUMBER_0" in header
    assert "target.py:KNOB_NUMBER_13" not in header
    assert "(`autoresearch check` lists them all)" in header


# --- config errors ---------------------------------------------------------------------------

BASE = {"scope": ["a.py"], "verify": {"command": "true", "budget_seconds": 10},
        "metric": {"name": "m", "direction": "minimize"}}


@pytest.mark.parametrize(
    ("data", "where", "hint"),
    [
        ({**BASE, "verify": {"command": "true", "budget_second": 10}}, "verify.budget_second",
         "did you mean 'budget_seconds'?"),
        ({**BASE, "verify": {**BASE["verify"], "timout_seconds": 10}}, "verify.timout_seconds",
         "did you mean 'timeout_seconds'?"),
        ({**BASE, "decison": {"repeats": 3}}, "decison", "did you mean 'decision'?"),
        ({**BASE, "guards": [{"command": "x", "timout_seconds": 3}]}, "guards[0].timout_seconds",
         "did you mean 'timeout_seconds'?"),
        ({**BASE, "run": {"thread": 2}}, "run.thread", "did you mean 'threads'?"),
        ({**BASE, "metric": {"name": "m", "direction": "minimise"}}, "metric.direction",
         "did you mean 'minimize'?"),
    ],
)
def test_a_misspelt_key_gets_the_nearest_name(data: dict[str, object], where: str,
                                              hint: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config(data)
    assert raised.value.where == f"autoresearch.toml → {where}"
    assert hint in raised.value.what
    assert "add this field" not in raised.value.render()


@pytest.mark.parametrize(
    ("run", "where", "what", "fix"),
    [
        ({"threads": "lots"}, "run.threads", 'expected a whole number or "auto", got "lots"',
         'write threads as a whole number or "auto"'),
        ({"threads": "Auto"}, "run.threads", 'got "Auto"; did you mean "auto"?', 'write "auto"'),
        ({"gpus": "0,1"}, "run.gpus", 'expected "auto" or a list of strings (["a", "b"]), got "0,1"',
         'write gpus as "auto" or a list of strings'),
        ({"gpus": [7]}, "run.gpus", 'got [7]', 'write gpus as "auto" or a list of strings'),
    ],
)
def test_a_value_that_fits_no_form_of_a_key_says_the_forms_once(
        run: dict[str, object], where: str, what: str, fix: str) -> None:
    # `threads: int | "auto"` fails once per form: said once, at the key the user wrote (not at
    # `run.threads.int` / `run.threads.literal['auto']`, which are no keys of the file).
    with pytest.raises(ConfigError) as raised:
        parse_config({**BASE, "run": run})
    assert raised.value.where == f"autoresearch.toml → {where}"
    assert what in raised.value.what and raised.value.what.count(where) == 1
    assert fix in (raised.value.fix or "")


def test_a_misspelt_required_field_through_the_cli(toy_repo: Path) -> None:
    config = (toy_repo / "autoresearch.toml").read_text()
    (toy_repo / "autoresearch.toml").write_text(config.replace("budget_seconds", "budget_second"))
    result = run_cli(toy_repo, "check")
    assert result.returncode == 2, result.stdout + result.stderr
    err = flat(result.stderr)
    assert "verify.budget_second: unknown key; did you mean 'budget_seconds'?" in err
    assert "fix: rename 'budget_second' to 'budget_seconds'" in err


# --- run -------------------------------------------------------------------------------------


def test_a_crashed_baseline_shows_its_log_tail(toy_repo: Path) -> None:
    (toy_repo / "target.py").write_text("X = 3.0\nCRASH = True\n")
    git(toy_repo, "commit", "-qam", "a crashing target")
    config = (toy_repo / "autoresearch.toml").read_text()
    (toy_repo / "autoresearch.toml").write_text(
        config + '\n[proposer]\nname = "tune"\n[knobs]\n"target.py:X" = "float(0, 10)"\n')
    git(toy_repo, "commit", "-qam", "tune")
    result = run_cli(toy_repo, "run", "--iterations", "2", "--tag", "b", env={"COLUMNS": "300"})
    assert result.returncode == 5, result.stdout + result.stderr
    out = flat(result.stdout)
    log = toy_repo / ".autoresearch/sessions/b/logs/b-0001/candidate-0.log"
    assert f"last 1 lines of {log}: boom" in out  # score.py's own words, and where they are


def test_init_from_log_asks_on_a_terminal(tmp_path: Path) -> None:
    import os
    import pty
    import select
    import subprocess
    import sys

    from tests.conftest import cli_env

    repo = log_repo(tmp_path)
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "autoresearch", "init", "--from-log", str(tmp_path / "run.log")],
        stdin=slave, stdout=slave, stderr=slave, cwd=repo, env=cli_env(),
        start_new_session=True)
    os.close(slave)
    # The 6th number listed, the direction's default, a command (the default one's evaluate.py
    # is not there, so there is no default to take), then every other question's default.
    os.write(master, b"6\n\n{python} train.py\n" + b"\n" * 8)
    out = b""
    try:
        while select.select([master], [], [], 60)[0]:
            try:
                data = os.read(master, 4096)
            except OSError:  # the terminal closed: the process is done
                break
            if not data:
                break
            out += data
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    text = out.decode(errors="replace")
    assert proc.returncode == 0, text
    assert "which one is the objective (#) [" in text
    assert "command: " in text and "evaluate.py" not in text  # asked, with no default offered
    assert 'command = "{python} train.py"' in (repo / "autoresearch.toml").read_text()
    chosen = next(c for i, c in enumerate(candidates(NANOGPT_LOG), 1) if i == 6)
    assert f'name = "{chosen.name}"' in (repo / "autoresearch.toml").read_text()
