"""Knob inputs a user gets wrong, or writes in ways tune must still number and rewrite exactly:
knobs in JSON files, a current value outside its space, and line breaks other than `\\n`."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from autoresearch.config import Config, load_config
from autoresearch.proposers.base import ExperimentOutcome, ExperimentSummary
from autoresearch.proposers.knob_discovery import discover_knobs, require_knobs
from autoresearch.proposers.knob_report import describe_knobs, outside_their_space
from autoresearch.proposers.knob_space import parse_knob_spec
from autoresearch.proposers.knobs import KnobError, read_value, rewrite
from autoresearch.proposers.tune import TuneProposer
from tests.conftest import CONFIG, SCORE_PY, git, make_repo, run_cli
from tests.test_tune import make_ctx


def flat(text: str) -> str:
    """Output with rich's line wrapping undone."""
    return " ".join(text.split())


def tune_config(root: Path, scope: list[str], knobs: str = "") -> Config:
    scope_toml = ", ".join(f'"{file}"' for file in scope)
    (root / "autoresearch.toml").write_text(
        f"scope = [{scope_toml}]\n"
        '[verify]\ncommand = "true"\nbudget_seconds = 5\n'
        '[metric]\nname = "loss"\ndirection = "minimize"\n[proposer]\nname = "tune"\n'
        + (f"[knobs]\n{knobs}" if knobs else ""), encoding="utf-8")
    return load_config(root / "autoresearch.toml")


# -- 1. JSON files cannot hold knobs ----------------------------------------------------------

CONF_JSON = '{\n  "lr": 0.001,\n  "depth": 4\n}\n'


@pytest.mark.parametrize("file", ["conf.json", "conf.jsonc", "conf.json5"])
def test_a_knob_declared_in_a_json_file_says_json_cannot_hold_knobs(
        tmp_path: Path, file: str) -> None:
    # It said "found no line assigning a literal to lr … check the name's spelling": the name
    # was right, and no spelling would ever have worked.
    (tmp_path / file).write_text(CONF_JSON, encoding="utf-8")
    with pytest.raises(KnobError) as info:
        discover_knobs(tmp_path, {f"{file}:lr": "log(1e-4, 1e-2)"}, [file])
    err = info.value
    assert f"{file} is a JSON file, and tune cannot tune a value in JSON" in err.what
    assert "has no comments to carry a `# knob:` marker" in err.what
    assert err.where == f'autoresearch.toml → knobs."{file}:lr"'
    assert err.fix is not None and "spelling" not in err.fix
    assert "move lr into a file tune can rewrite that your program reads" in err.fix
    # The user's own value and space, ready to use (it said `lr: 0.01`, whatever the value).
    assert "`lr: 0.001  # knob: log(1e-4, 1e-2)`" in err.fix
    # Said first: neither the scope nor the file's existence is the problem to fix.
    with pytest.raises(KnobError, match="is a JSON file"):
        discover_knobs(tmp_path, {"missing.json:lr": "log(1e-4, 1e-2)"}, [file])


@pytest.mark.parametrize(("json_text", "key", "spec", "line"), [
    # The example said `max_depth: 0.01  # knob: int(1, 10)`: outside its own space.
    ('{"max_depth": 4}', "max_depth", "int(1, 10)", "max_depth: 4  # knob: int(1, 10)"),
    ('{"opt": "adamw", "n": 1}', "opt", "choice(adamw, sgd)",
     "opt: adamw  # knob: choice(adamw, sgd)"),
    ('{"mode": "yes"}', "mode", 'choice("yes", "no")', 'mode: "yes"  # knob: choice("yes", "no")'),
    # Unreadable as the space's type, or absent: a value in the middle of the space.
    ('{"lr": "auto"}', "lr", "log(1e-4, 1e-2)", "lr: 0.001  # knob: log(1e-4, 1e-2)"),
    ("{}", "depth", "int(2, 10, 2)", "depth: 6  # knob: int(2, 10, 2)"),
    (None, "w", "float(0, 1)", "w: 0.5  # knob: float(0, 1)"),
    (None, "act", "choice(relu, gelu)", "act: relu  # knob: choice(relu, gelu)"),
])
def test_the_json_fix_shows_the_files_value_or_one_inside_the_space(
        tmp_path: Path, json_text: str | None, key: str, spec: str, line: str) -> None:
    if json_text is not None:
        (tmp_path / "params.json").write_text(json_text, encoding="utf-8")
    with pytest.raises(KnobError) as info:
        discover_knobs(tmp_path, {f"params.json:{key}": spec}, ["params.json"])
    assert f"(`{line}`)" in (info.value.fix or ""), info.value.fix


def test_a_marker_in_a_json_file_is_named_as_json_by_check_and_run(tmp_path: Path) -> None:
    # A marker in JSON (here a `//` comment, as in a .jsonc habit) was either a "line it cannot
    # rewrite" with forms that JSON cannot take, or no marker at all.
    config = CONFIG.replace('scope = ["target.py"]', 'scope = ["target.py", "conf.json"]')
    repo = make_repo(tmp_path / "repo", {
        "target.py": "X = 3.0\n", "score.py": SCORE_PY,
        "conf.json": '{\n  "lr": 0.001, // knob: log(1e-4, 1e-2)\n  "depth": 4\n}\n',
        "autoresearch.toml": config + '[proposer]\nname = "tune"\n'})
    check = run_cli(repo, "check")
    assert check.returncode == 2, check.stdout + check.stderr
    out = flat(check.stdout)
    assert ("[knobs] declares none, and the `knob:` marker at conf.json:2 is in a JSON file, "
            "where tune cannot tune a value") in out, out
    assert "move lr into a file tune can rewrite" in out and "log(1e-4, 1e-2)" in out
    assert "spelling" not in out and "cannot rewrite:" not in out
    run = run_cli(repo, "run", "--iterations", "2")
    assert run.returncode == 2, run.stdout + run.stderr
    assert "conf.json:2 is in a JSON file" in flat(run.stderr)
    # Beside a knob that works, the JSON marker is named among the ignored ones.
    (repo / "target.py").write_text("X = 3.0  # knob: float(0, 10)\n")
    git(repo, "commit", "-qam", "a knob")
    check = run_cli(repo, "check")
    assert check.returncode == 0, check.stdout + check.stderr
    assert ("1 knob(s): target.py:X; 1 `# knob:` marker(s) ignored: conf.json:2 (in a JSON "
            "file, where tune cannot tune a value)") in flat(check.stdout)


def test_a_hash_marker_in_a_json_file_is_named_once_as_json(tmp_path: Path) -> None:
    # A `#` comment looks like any other marker: it was "on a line it cannot rewrite", with
    # advice to write `NAME = value`, which JSON cannot hold.
    (tmp_path / "conf.json").write_text('{\n  "lr": 0.001  # knob: log(1e-4, 1e-2)\n}\n',
                                        encoding="utf-8")
    config = tune_config(tmp_path, ["conf.json"])
    with pytest.raises(KnobError) as info:
        require_knobs(tmp_path, config)
    assert info.value.what.endswith("the `knob:` marker at conf.json:2 is in a JSON file, where "
                                    "tune cannot tune a value: tune rewrites only `NAME = value` "
                                    "/ `NAME: value` lines, and JSON quotes its keys and has no "
                                    "comments to carry a `# knob:` marker"), info.value.what
    (tmp_path / "target.py").write_text("X = 1.0  # knob: float(0, 2)\n", encoding="utf-8")
    scope = ["conf.json", "target.py"]
    knobs = require_knobs(tmp_path, tune_config(tmp_path, scope))
    assert describe_knobs(knobs, tmp_path, scope) == (
        "1 knob(s): target.py:X; 1 `# knob:` marker(s) ignored: conf.json:2 (in a JSON file, "
        "where tune cannot tune a value)")


def test_a_marker_in_a_notebook_says_to_move_the_value_into_a_module(tmp_path: Path) -> None:
    # A notebook is JSON: the marked cell line is a string in it, and the marker went unseen
    # ("no in-scope file has a `# knob:` marker").
    notebook = ('{\n "cells": [{\n  "cell_type": "code",\n  "source": [\n'
                '    "import torch  # a raw U+2028 in a JSON string:\u2028 no line break\\n",\n'
                '    "LR = 0.02  # knob: log(1e-3, 1e-1)\\n"\n'
                '  ]\n }]\n}\n')
    (tmp_path / "train.ipynb").write_text(notebook, encoding="utf-8")
    with pytest.raises(KnobError) as info:
        require_knobs(tmp_path, tune_config(tmp_path, ["train.ipynb"]))
    err = info.value
    assert "the `knob:` marker at train.ipynb:6 is in a JSON file" in err.what
    assert err.where == "train.ipynb:6"
    assert err.fix == ("move LR into a Python module the notebook imports, add that module to "
                       "scope and mark its line there: `LR = 0.02  # knob: log(1e-3, 1e-1)`")


def test_json_text_without_a_marker_spec_is_no_marker(tmp_path: Path) -> None:
    # Prose that mentions a knob is not a marker: only `knob: kind(...)` is.
    (tmp_path / "notes.json").write_text('{"tip": "turn the knob: slowly"}\n', encoding="utf-8")
    (tmp_path / "target.py").write_text("X = 1.0\n", encoding="utf-8")
    with pytest.raises(KnobError) as info:
        require_knobs(tmp_path, tune_config(tmp_path, ["notes.json", "target.py"]))
    assert "no in-scope file" in info.value.what and "JSON" not in info.value.what


# -- 2. a current value outside its space -------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "warning", "fix"),
    [
        ("LR = 0.5  # knob: log(1e-4, 1e-2)",
         "knob LR = 0.5 lies outside its space log(0.0001, 0.01) (above its highest value 0.01)",
         "widen the range to take in 0.5, or set LR to a value inside the space"),
        ("LR = 1e-06  # knob: log(1e-4, 1e-2)",
         "knob LR = 1e-06 lies outside its space log(0.0001, 0.01) (below its lowest value "
         "0.0001)", "widen the range to take in 1e-06"),
        ("OPT = 'adam'  # knob: choice(\"adamw\", \"sgd\")",
         "knob OPT = 'adam' lies outside its space choice('adamw', 'sgd') (none of its choices)",
         "add 'adam' to the choices, or set OPT to a value inside the space"),
        ("N = 3  # knob: int(2, 10, 2)",
         "knob N = 3 lies outside its space int(2, 10, 2) (off its grid of step 2)",
         "change the space so that 3 is one of its values"),
        ("W = 0.35  # knob: float(0, 1, 0.1)",
         "knob W = 0.35 lies outside its space float(0.0, 1.0, 0.1) (off its grid of step 0.1)",
         "change the space so that 0.35 is one of its values"),
        ("B = 2.5  # knob: int(1, 4)",
         "knob B = 2.5 lies outside its space int(1, 4) (not a whole number)",
         "change the space so that 2.5 is one of its values"),
    ],
)
def test_a_value_outside_its_space_is_warned_about_with_file_line_and_space(
        tmp_path: Path, line: str, warning: str, fix: str) -> None:
    (tmp_path / "target.py").write_text(f"import os\n\n{line}\n", encoding="utf-8")
    knobs = discover_knobs(tmp_path, {}, ["target.py"])
    (said,) = outside_their_space(tmp_path, knobs)
    assert said.startswith(f"target.py:3: {warning}: the baseline runs it as written, but tune "
                           "proposes only values inside the space"), said
    assert f"\n  fix:   {fix}" in said


def test_why_a_value_is_outside_a_space() -> None:
    assert parse_knob_spec("float(0, 1)").why_outside("x") == "not a number"
    assert parse_knob_spec("float(0, 1)").why_outside(True) == "not a number"
    assert parse_knob_spec("int(0, 4)").why_outside(4) is None
    assert parse_knob_spec("int(0, 4)").why_outside(-1) == "below its lowest value 0"


def test_values_inside_their_space_draw_no_warning(tmp_path: Path) -> None:
    text = ("LR = 0.01  # knob: log(1e-4, 1e-2)\nOPT = 'sgd'  # knob: choice('adamw', 'sgd')\n"
            "N = 4  # knob: int(2, 10, 2)\nW = 0.3  # knob: float(0, 1, 0.1)\n"
            "B = 1  # knob: logint(1, 64)\nD = 0.123456  # knob: float(0, 1)\n")
    (tmp_path / "target.py").write_text(text, encoding="utf-8")
    knobs = discover_knobs(tmp_path, {"target.py:LR": "log(1e-4, 1e-2)"}, ["target.py"])
    assert len(knobs) == 6 and outside_their_space(tmp_path, knobs) == []
    assert "\n" not in describe_knobs(knobs, tmp_path, ["target.py"])


def test_check_and_run_warn_of_a_value_outside_its_space_and_the_session_runs(
        tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {
        "target.py": "import os\nX = 30.0  # knob: float(0, 10)\n", "score.py": SCORE_PY,
        "autoresearch.toml": CONFIG + '[proposer]\nname = "tune"\nseed = 1\n'})
    check = run_cli(repo, "check")
    assert check.returncode == 0, check.stdout + check.stderr  # a warning, not a problem
    out = flat(check.stdout)
    assert ("1 knob(s): target.py:X ! target.py:2: knob X = 30.0 lies outside its space "
            "float(0.0, 10.0) (above its highest value 10.0): the baseline runs it as written, "
            "but tune proposes only values inside the space") in out, out
    assert "fix: widen the range to take in 30.0, or set X to a value inside the space" in out
    run = run_cli(repo, "run", "--iterations", "4")
    assert run.returncode == 0, run.stdout + run.stderr
    header = flat(run.stdout.split("each run gets")[0])
    assert "target.py:2: knob X = 30.0 lies outside its space float(0.0, 10.0)" in header
    # The trust region, centred on an incumbent outside the space, proposed inside it.
    tried = git(repo, "log", "--all", "-p", "--format=", "--", "target.py")
    values = [float(line.split("=")[1].split("#")[0]) for line in tried.splitlines()
              if line.startswith("+X")]
    assert len(values) >= 3 and values.count(30.0) == 1, tried  # the baseline's commit
    assert all(0 <= v <= 10 for v in values if v != 30.0), values


def test_check_says_each_value_outside_its_space_on_its_own_warning_line(tmp_path: Path) -> None:
    # Appended to the knob list, the warning was in `check`'s green line and was cut with the
    # list in `run`'s header: each is a yellow `!` line of its own, as the other warnings are.
    knobs = "".join(f"K{i} = 1.0  # knob: float(0, 2)\n" for i in range(12))
    repo = make_repo(tmp_path / "repo", {
        "target.py": f"import os\nX = 30.0  # knob: float(0, 10)\n{knobs}", "score.py": SCORE_PY,
        "autoresearch.toml": CONFIG + '[proposer]\nname = "tune"\n'})
    check = run_cli(repo, "check", env={"FORCE_COLOR": "1", "COLUMNS": "300"})
    assert check.returncode == 0, check.stdout + check.stderr
    yellow = "\x1b[33m!\x1b[0m "
    (head,) = [line for line in check.stdout.splitlines() if "13 knob(s): " in line]
    assert head.endswith("target.py:K10, target.py:K11"), head  # the whole list, and no more
    warning = next(line for line in check.stdout.splitlines() if "lies outside" in line)
    assert warning.startswith(f"{yellow}target.py:2: knob X = 30.0 lies outside its space"), (
        check.stdout)


@pytest.mark.parametrize("options", [{}, {"start": "global"}, {"local": False},
                                     {"sampler": "random"}])
def test_tune_proposes_inside_the_spaces_from_an_incumbent_outside_them(
        tmp_path: Path, options: dict[str, object]) -> None:
    (tmp_path / "target.py").write_text(
        "LR = 0.5  # knob: log(1e-4, 1e-2)\nOPT = 'adam'  # knob: choice('adamw', 'sgd')\n"
        "N = 3  # knob: int(2, 10, 2)\nW = 0.2  # knob: float(0, 1)\n", encoding="utf-8")
    config = tune_config(tmp_path, ["target.py"])
    tune = TuneProposer(config, {"seed": 3, **options})
    baseline = ExperimentSummary(id="exp1", seq=1, status="keep", hypothesis="", objective=1.0,
                                 delta=None, reason="",
                                 params=tune.initial_params(tmp_path))
    tune.resume([ExperimentOutcome(baseline, None)])
    history = [baseline]
    knobs = discover_knobs(tmp_path, {}, ["target.py"])
    for seq in range(2, 14):
        proposal = tune.propose(make_ctx(tmp_path, config, history))
        assert proposal is not None and proposal.params is not None
        for knob in knobs:
            assert knob.space.contains(proposal.params[knob.key]), (knob.key, proposal.params)
        done = ExperimentSummary(id=f"exp{seq}", seq=seq, status="discard", hypothesis="",
                                 objective=2.0, delta=None, reason="", params=proposal.params)
        history.append(done)
        tune.observe(ExperimentOutcome(done, proposal))


# -- 3. line numbers count `\n` only --------------------------------------------------------------

# A form feed, a vertical tab, U+0085, U+2028 and U+2029 before the markers: each a line break to
# str.splitlines, none to an editor, `grep -n` or git. A form feed may open a Python line.
ODD_BREAKS = ("import os\r\n\x0c\r\n# a section\u2028 and\x0b more\x85 of\u2029 it\r\n"
              "LR = 0.02  # knob: log(1e-3, 1e-1)\r\n\x0cDEPTH = 4  # knob: int(1, 12)\n"
              "NAME = 'a\u2028b'  # knob: choice('a\u2028b', 'c')\n")


def in_syntax_of(file: str, text: str) -> str:
    """`text` as a YAML file writes it (no form feed opens a YAML line)."""
    if file.endswith(".py"):
        return text
    return text.replace(" = ", ": ").replace("\x0cDEPTH", "DEPTH")


def grep_n(path: Path, pattern: str) -> int:
    """The line `grep -n` gives for the first line of `path` holding `pattern`."""
    out = subprocess.run(["grep", "-n", "-a", "-F", pattern, str(path)], check=True,
                         capture_output=True).stdout
    return int(out.split(b":", 1)[0])


@pytest.mark.parametrize("file", ["target.py", "conf.yaml"])
def test_knob_lines_are_numbered_as_grep_numbers_them(tmp_path: Path, file: str) -> None:
    text = in_syntax_of(file, ODD_BREAKS)
    path = tmp_path / file
    path.write_bytes(text.encode("utf-8"))
    knobs = {k.name: k for k in discover_knobs(tmp_path, {}, [file])}
    assert knobs["LR"].line == grep_n(path, "LR") == 4
    assert knobs["DEPTH"].line == grep_n(path, "DEPTH") == 5
    assert knobs["NAME"].line == grep_n(path, "NAME") == 6
    assert read_value(text, knobs["NAME"]) == "a\u2028b"
    # The messages name the same lines: a value outside its space, a marker given twice.
    path.write_bytes(text.replace("0.02", "0.5").encode("utf-8"))
    (warning,) = outside_their_space(tmp_path, list(knobs.values()))
    assert warning.startswith(f"{file}:4: knob LR = 0.5 lies outside")
    twice = text + in_syntax_of(file, "LR = 0.03  # knob: log(1e-3, 1e-1)\n")
    path.write_bytes(twice.encode("utf-8"))
    with pytest.raises(KnobError, match=r"marked twice \(lines 4 and 7\)") as info:
        discover_knobs(tmp_path, {}, [file])
    assert info.value.where == f"{file}:7"


@pytest.mark.parametrize("file", ["target.py", "conf.yaml"])
def test_a_rewrite_changes_only_the_values_bytes(tmp_path: Path, file: str) -> None:
    text = in_syntax_of(file, ODD_BREAKS)
    out = rewrite(text, {"LR": 0.0315, "DEPTH": 7, "NAME": "c"}, path=file)
    expected = (text.replace("0.02", "0.0315").replace("4  #", "7  #")
                .replace("'a\u2028b'  #", "'c'  #"))
    assert out.encode("utf-8") == expected.encode("utf-8")
    # A last line without an ending keeps having none.
    assert rewrite("A = 1\u2028\nB = 2", {"B": 3}, path=file) == "A = 1\u2028\nB = 3"
    # A config-declared knob on the line after all the odd breaks, and a top-level preference
    # that is not fooled by the form feed opening DEPTH's line.
    path = tmp_path / file
    path.write_bytes(text.encode("utf-8"))
    (depth,) = [k for k in discover_knobs(tmp_path, {f"{file}:DEPTH": "int(1, 20)"}, [file])
                if k.name == "DEPTH"]
    assert (depth.line, depth.source, depth.space) == (5, "config", parse_knob_spec("int(1, 20)"))


def test_stray_markers_and_sections_are_numbered_as_grep_numbers_them(tmp_path: Path) -> None:
    # A marker on a line tune cannot rewrite, named at its own line; and a section header found
    # between two keys of the same name (there, the second is no override of the first).
    (tmp_path / "setup.cfg").write_text("# one\u2028two\n[a]\nlr = 0.1  # knob: "
                                        "float(0, 1)\n[b]\nlr = 0.2\nn += 1  # knob: int(1, 5)\n",
                                        encoding="utf-8")
    knobs = require_knobs(tmp_path, tune_config(tmp_path, ["setup.cfg"]))
    assert [(k.key, k.line) for k in knobs] == [("setup.cfg:lr", 3)]
    assert describe_knobs(knobs, tmp_path, ["setup.cfg"]).endswith(
        "ignored: setup.cfg:6 (not a line tune can rewrite: n += 1  # knob: int(1, 5))")
    assert grep_n(tmp_path / "setup.cfg", "n +=") == 6


def test_a_form_feed_opening_a_python_line_is_no_indentation(tmp_path: Path) -> None:
    # Python ignores a leading form feed in a line's indentation: `\fX = 2` is top level, the
    # line a knob binds to, and the one that overrides an earlier `X = 1`; `\f    X = 1` is not.
    text = "if True:\n    X = 1\n\x0cX = 2\n"
    assert rewrite(text, {"X": 5}) == "if True:\n    X = 1\n\x0cX = 5\n"
    text = "if True:\n\x0c    X = 1\nX = 2\n"
    assert rewrite(text, {"X": 5}) == "if True:\n\x0c    X = 1\nX = 5\n"
    (tmp_path / "target.py").write_text("X = 1  # knob: int(0, 9)\n\x0cX = 2\n")
    with pytest.raises(KnobError, match=r"more than once in target.py \(lines 1 and 2\)"):
        require_knobs(tmp_path, tune_config(tmp_path, ["target.py"]))


def test_run_says_each_value_outside_its_space_whole_on_its_own_line(tmp_path: Path) -> None:
    # The warning was appended to the knob list, which `run`'s header cuts at 160 characters.
    knobs = "".join(f"K{i} = 1.0  # knob: float(0, 2)\n" for i in range(12))
    repo = make_repo(tmp_path / "repo", {
        "target.py": f"import os\nX = 30.0  # knob: float(0, 10)\n{knobs}", "score.py": SCORE_PY,
        "autoresearch.toml": CONFIG + '[proposer]\nname = "tune"\n'})
    run = run_cli(repo, "run", "--iterations", "2", env={"COLUMNS": "400"})
    assert run.returncode == 0, run.stdout + run.stderr
    lines = run.stdout.split("each run gets")[0].splitlines()
    assert lines[0].endswith("… (`autoresearch check` lists them all)"), lines[0]
    assert lines[1].startswith("! target.py:2: knob X = 30.0 lies outside its space "
                               "float(0.0, 10.0) (above its highest value 10.0)"), lines
    assert "fix:   widen the range to take in 30.0" in lines[2], lines
