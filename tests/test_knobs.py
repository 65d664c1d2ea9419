"""Knob specs, discovery and line rewriting."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from autoresearch.config import Config, load_config
from autoresearch.errors import ConfigError
from autoresearch.proposers.knob_discovery import discover_knobs, require_knobs
from autoresearch.proposers.knob_space import KnobSpace, parse_knob_spec
from autoresearch.proposers.knob_unusable_markers import stray_markers
from autoresearch.proposers.knobs import Knob, KnobError, read_value, rewrite

# -- specs ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("log(1e-4, 1e-1)", KnobSpace("log", 1e-4, 1e-1)),
        ("  float(0, 1)  ", KnobSpace("float", 0.0, 1.0)),
        ("float(0, 1, 0.25)", KnobSpace("float", 0.0, 1.0, 0.25)),
        ("int(1, 9)", KnobSpace("int", 1, 9)),
        ("int(2, 10, 2)", KnobSpace("int", 2, 10, 2)),
        ("logint(1, 1024)", KnobSpace("logint", 1, 1024)),
        (
            "choice(\"adamw\", 'sgd', 3, 0.5, True, None)",
            KnobSpace("choice", choices=("adamw", "sgd", 3, 0.5, True, None)),
        ),
        ("choice(-1, +2)", KnobSpace("choice", choices=(-1, 2))),
        # Bare words are strings, as a Makefile or INI user writes them; numbers stay numbers.
        ("choice(-O0, -O1, adamw)", KnobSpace("choice", choices=("-O0", "-O1", "adamw"))),
        ("choice(-march=native, /usr/bin/gcc, gpt2-medium, cuda:0, 1.2.3, 3x,)",
         KnobSpace("choice", choices=("-march=native", "/usr/bin/gcc", "gpt2-medium", "cuda:0",
                                      "1.2.3", "3x"))),
        ("choice(fast, 2, 1e-3, None, 'a, b')",
         KnobSpace("choice", choices=("fast", 2, 1e-3, None, "a, b"))),
    ],
)
def test_parse_valid_specs(spec: str, expected: KnobSpace) -> None:
    assert parse_knob_spec(spec) == expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("log(1e-1, 1e-4)", "must be smaller than hi"),
        ("float(1, 1)", "must be smaller than hi"),
        ("log(0, 1)", "log scale needs lo > 0"),
        ("logint(0, 8)", "log scale needs lo > 0"),
        ("choice()", "at least one value"),
        ("choice(adam w, sgd)", "neither a literal nor a bare word: quote it"),
        ("choice(true, false)", "the bare word true could mean a bool"),
        ("choice(Yes, no)", "the bare word Yes could mean a bool"),
        ("choice(-inf, 1)", "the bare word -inf could mean"),
        ("choice(lr=0.1)", "positional only; if lr=0.1 is a value, quote it"),
        ("choice(a,, b)", "an empty value between two commas"),
        ('choice("a, b)', "a quote or bracket is left open"),
        ("choice([1, 2])", "not a single number"),
        ('choice("a", "a")', "appears twice"),
        ("choice(1, True)", "ambiguous"),
        ("gauss(0, 1)", "unknown knob kind 'gauss'"),
        ("log(1e-4)", "expected log(lo, hi)"),
        ("log(1e-4, 1, 2)", "expected log(lo, hi)"),
        ("int(0.5, 3)", "takes integers"),
        ('float("a", 1)', "takes numbers"),
        ("float(True, 2)", "takes numbers"),
        ("float(0, 1, 0.3)", "not a multiple of step"),
        ("int(0, 10, 3)", "not a multiple of step"),
        ("float(0, 1, -0.1)", "step must be positive"),
        ("float(lo=0, hi=1)", "positional"),
        ("float(0, 1e999)", "finite"),
        # Each bound finite, their distance not: it passed check, and the first proposal
        # overflowed (OverflowError in the snap to the range's grid, a traceback).
        ("float(-1e308, 1e308)", "wider than a float can hold"),
        (f"int(-{10**400}, {10**400})", "wider than a float can hold"),
        ("0.1", "not of the form"),
        ("log(1e-4, 1e-1", "not of the form"),
        ("", "not of the form"),
    ],
)
def test_parse_errors_are_precise(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_knob_spec(spec)


def test_contract_rejects_a_bad_spec(tmp_path: Path) -> None:
    (tmp_path / "autoresearch.toml").write_text(
        'scope = ["train.py"]\n'
        '[verify]\ncommand = "true"\nbudget_seconds = 5\n'
        '[metric]\nname = "loss"\ndirection = "minimize"\n'
        '[knobs]\n"train.py:LR" = "log(0, 1)"\n',
        encoding="utf-8",
    )
    with pytest.raises(ConfigError, match="train.py:LR"):
        load_config(tmp_path / "autoresearch.toml")


def test_snap_is_compact_bounded_and_idempotent() -> None:
    log = parse_knob_spec("log(1e-4, 1e-1)")
    assert log.snap(0.0123456789) == 0.01235
    assert log.snap(5.0) == 0.1 and log.snap(1e-9) == 1e-4
    lin = parse_knob_spec("float(0, 0.3)")
    assert lin.snap(0.123456) == 0.1235
    stepped = parse_knob_spec("float(0, 1, 0.1)")
    assert stepped.snap(0.349) == 0.3 and repr(stepped.snap(0.7)) == "0.7"
    assert list(parse_knob_spec("int(2, 10, 4)").values()) == [2, 6, 10]
    assert parse_knob_spec("int(2, 10, 4)").snap(7.9) == 6
    assert parse_knob_spec("logint(1, 64)").snap(12.6) == 13
    rng = random.Random(0)
    for space in (log, lin, stepped, parse_knob_spec("float(-3, 7)")):
        for _ in range(200):
            v = space.snap(rng.uniform(space.low - 1, space.high + 1))
            assert space.contains(v) and space.snap(v) == v


def test_choice_membership_tells_bools_from_ints() -> None:
    space = parse_knob_spec("choice(True, False)")
    assert space.contains(True) and not space.contains(1)
    with pytest.raises(ValueError, match="not one of"):
        space.snap(1)


# -- discovery ------------------------------------------------------------------------------------

TRAIN = '''"""A training script."""
import math

LR = 0.02  # knob: log(1e-3, 1e-1)
DEPTH: int = 4  # depth of the net; knob: int(1, 12)  (try deeper)
WEIGHT_DECAY = 0.1
OPTIMIZER = 'adamw'
print(f"lr={LR}")


def train(lr=0.1, depth=2):
    WEIGHT_DECAY = 0.5  # a local, not the knob
    return lr * depth
'''


def _write(root: Path, name: str, text: str) -> None:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode("utf-8"))


def test_discovers_config_knobs_and_markers(tmp_path: Path) -> None:
    _write(tmp_path, "train.py", TRAIN)
    knobs = discover_knobs(
        tmp_path,
        {"train.py:WEIGHT_DECAY": "float(0, 0.3)", "train.py:OPTIMIZER": 'choice("adamw", "sgd")'},
        ["train.py"],
    )
    by_name = {k.name: k for k in knobs}
    assert [k.name for k in knobs] == ["LR", "DEPTH", "WEIGHT_DECAY", "OPTIMIZER"]
    assert by_name["LR"] == Knob("train.py", "LR", parse_knob_spec("log(1e-3, 1e-1)"), 4, "marker")
    assert by_name["DEPTH"].space == KnobSpace("int", 1, 12) and by_name["DEPTH"].line == 5
    assert by_name["WEIGHT_DECAY"].line == 6  # the top-level one, not the local in train()
    assert (
        by_name["OPTIMIZER"].source == "config" and by_name["OPTIMIZER"].key == "train.py:OPTIMIZER"
    )
    assert read_value(TRAIN, by_name["OPTIMIZER"]) == "adamw"
    assert read_value(TRAIN, by_name["DEPTH"]) == 4


def test_config_overrides_a_marker(tmp_path: Path) -> None:
    _write(tmp_path, "train.py", TRAIN)
    knobs = discover_knobs(tmp_path, {"train.py:LR": "log(1e-5, 1)"}, ["train.py"])
    lr = next(k for k in knobs if k.name == "LR")
    assert lr.space == KnobSpace("log", 1e-5, 1.0) and lr.source == "config"


def test_non_python_files(tmp_path: Path) -> None:
    _write(
        tmp_path,
        "conf/train.yaml",
        "model:\n  width: 256   # knob: choice(128, 256, 512)\n  act: gelu\nlr: 3.0e-4\n",
    )
    _write(tmp_path, "params.toml", '[optim]\nlr = 1e-3  # learning rate\nname = "adam"\n')
    _write(tmp_path, "run.env", "BATCH=32\n")
    knobs = discover_knobs(
        tmp_path,
        {
            "conf/train.yaml:lr": "log(1e-5, 1e-2)",
            "conf/train.yaml:act": 'choice("gelu", "relu")',
            "params.toml:lr": "log(1e-5, 1e-1)",
            "params.toml:name": 'choice("adam", "sgd")',
            "run.env:BATCH": "logint(8, 256)",
        },
        ["conf/train.yaml", "params.toml", "run.env"],
    )
    values = {k.key: read_value((tmp_path / k.file).read_text(), k) for k in knobs}
    assert values == {
        "conf/train.yaml:width": 256,
        "conf/train.yaml:act": "gelu",
        "conf/train.yaml:lr": 3e-4,
        "params.toml:lr": 1e-3,
        "params.toml:name": "adam",
        "run.env:BATCH": 32,
    }


@pytest.mark.parametrize(
    ("knobs", "scope", "message", "fix"),
    [
        (
            {"train.py:LEARNING_RATE": "log(1e-4, 1)"},
            ["train.py"],
            "no line assigning a literal to LEARNING_RATE in train.py",
            "LEARNING_RATE = 0.01",
        ),
        (
            {"model.py:LR": "log(1e-4, 1)"},
            ["train.py", "model.py"],
            "model.py does not exist",
            "file name",
        ),
        (
            {"train.py:LR": "log(1e-4, 1)"},
            ["model.py"],
            "outside the scope",
            'add "train.py" to scope',
        ),
        (  # a missing file is said to be missing, not to be added to the scope
            {"other.py:LR": "log(1e-4, 1)"},
            ["train.py"],
            "other.py does not exist",
            "file name",
        ),
        ({"LR": "log(1e-4, 1)"}, ["train.py"], 'must be "file:NAME"', "train.py:LEARNING_RATE"),
        ({"train.py:OPTIMIZER": "log(1e-4, 1)"}, ["train.py"], "is not a number", "choice"),
        ({"train.py:LR": "gauss(0, 1)"}, ["train.py"], "unknown knob kind", "log(lo, hi)"),
        ({"../train.py:LR": "log(1e-4, 1)"}, ["train.py"], "not a repo-relative path", "relative"),
    ],
)
def test_config_knob_errors_say_what_where_and_how(
    tmp_path: Path, knobs: dict[str, str], scope: list[str], message: str, fix: str
) -> None:
    _write(tmp_path, "train.py", TRAIN)
    with pytest.raises(KnobError) as err:
        discover_knobs(tmp_path, knobs, scope)
    assert isinstance(err.value, ConfigError)
    assert message in err.value.what
    assert err.value.where and "knobs" in err.value.where
    assert err.value.fix and fix in err.value.fix


def test_protected_knob_file_is_an_error(tmp_path: Path) -> None:
    _write(tmp_path, "train.py", TRAIN)
    with pytest.raises(KnobError, match="protected"):
        discover_knobs(
            tmp_path, {"train.py:WEIGHT_DECAY": "float(0, 1)"}, ["train.py"], protected=["*.py"]
        )


def test_scope_may_be_given_as_globs(tmp_path: Path) -> None:
    _write(tmp_path, "src/train.py", "WD = 0.1\n")
    knobs = discover_knobs(tmp_path, {"src/train.py:WD": "float(0, 1)"}, ["src/**/*.py"])
    assert [k.key for k in knobs] == ["src/train.py:WD"]


def test_marker_errors_point_at_the_line(tmp_path: Path) -> None:
    _write(tmp_path, "a.py", "X = 1\nY = 2  # knob: int(5, 1)\n")
    with pytest.raises(KnobError, match="lo \\(5\\) must be smaller") as err:
        discover_knobs(tmp_path, {}, ["a.py"])
    assert err.value.where == "a.py:2"
    _write(tmp_path, "a.py", "Y = foo()  # knob: int(1, 5)\n")
    with pytest.raises(KnobError, match="not a single literal"):
        discover_knobs(tmp_path, {}, ["a.py"])
    _write(tmp_path, "a.py", "Y = 1  # knob: int(1, 5)\nY = 2  # knob: int(1, 5)\n")
    with pytest.raises(KnobError, match="marked twice"):
        discover_knobs(tmp_path, {}, ["a.py"])


def test_files_out_of_scope_are_not_scanned(tmp_path: Path) -> None:
    _write(tmp_path, "a.py", "X = 1  # knob: int(0, 3)\n")
    _write(tmp_path, "b.py", "Y = 1  # knob: int(0, 3)\n")
    assert [k.key for k in discover_knobs(tmp_path, {}, ["a.py"])] == ["a.py:X"]


# -- rewriting ------------------------------------------------------------------------------------


def test_rewrite_changes_only_the_value() -> None:
    text = TRAIN.replace("\n", "\r\n")
    out = rewrite(text, {"LR": 0.0315, "DEPTH": 7, "OPTIMIZER": "sgd", "WEIGHT_DECAY": 1e-05})
    before, after = text.split("\r\n"), out.split("\r\n")
    changed = {i: (b, a) for i, (b, a) in enumerate(zip(before, after, strict=True)) if a != b}
    assert changed == {
        3: ("LR = 0.02  # knob: log(1e-3, 1e-1)", "LR = 0.0315  # knob: log(1e-3, 1e-1)"),
        4: (
            "DEPTH: int = 4  # depth of the net; knob: int(1, 12)  (try deeper)",
            "DEPTH: int = 7  # depth of the net; knob: int(1, 12)  (try deeper)",
        ),
        5: ("WEIGHT_DECAY = 0.1", "WEIGHT_DECAY = 1e-05"),
        6: ("OPTIMIZER = 'adamw'", "OPTIMIZER = 'sgd'"),  # quote style kept
    }


def test_rewrite_keeps_indentation_and_prefers_the_marked_line() -> None:
    text = "class Cfg:\n    lr = 0.1\n\nif True:\n\tlr = 0.5   # knob: float(0, 1)\n"
    assert (
        rewrite(text, {"lr": 0.25})
        == "class Cfg:\n    lr = 0.1\n\nif True:\n\tlr = 0.25   # knob: float(0, 1)\n"
    )
    assert rewrite("class Cfg:\n    lr = 0.1\n", {"lr": 0.2}) == "class Cfg:\n    lr = 0.2\n"


def test_rewrite_ignores_lines_that_are_not_literal_assignments() -> None:
    text = "lr = compute()\nif lr == 1: pass\nf(lr=0.1,\n  x=2)\nlr = 3e-4  # the one\n"
    assert rewrite(text, {"lr": 0.5}) == text.replace("3e-4", "0.5")
    with pytest.raises(KnobError, match="no line assigning a literal to x"):
        rewrite("x = y\n", {"x": 1})


def test_rewrite_strings_keep_quotes_and_escape() -> None:
    assert rewrite('A = "x"  # c\n', {"A": 'say "hi"'}) == 'A = "say \\"hi\\""  # c\n'
    assert rewrite("A = 'x'\n", {"A": "it's"}) == 'A = "it\'s"\n'
    assert (
        rewrite('A = "a#b"  # knob: choice("a#b", "c")\n', {"A": "c"})
        == 'A = "c"  # knob: choice("a#b", "c")\n'
    )
    assert rewrite("A = None\n", {"A": "x"}) == 'A = "x"\n'


def test_rewrite_plain_files() -> None:
    yaml = "model:\n  act: gelu  # knob\n  on: True\nlr: 3.0e-4\nurl: http://x/#frag\n"
    out = rewrite(yaml, {"act": "relu", "on": False, "lr": 1e-05}, path="c.yaml")
    assert out == "model:\n  act: relu  # knob\n  on: False\nlr: 1.0e-05\nurl: http://x/#frag\n"
    assert rewrite(yaml, {"act": "yes"}, path="c.yaml").splitlines()[1] == '  act: "yes"  # knob'
    toml = 'name = "adam"\nflag = true\n'
    assert (
        rewrite(toml, {"name": "sgd", "flag": False}, path="p.toml")
        == 'name = "sgd"\nflag = false\n'
    )


def test_round_trip_over_random_values(tmp_path: Path) -> None:
    specs = {
        "LR": "log(1e-6, 10)",
        "WD": "float(-1, 1)",
        "STEP": "float(0.05, 2.05, 0.1)",
        "N": "int(-4, 60, 4)",
        "B": "logint(1, 4096)",
        "ACT": 'choice("gelu", "relu", None, True, 2.5)',
    }
    rng = random.Random(7)
    for path in ("k.py", "k.yaml", "k.toml"):
        sep = " = " if path != "k.yaml" else ": "
        start = {"LR": "0.01", "WD": "0", "STEP": "0.05", "N": "0", "B": "8", "ACT": '"gelu"'}
        text = "".join(f"{n}{sep}{v}  # keep me\n" for n, v in start.items())
        _write(tmp_path, path, text)
        # TOML has no null: a TOML knob may not offer None (test_none_among_the_choices_…).
        spaces = {**specs, "ACT": 'choice("gelu", "relu", True, 2.5)'} if path == "k.toml" else specs
        knobs = discover_knobs(tmp_path, {f"{path}:{n}": s for n, s in spaces.items()}, [path])
        for _ in range(100):
            values = {}
            for k in knobs:
                raw = (
                    rng.choice(k.space.choices)
                    if k.space.kind == "choice"
                    else rng.uniform(k.space.low, k.space.high)
                )
                values[k.name] = k.space.snap(raw)
            text = rewrite(text, values, path=path)
            for k in knobs:
                got = read_value(text, k)
                assert got == values[k.name] and type(got) is type(values[k.name]), (path, k.name)
            assert text.count("  # keep me\n") == len(specs)


def test_rewrite_makefile_assignments_keeps_the_operator() -> None:
    text = "A := 8  # knob: int(1, 9)\nB ?= 0.5\nC ::= 2\nD = 1\nE += 3\nF != echo 4\n"
    out = rewrite(text, {"A": 4, "B": 0.25, "C": 3, "D": 2}, path="lib/tuning.mk")
    assert out == "A := 4  # knob: int(1, 9)\nB ?= 0.25\nC ::= 3\nD = 2\nE += 3\nF != echo 4\n"
    for name in ("E", "F"):  # `+=` appends, `!=` runs a shell: neither sets a value
        with pytest.raises(KnobError, match=f"no line assigning a literal to {name}"):
            rewrite(text, {name: 1}, path="Makefile")


# -- Python: only real statements are knob lines ------------------------------------------------

# A form feed is a line break to str.splitlines but not to Python, an editor or git: the line
# numbers must agree with theirs.
DOCUMENTED = 'import os\n\x0c\n"""Example config:\nX = 1.0\n"""\nHELP = """\nY = 2  # knob: int(1, 9)\n"""\nX = 3.0\n'


def test_an_assignment_inside_a_string_literal_is_no_knob_line(tmp_path: Path) -> None:
    # The docstring's `X = 1.0` was the knob's line: every experiment edited the docstring.
    assert rewrite(DOCUMENTED, {"X": 5.0}) == DOCUMENTED.replace("X = 3.0", "X = 5.0")
    _write(tmp_path, "target.py", DOCUMENTED)
    (knob,) = discover_knobs(tmp_path, {"target.py:X": "float(0, 10)"}, ["target.py"])
    assert (knob.line, read_value(DOCUMENTED, knob)) == (9, 3.0)  # as `grep -n` counts
    # A `# knob:` marker inside a string is text: no knob, and no stray marker either.
    assert discover_knobs(tmp_path, {}, ["target.py"]) == []
    assert stray_markers(DOCUMENTED, "python") == []


def test_a_python_file_that_does_not_parse_is_read_line_by_line() -> None:
    broken = "X = 3.0\ndef (:\n"
    assert rewrite(broken, {"X": 4.0}) == broken.replace("3.0", "4.0")


def _tune_config(root: Path, knobs: str) -> Config:
    (root / "autoresearch.toml").write_text(
        'scope = ["target.py"]\n[verify]\ncommand = "true"\nbudget_seconds = 5\n'
        '[metric]\nname = "loss"\ndirection = "minimize"\n[proposer]\nname = "tune"\n'
        + knobs, encoding="utf-8")
    return load_config(root / "autoresearch.toml")


def test_none_among_the_choices_of_a_toml_knob_is_refused(tmp_path: Path) -> None:
    # TOML has no null: tune wrote `mode = null`, and every run crashed reading the file.
    _write(tmp_path, "conf.toml", 'mode = "x"  # knob: choice(None, "x")\n')
    config = _tune_config(tmp_path, "").model_copy(update={"scope": ["conf.toml"]})
    with pytest.raises(KnobError, match="offers None, which a TOML file cannot hold"):
        require_knobs(tmp_path, config)
    _write(tmp_path, "conf.yaml", 'mode: "x"  # knob: choice(None, "x")\n')  # YAML has null
    config = _tune_config(tmp_path, "").model_copy(update={"scope": ["conf.yaml"]})
    assert [k.name for k in require_knobs(tmp_path, config)] == ["mode"]


def test_a_knob_a_later_key_overrides_in_a_plain_file_is_refused(tmp_path: Path) -> None:
    # YAML (PyYAML), the shell, .env and make take the last: tune rewrote line 1 of
    # `lr: 0.1 / epochs: 3 / lr: 0.2`, and every experiment reran the same program.
    for name, text in (("conf.yaml", "lr: 0.1  # knob: float(0, 1)\nepochs: 3\nlr: 0.2\n"),
                       ("run.env", "LR=0.1  # knob: float(0, 1)\nLR=0.2\n")):
        _write(tmp_path, name, text)
        config = _tune_config(tmp_path, "").model_copy(update={"scope": [name]})
        with pytest.raises(KnobError) as info:
            require_knobs(tmp_path, config)
        assert f"is assigned at top level more than once in {name}" in str(info.value)
    # Not an override: a key under another section, a Makefile's `?=` (set only if unset), a
    # nested key of the same name, a TOML key (TOML refuses it twice in one table itself).
    for name, text in (("setup.cfg", "[a]\nlr = 0.1  # knob: float(0, 1)\n[b]\nlr = 0.2\n"),
                       ("tune.mk", "LR := 0.1  # knob: float(0, 1)\nLR ?= 0.2\n"),
                       ("conf.yaml", "lr: 0.1  # knob: float(0, 1)\nopt:\n  lr: 0.2\n"),
                       ("conf.toml", "lr = 0.1  # knob: float(0, 1)\n[b]\nlr = 0.2\n")):
        _write(tmp_path, name, text)
        config = _tune_config(tmp_path, "").model_copy(update={"scope": [name]})
        (knob,) = require_knobs(tmp_path, config)
        marked = next(i for i, line in enumerate(text.splitlines()) if "knob:" in line) + 1
        assert (knob.file, knob.line) == (name, marked), text


def test_a_knob_a_later_top_level_assignment_overrides_is_refused(tmp_path: Path) -> None:
    _write(tmp_path, "target.py", "BS = 32  # knob: int(8, 64)\nBS = 64\n")
    with pytest.raises(KnobError) as info:
        require_knobs(tmp_path, _tune_config(tmp_path, ""))
    message = str(info.value)
    assert "BS is assigned at top level more than once in target.py (lines 1 and 2)" in message
    assert "target.py:2" in message
    # The last assignment is the one that counts: a knob there is fine, and so is a later
    # assignment that is no literal (it may read the knob's value) or one inside a block, and a
    # knob on a function's local, which a global of the same name does not override.
    for text in ("BS = 32\nBS = 64  # knob: int(8, 64)\n",
                 "BS = 32  # knob: int(8, 64)\nBS = int(os.environ.get('BS', BS))\n",
                 "BS = 32  # knob: int(8, 64)\nif FAST:\n    BS = 64\n",
                 "def f():\n    BS = 32  # knob: int(8, 64)\n    return BS\nBS = 64\n"):
        _write(tmp_path, "target.py", text)
        (knob,) = require_knobs(tmp_path, _tune_config(tmp_path, ""))
        assert knob.name == "BS"
