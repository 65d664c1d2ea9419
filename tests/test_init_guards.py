"""What a new user hit between `init` and `run`: an evaluation left editable, a monorepo's
subdirectory, a JSON-lines log, a template over the project's own files, a session branch
left behind, a verify command in the wrong interpreter or shell, and a bare repository."""

from __future__ import annotations

import shlex
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

from autoresearch.config import ALWAYS_PROTECTED, load_config
from autoresearch.globs import select
from autoresearch.metrics import parse_metrics, printed_values
from autoresearch.proposers.knob_discovery import require_knobs
from autoresearch.state import default_tag
from autoresearch.verify_targets import unguarded_evaluation
from tests.conftest import CONFIG, SCORE_PY, TESTS, git, make_repo, run_cli


def flat(text: str) -> str:
    """Output with rich's line wrapping undone."""
    return " ".join(text.split())


def written_config(repo: Path) -> dict[str, object]:
    return tomllib.loads((repo / "autoresearch.toml").read_text())


EVALUATE_PY = "import model\nprint(f'acc: {model.X}')\n"
MODEL_PY = "X = 0.5  # knob: float(0, 1)\n"
KNOB = '\n[knobs]\n"target.py:X" = "float(0, 10)"\n'


# --- 1. the evaluation is protected by init and watched by check -------------------------------


def test_init_protects_the_evaluation_its_command_runs_and_check_is_quiet(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"evaluate.py": EVALUATE_PY, "model.py": MODEL_PY})
    result = run_cli(repo, "init", "--metric", "acc", "--command", "{python} evaluate.py",
                     "--budget", "2", "--commit")
    assert result.returncode == 0, result.stdout + result.stderr
    config = written_config(repo)
    # The default scope *.py held the evaluation: it is protected, and the scope narrowed.
    assert config["protected"] == ["evaluate.py"] and config["scope"] == ["model.py"]
    out = flat(result.stdout)
    assert "protected evaluate.py: the verify command runs it and its name says it judges" in out
    assert "narrowed the scope '*.py' to model.py: it held evaluate.py" in out
    check = run_cli(repo, "check")
    assert check.returncode == 0, check.stdout + check.stderr
    assert "protected is empty" not in flat(check.stdout)
    assert "the proposer may edit" not in flat(check.stdout)


def test_init_refuses_a_scope_that_holds_only_the_evaluation(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"evaluate.py": EVALUATE_PY})
    result = run_cli(repo, "init", "--metric", "acc", "--command", "{python} evaluate.py",
                     "--scope", "evaluate.py")
    assert result.returncode == 2, result.stdout + result.stderr
    err = flat(result.stderr)
    assert "the scope 'evaluate.py' holds only evaluate.py, the evaluation" in err
    assert "where: --scope" in err and "fix: give --scope the files" in err
    assert not (repo / "autoresearch.toml").exists()


def test_init_leaves_in_scope_a_file_that_only_looks_like_an_evaluation(tmp_path: Path) -> None:
    # The command runs evaluate.py, which the user protected; scoring.py is what they want
    # researched. Its name matches eval*/score*, but the command does not run it.
    repo = make_repo(tmp_path / "repo", {"evaluate.py": EVALUATE_PY, "scoring.py": MODEL_PY})
    result = run_cli(repo, "init", "--metric", "score", "--direction", "maximize", "--command",
                     "python evaluate.py", "--scope", "scoring.py", "--protected", "evaluate.py",
                     "--budget", "1")
    assert result.returncode == 0, result.stdout + result.stderr
    config = written_config(repo)
    assert config["scope"] == ["scoring.py"] and config["protected"] == ["evaluate.py"]
    assert ("scoring.py looks like an evaluation by its name; it stays in scope as you asked"
            in flat(result.stdout))
    # In the default scope the guess applies, but never as an error: protecting scoring.py
    # would leave *.py empty, and the command runs run.sh, not scoring.py.
    other = make_repo(tmp_path / "other", {"run.sh": "python scoring.py\n",
                                           "scoring.py": MODEL_PY})
    result = run_cli(other, "init", "--metric", "score", "--command", "bash run.sh")
    assert result.returncode == 0, result.stdout + result.stderr
    assert written_config(other)["scope"] == ["*.py"]
    assert ("scoring.py looks like an evaluation by its name, but the scope holds nothing else, "
            "so it stays in scope") in flat(result.stdout)


def test_check_names_the_evaluation_in_scope_not_the_wrapper_script_outside_it(
        tmp_path: Path) -> None:
    # `bash run.sh` runs eval/evaluate.py: protecting run.sh (out of the scope) guards nothing.
    config = CONFIG.replace('scope = ["target.py"]', 'scope = ["**/*.py"]').replace(
        'protected = ["score.py"]', "protected = []").replace(
        'command = "{python} score.py"', 'command = "bash run.sh"') + KNOB
    repo = make_repo(tmp_path / "repo", {
        "run.sh": f"{sys.executable} eval/evaluate.py\n", "target.py": "X = 3.0\n",
        "eval/evaluate.py": "import sys; sys.path.insert(0, '.'); import target\n"
                            "print(f'score: {target.X}')\nprint('mem_mb: 1')\n",
        "autoresearch.toml": config})
    check = run_cli(repo, "check")
    assert check.returncode == 0, check.stdout + check.stderr
    out = flat(check.stdout)
    assert "the verify command runs run.sh, outside the scope and so already safe" in out
    assert 'add the line protected = ["eval/evaluate.py"]' in out
    assert 'protected = ["run.sh"]' not in out
    # Protecting the wrapper anyway leaves the evaluation editable: still named.
    (repo / "autoresearch.toml").write_text(config.replace("protected = []",
                                                           'protected = ["run.sh"]'))
    git(repo, "commit", "-qam", "protect the wrapper only")
    again = flat(run_cli(repo, "check").stdout)
    assert ("the proposer may edit eval/evaluate.py, in the scope, whose name says it judges the "
            'run: if the verify command reaches it, protect it: protected = ["run.sh", '
            '"eval/evaluate.py"]') in again
    # Nothing in the scope looks like an evaluation: no line that would protect the wrapper.
    [warning] = unguarded_evaluation("bash run.sh", ["*.py"], [], list(ALWAYS_PROTECTED),
                                     ["run.sh", "model.py"])
    assert "runs run.sh, outside the scope" in warning and '"run.sh"' not in warning


def test_check_warns_with_the_line_to_add_when_the_evaluation_is_editable(tmp_path: Path) -> None:
    unguarded = CONFIG.replace('scope = ["target.py"]', 'scope = ["*.py"]').replace(
        'protected = ["score.py"]', "protected = []") + KNOB
    repo = make_repo(tmp_path / "repo", {"target.py": "X = 3.0\n", "score.py": SCORE_PY,
                                         "autoresearch.toml": unguarded})
    check = run_cli(repo, "check")
    assert check.returncode == 0, check.stdout + check.stderr  # a warning, not a refusal
    out = flat(check.stdout)
    assert ("protected is empty, and the proposer may edit score.py, which the verify command "
            'runs: if it computes the metric, protect it: protected = ["score.py"]') in out
    # Something else protected: an evaluation-named file the command runs is still named.
    (repo / "autoresearch.toml").write_text(unguarded.replace("protected = []",
                                                              'protected = ["data.txt"]'))
    (repo / "data.txt").write_text("1\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "protect the data only")
    again = flat(run_cli(repo, "check").stdout)
    assert ('the proposer may edit score.py, which the verify command runs: if it computes the '
            'metric, protect it: protected = ["data.txt", "score.py"]') in again
    assert "protected is empty" not in again


@pytest.mark.parametrize("config", [
    TESTS.parent / "src/autoresearch/templates/gpt/autoresearch.toml",
    TESTS.parent / "examples/noisy-bowl/autoresearch.toml",
])
def test_the_template_and_the_quickstart_protect_their_evaluation_without_a_warning(
        config: Path) -> None:
    # The GPT template's command runs train.py, in scope by design; its evaluation is in the
    # protected prepare.py. Neither it nor the quickstart may draw the warning.
    loaded = load_config(config)
    files = [p.relative_to(config.parent).as_posix() for p in config.parent.rglob("*")
             if p.is_file() and "__pycache__" not in p.parts]
    assert unguarded_evaluation(loaded.verify.command, loaded.scope, loaded.protected,
                                list(ALWAYS_PROTECTED), files) == []


def test_check_says_protected_is_empty_when_the_command_names_no_file(toy_repo: Path) -> None:
    warnings = unguarded_evaluation("make eval", ["*.py"], [], list(ALWAYS_PROTECTED),
                                    ["target.py", "data.txt"])
    assert len(warnings) == 1 and warnings[0].startswith("protected is empty: ")
    assert 'add the line protected = ["<the file that computes the metric>"]' in warnings[0]
    # A file in the scope whose name says it judges the run is the line's guess instead.
    [warning] = unguarded_evaluation("make eval", ["*.py"], [], list(ALWAYS_PROTECTED),
                                     ["target.py", "score.py"])
    assert 'add the line protected = ["score.py"]' in warning


# --- 2. init in a monorepo's subdirectory --------------------------------------------------------


def test_init_from_a_subdirectory_writes_values_relative_to_the_root(tmp_path: Path) -> None:
    train = "LR = 0.1  # knob: log(1e-3, 1)\nprint(f'val_loss: {LR}')\n"
    root = make_repo(tmp_path / "mono", {"projects/ml/train.py": train,
                                         "projects/ml/evaluate_utils.txt": "x\n",
                                         "web/app.js": "1\n"})
    sub = root / "projects" / "ml"
    result = run_cli(sub, "init", "--metric", "val_loss", "--command", "{python} train.py",
                     "--scope", "*.py", "--budget", "2", "--commit")
    assert result.returncode == 0, result.stdout + result.stderr
    out = flat(result.stdout)
    assert f"wrote {root / 'autoresearch.toml'}" in out  # where it went, absolutely
    assert "you ran init in projects/ml/, below the repository root" in out
    assert not (sub / "autoresearch.toml").exists()
    config = written_config(root)
    assert config["scope"] == ["projects/ml/*.py"]
    assert config["verify"] == {"command": "cd projects/ml && {python} train.py",  # type: ignore[comparison-overlap]
                                "budget_seconds": 2}
    check = run_cli(root, "check")
    assert check.returncode == 0, check.stdout + check.stderr
    assert "scope matches 1 file(s): projects/ml/train.py" in flat(check.stdout)


# --- 3. JSON lines ------------------------------------------------------------------------------

JSON_LOG = '{"step": 3, "val_loss": 0.02}\n{"event": "done", "elapsed_s": 0.01}\n'


def test_each_json_metric_is_read_from_the_last_line_that_has_it() -> None:
    assert parse_metrics(JSON_LOG, "json") == {"step": 3.0, "val_loss": 0.02, "elapsed_s": 0.01}
    two = '{"val_loss": 0.5}\n{"val_loss": 0.02}\n{"event": "done"}\n'
    assert parse_metrics(two, "json")["val_loss"] == 0.02  # the last value still wins
    assert printed_values(two, "json", "val_loss") == [0.5, 0.02]


def test_init_from_a_json_lines_log_offers_the_metric_before_the_last_line(
        tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"train.py": "print('x')\n"})
    (tmp_path / "run.log").write_text(JSON_LOG)
    listed = run_cli(repo, "init", "--from-log", str(tmp_path / "run.log"))
    assert listed.returncode == 2
    assert "val_loss = 0.02" in flat(listed.stderr)
    assert "e.g. --metric val_loss" in flat(listed.stderr)
    chosen = run_cli(repo, "init", "--from-log", str(tmp_path / "run.log"), "--metric",
                     "val_loss", "--command", "{python} train.py", "--scope", "train.py")
    assert chosen.returncode == 0, chosen.stdout + chosen.stderr
    assert written_config(repo)["metric"] == {"name": "val_loss", "direction": "minimize",
                                              "format": "json"}


# --- 4. a template over the project's own files ---------------------------------------------------


def test_a_template_names_every_file_it_would_overwrite_and_writes_none(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"train.py": "print(1)\n", "program.md": "mine\n"})
    result = run_cli(repo, "init", "--template", "gpt")
    assert result.returncode == 2, result.stdout + result.stderr
    err = flat(result.stderr)
    assert "would overwrite 2 file(s) that already exist: program.md, train.py" in err
    assert "nothing was written" in err
    assert not (repo / "autoresearch.toml").exists() and not (repo / "prepare.py").exists()
    assert (repo / "program.md").read_text() == "mine\n"
    again = run_cli(repo, "init", "--template", "gpt")  # the same answer, not a new one
    assert flat(again.stderr) == err


@pytest.mark.parametrize("sub", ["lm", "my sub[1]"])  # the second is no character class
def test_a_template_from_a_subdirectory_puts_its_code_there_and_the_config_at_the_root(
        tmp_path: Path, sub: str) -> None:
    repo = make_repo(tmp_path / "repo", {"README": "a monorepo\n", f"{sub}/notes.txt": "x\n"})
    result = run_cli(repo / sub, "init", "--template", "gpt", "--commit")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"you ran init in {sub}/" in flat(result.stdout)
    assert {p.name for p in (repo / sub).iterdir()} == {"notes.txt", "train.py", "prepare.py",
                                                         "score.py"}
    assert (repo / "program.md").is_file()
    config = load_config(repo / "autoresearch.toml")
    tracked = git(repo, "ls-files").splitlines()
    assert select(tracked, config.scope) == [f"{sub}/train.py"]
    assert {f"{sub}/prepare.py", f"{sub}/score.py"} <= set(select(tracked, config.protected))
    assert config.verify.command == f"cd {shlex.quote(sub)} && {{python}} score.py train.py"
    knobs = require_knobs(repo, config)  # every knob names a file and a line that exist
    assert len(knobs) == 14 and {k.file for k in knobs} == {f"{sub}/train.py"}
    assert git(repo, "status", "--porcelain") == ""  # committed where they were written
    # A second template over it names the files it would overwrite where they are.
    again = run_cli(repo / sub, "init", "--template", "gpt")
    assert again.returncode == 2
    assert (f"autoresearch.toml, {sub}/prepare.py, program.md, {sub}/score.py, {sub}/train.py"
            in flat(again.stderr))


# --- 5. a session branch the ledger does not know ----------------------------------------------------


def test_check_refuses_as_run_does_a_session_branch_without_its_session(toy_repo: Path) -> None:
    (toy_repo / "autoresearch.toml").write_text(CONFIG + KNOB)
    git(toy_repo, "commit", "-qam", "tune X")
    branch = f"autoresearch/{default_tag()}"
    git(toy_repo, "branch", branch)
    check = run_cli(toy_repo, "check")
    assert check.returncode == 1, check.stdout + check.stderr
    out = flat(check.stdout)
    said = f"branch {branch} exists but this repo's ledger has no session '{default_tag()}'"
    assert said in out and f"git branch -D {branch}" in out and "ready" not in out
    run = run_cli(toy_repo, "run", "-n", "1")
    assert run.returncode != 0 and said in flat(run.stderr)


# --- 6. the interpreter and the shell the command runs under -------------------------------------------


def failing_check(tmp_path: Path, command: str, train: str) -> str:
    config = textwrap.dedent(f"""
        scope = ["train.py"]
        protected = ["score.py"]
        [verify]
        command = "{command}"
        budget_seconds = 2
        [metric]
        name = "score"
        direction = "minimize"
        [proposer]
        name = "tune"
        [knobs]
        "train.py:X" = "float(0, 10)"
        """)
    repo = make_repo(tmp_path / "repo", {"train.py": train, "score.py": "print('score: 1')\n",
                                         "autoresearch.toml": config})
    check = run_cli(repo, "check")
    assert check.returncode == 1, check.stdout + check.stderr
    return flat(check.stdout)


def test_check_names_the_interpreter_when_the_command_cannot_import(tmp_path: Path) -> None:
    out = failing_check(tmp_path, "{python} train.py",
                        "import no_such_module_for_autoresearch\nX = 1.0\n")
    assert (f"the command failed to import 'no_such_module_for_autoresearch': {{python}} is "
            f"{sys.executable}, the interpreter running autoresearch") in out
    assert 'command = "/path/to/venv/bin/python train.py"' in out


def test_check_says_the_command_runs_under_sh_when_source_is_missing(tmp_path: Path) -> None:
    if Path("/bin/sh").resolve().name == "bash":
        pytest.skip("/bin/sh is bash here, which has `source`")
    out = failing_check(tmp_path, "source env.sh && {python} train.py", "X = 1.0\n")
    assert "the verify command runs under /bin/sh, which has no `source`" in out
    assert "bash -c" in out


# --- 7. a bare repository -----------------------------------------------------------------------------------


def test_a_bare_repository_is_told_to_add_a_worktree_not_to_git_init(tmp_path: Path) -> None:
    origin = make_repo(tmp_path / "origin", {"train.py": "X = 1\n"})
    bare = tmp_path / "project.git"
    git(tmp_path, "clone", "-q", "--bare", str(origin), str(bare))
    for command in ("check", "run"):
        result = run_cli(bare, command)
        assert result.returncode == 3, result.stdout + result.stderr
        err = flat(result.stderr)
        assert "is a bare git repository" in err and "git init" not in err
        assert f"git -C {bare} worktree add ../work main" in err and "git clone" in err
