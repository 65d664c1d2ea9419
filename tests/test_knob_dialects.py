"""Knob values written in each file type's own syntax and read back by that type's own reader
(configparser, tomllib, PyYAML, make, a shell): a string the file holds bare stays bare, a key
under two sections is named by its section, and an INI file's `;` comment carries a marker."""

from __future__ import annotations

import configparser
import random
import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml  # PyYAML: optuna's own dependency, so always installed beside autoresearch

from autoresearch.proposers.knob_discovery import discover_knobs, require_knobs
from autoresearch.proposers.knob_lines import Site, find_site
from autoresearch.proposers.knob_report import describe_knobs
from autoresearch.proposers.knob_space import parse_knob_spec
from autoresearch.proposers.knobs import Knob, KnobError, read_value, rewrite
from tests.conftest import git, make_repo, run_cli
from tests.test_knob_inputs import flat, tune_config

# Strings a user may offer as choices, many of them special to one reader or another.
AWKWARD = ["-O3", "-march=native", "/usr/lib/x", "gpt2-medium", "cuda:0", "a b", "100%",
           "x;y", "x#y", "a #b", "a ;b", "#a", ";a", " a", "a ", "", "yes", "No", "on", "y",
           "true", "False", "null", "~", "none", "1.5", "1_000", "0x10", "-1", "+1", ".5",
           "-.5", ".inf", "-.inf", ".NaN", "2024-01-01", "1:30", "a: b", "a:", ":a", "=", "<<",
           "*a", "&a", "!a", "%a", "@a", "`a", "[a]", "{a}", "a,b", "- a", "-", "?a", "?",
           "it's", 'say "hi"', "a\\b", "a$b", "$(CC)", "a`b`", "é", "a\tb", "a\nb", "a  b"]
ALPHABET = "aZ09 -_.:;#,'\"`$%&*!?@=/\\[]{}()~<>|+\t"


def random_strings(seed: int, n: int) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice(ALPHABET) for _ in range(rng.randint(1, 6))) for _ in range(n)]


def ini_value(text: str, section: str, key: str) -> str:
    """What Python's configparser reads, told to take inline `#` and `;` comments as comments
    (without `inline_comment_prefixes` it reads them as part of the value)."""
    parser = configparser.ConfigParser(inline_comment_prefixes=("#", ";"), interpolation=None)
    parser.read_string(text)
    return parser[section][key]


# -- 1. a string stays bare where the file writes it bare ------------------------------------


def test_ini_and_makefile_strings_are_written_bare_as_the_line_has_them() -> None:
    # tune wrote `cflags = "-O3"` and `OPT := "-O3"`: configparser and make keep the quotes, and
    # every candidate crashed (`cc "-O3"`).
    ini = '[build]\ncflags = -O1  # knob: choice("-O0", "-O1", "-O2", "-O3")\n'
    out = rewrite(ini, {"cflags": "-O3"}, path="build.ini")
    assert out == ini.replace("-O1  #", "-O3  #")
    assert ini_value(out, "build", "cflags") == "-O3"
    make = "OPT := -O1  # knob: choice(-O0, -O1, -O2, -O3)\n"
    assert rewrite(make, {"OPT": "-O3"}, path="Makefile") == make.replace("-O1  #", "-O3  #")
    # A quoted value keeps its quotes: the program reading it strips them itself.
    assert rewrite('[b]\nname = "adam"\n', {"name": "sgd"}, path="a.ini") == '[b]\nname = "sgd"\n'


def test_an_ini_value_reads_back_through_configparser_or_is_refused() -> None:
    text = "[build]\ncflags = -O1  # knob: choice(-O1)\nother = 1\n"
    knob = Knob("build.ini", "cflags", parse_knob_spec("choice(-O1)"), 2, "marker")
    written = 0
    for value in AWKWARD + random_strings(1, 400):
        try:
            out = rewrite(text, {"cflags": value}, path="build.ini")
        except ValueError as exc:  # quotes would be part of the value: nothing can be written
            assert "quoting would not help in an INI file" in str(exc)
            continue
        assert ini_value(out, "build", "cflags") == value, out
        assert ini_value(out, "build", "other") == "1"
        # tune reads the same value back, and still sees the marker after it.
        assert read_value(out, knob) == value, out
        assert find_site(out, "cflags", "ini") == Site(
            1, "cflags", "build.cflags", "cflags = ", value, "  # knob: choice(-O1)\n",
            "choice(-O1)"), out
        written += 1
    assert written > 100  # most values are written, not refused


@pytest.mark.parametrize("value", ["-O3", "-march=native", "a b", "cuda:0", "x;y", "100%"])
def test_values_an_ini_file_holds_bare_are_written(value: str) -> None:
    out = rewrite("[b]\nk = x  ; a comment\n", {"k": value}, path="setup.cfg")
    assert out == f"[b]\nk = {value}  ; a comment\n"
    assert ini_value(out, "b", "k") == value


@pytest.mark.parametrize("value", ["a ;b", "a #b", " a", "1.5", "true", "it's", ""])
def test_values_no_ini_line_can_hold_are_refused(value: str) -> None:
    with pytest.raises(ValueError, match="quoting would not help in an INI file"):
        rewrite("[b]\nk = x\n", {"k": value}, path="setup.cfg")


def test_a_yaml_value_reads_back_through_pyyaml() -> None:
    text = "model:\n  act: gelu  # knob: choice(gelu)\n  width: 8\n"
    knob = Knob("conf.yaml", "act", parse_knob_spec("choice(gelu)"), 2, "marker")
    bare = 0
    for value in AWKWARD + random_strings(2, 400):
        out = rewrite(text, {"act": value}, path="conf.yaml")
        assert yaml.safe_load(out) == {"model": {"act": value, "width": 8}}, out
        assert out.splitlines()[1].endswith("  # knob: choice(gelu)"), out
        assert read_value(out, knob) == value
        bare += out.splitlines()[1].startswith(f"  act: {value}  #")
    assert bare > 50  # not everything quoted


@pytest.mark.parametrize(("value", "written"), [
    ("-O3", "-O3"), ("cuda:0", "cuda:0"), ("a b", "a b"), ("/usr/lib", "/usr/lib"),
    ("yes", '"yes"'), ("on", '"on"'), ("1.5", '"1.5"'), ("2024-01-01", '"2024-01-01"'),
    ("1:30", '"1:30"'), ("a: b", '"a: b"'), (".inf", '".inf"'), ("-1", '"-1"'), ("=", '"="'),
    ("*a", '"*a"'), ("- a", '"- a"'), ("a #b", '"a #b"')])
def test_yaml_keeps_a_plain_scalar_bare_and_quotes_what_would_read_as_another_type(
        value: str, written: str) -> None:
    assert rewrite("opt: fast\n", {"opt": value}, path="c.yml") == f"opt: {written}\n"


def test_a_env_value_reads_back_through_a_shell_or_is_refused(tmp_path: Path) -> None:
    knob = Knob("run.env", "OPT", parse_knob_spec("choice(-O1)"), 1, "marker")
    # A line written bare or in double quotes takes the same values.
    lines = ("OPT=-O1  # knob: choice(-O1)\nN=1\n", 'OPT="-O1"  # knob: choice(-O1)\nN=1\n')
    values = [v for v in AWKWARD + random_strings(3, 150) for _ in lines]
    files = []
    for i, value in enumerate(values):
        text = lines[i % 2]
        try:
            out = rewrite(text, {"OPT": value}, path="run.env")
        except ValueError as exc:
            assert "cannot be written in a .env file" in str(exc)
            # Single quotes would have held it, but for a `'` or a backslash (an escape to
            # tune's reading of a quoted string).
            assert "'" in value or "\\" in value or not value.isprintable(), value
            assert any(c in value for c in "$`") or not value.isprintable(), value
            continue
        assert read_value(out, knob) == value, out
        (tmp_path / f"{i}.env").write_text(out, encoding="utf-8")
        files.append(i)
    # One shell reads them all, each value ended by a NUL (no value holds one).
    script = "".join(f'. ./{i}.env; printf "%s\\0" "$OPT"; ' for i in files)
    shell = subprocess.run(["sh", "-c", script], cwd=tmp_path, capture_output=True, text=True,
                           check=True)
    assert shell.stdout.split("\0")[:-1] == [values[i] for i in files]
    assert len(files) > 100


def test_a_makefile_value_reads_back_through_make_or_is_refused(tmp_path: Path) -> None:
    # `$` aside: make expands it, as the user who offers `$(CC)` means it to.
    values = [v for v in AWKWARD + random_strings(4, 200) + ["a\\"] if "$" not in v]
    knob = Knob("tuning.mk", "OPT", parse_knob_spec("choice(-O1)"), 1, "marker")
    # With a comment after the value (make keeps the two spaces before it) and without one
    # (where a trailing backslash would continue the line).
    for text, after in (("OPT := -O1  # knob: choice(-O1)\n", "  "), ("OPT := -O1\nX := 1\n", "")):
        written = []
        for value in values:
            try:
                out = rewrite(text, {"OPT": value}, path="tuning.mk")
            except ValueError as exc:
                assert "quoting would not help in a Makefile" in str(exc)
                continue
            written.append(value)
            assert read_value(out, knob) == value, out
            (tmp_path / f"{len(written)}.mk").write_text(out, encoding="utf-8")
        # One make reads them all.
        makefile = "".join(f"include {i}.mk\n$(info <$(OPT)>)\n"
                           for i in range(1, len(written) + 1))
        (tmp_path / "Makefile").write_text(makefile + "all:\n\t@:\n", encoding="utf-8")
        made = subprocess.run(["make", "-s"], cwd=tmp_path, capture_output=True, text=True,
                              check=True)
        assert made.stdout.splitlines() == [f"<{v}{after}>" for v in written]
        assert len(written) > 50


def test_toml_strings_stay_quoted_and_read_back_through_tomllib() -> None:
    text = '[opt]\nname = "adam"  # knob: choice(adam, -O3)\nlevel = 3\n'
    for value in ("-O3", "yes", 'say "hi"', "a\\b", "é"):
        out = rewrite(text, {"name": value}, path="p.toml")
        assert tomllib.loads(out) == {"opt": {"name": value, "level": 3}}
    out = rewrite(text, {"level": "fast"}, path="p.toml")  # a bare number: TOML quotes strings
    assert tomllib.loads(out)["opt"]["level"] == "fast"


def test_a_choice_a_bare_line_cannot_hold_is_refused_when_the_knob_is_read(
        tmp_path: Path) -> None:
    # It failed only when tune proposed it, mid-session; `check` says it now.
    (tmp_path / "tuning.mk").write_text('OPT := -O1  # knob: choice(-O1, "-O2 #fast")\n')
    with pytest.raises(KnobError) as info:
        discover_knobs(tmp_path, {}, ["tuning.mk"])
    err = info.value
    assert err.what.startswith("knob 'tuning.mk:OPT': its choice '-O2 #fast' cannot be written on "
                               "line 1 of tuning.mk:"), err.what
    assert "make keeps quotes as part of the value" in err.what
    assert err.where == "tuning.mk:1"
    assert err.fix is not None and err.fix.startswith("drop '-O2 #fast' from the choices")
    # A number offered as a string: written bare it is the number, which the ledger would not
    # record as the string.
    (tmp_path / "build.ini").write_text("[b]\nscale = 1\n")
    with pytest.raises(KnobError) as info:
        discover_knobs(tmp_path, {"build.ini:scale": 'choice("1", "1.5")'}, ["build.ini"])
    assert "written bare it reads back as 1, not the string '1'" in info.value.what
    assert info.value.fix == "offer it as 1, without quotes in choice(...)"


def test_a_makefile_and_an_ini_file_tuned_end_to_end_build_with_bare_flags(
        tmp_path: Path) -> None:
    # The tester's build: every candidate crashed on `cc "-O3"`. Here the build refuses any
    # quote, as cc did, and scores the optimisation level: tune must find -O3 on both knobs.
    build = ("import configparser, sys\n"
             "ini = configparser.ConfigParser(inline_comment_prefixes=('#', ';'))\n"
             "ini.read('build.ini')\n"
             "flags = [ini['build']['cflags'], sys.argv[1]]\n"
             "if any(f not in ('-O0', '-O1', '-O2', '-O3') for f in flags):\n"
             "    sys.exit(f'cannot find {flags}')\n"
             "print('METRIC loss=%d' % sum(3 - int(f[2]) for f in flags))\n")
    makefile = (f"OPT := -O1  # knob: choice(-O0, -O1, -O2, -O3)\nall:\n"
                f"\t@{sys.executable} build.py $(OPT)\n")
    config = "\n".join([
        'scope = ["Makefile", "build.ini"]', 'protected = ["build.py"]', "[verify]",
        'command = "make -s"', "budget_seconds = 5", "[metric]", 'name = "loss"',
        'direction = "minimize"', 'format = "metric-line"', "[decision]", "deterministic = true",
        "[proposer]", 'name = "tune"', "seed = 2", ""])
    repo = make_repo(tmp_path / "repo", {
        "Makefile": makefile, "build.py": build, "autoresearch.toml": config,
        "build.ini": '[build]\ncflags = -O1  # knob: choice("-O0", "-O1", "-O2", "-O3")\n'})
    run = run_cli(repo, "run", "--tag", "t", "--iterations", "8")
    assert run.returncode == 0, run.stdout + run.stderr
    tried = git(repo, "log", "--all", "-p", "--format=", "--", "Makefile", "build.ini")
    added = [line[1:] for line in tried.splitlines()
             if line.startswith(("+OPT", "+cflags"))]
    assert len(added) >= 4, tried
    assert all('"' not in line.split("#")[0] for line in added), added
    rows = (repo / ".autoresearch" / "sessions" / "t" / "results.tsv").read_text().splitlines()
    assert not [row for row in rows if "\tcrash\t" in row], rows
    described = " ".join(rows)
    assert "OPT -O1 → -O" in described and '"-O' not in described, described


# -- 2. a key under two sections -----------------------------------------------------------------

TWO_YAML = "train:\n  lr: 0.1\n  epochs: 3\nfinetune:\n  lr: 0.01  # the small one\n"


def test_a_yaml_key_under_two_sections_is_refused_unless_named_by_its_section(
        tmp_path: Path) -> None:
    # "cfg.yaml:lr" edited train's lr without a word; "cfg.yaml:finetune.lr" was refused.
    (tmp_path / "cfg.yaml").write_text(TWO_YAML)
    with pytest.raises(KnobError) as info:
        discover_knobs(tmp_path, {"cfg.yaml:lr": "log(1e-4, 1)"}, ["cfg.yaml"])
    err = info.value
    assert err.what == ("knob 'cfg.yaml:lr': cfg.yaml has lr under more than one section: "
                        "train.lr (line 2) and finetune.lr (line 5); tune cannot tell which one "
                        "you mean")
    assert err.fix == ('name it with its section, e.g. "cfg.yaml:finetune.lr" = "log(1e-4, 1)", '
                       "or end the intended line with a marker (`# knob: log(1e-4, 1)`) and "
                       "remove this entry")
    (knob,) = discover_knobs(tmp_path, {"cfg.yaml:finetune.lr": "log(1e-4, 1)"}, ["cfg.yaml"])
    assert (knob.key, knob.line, read_value(TWO_YAML, knob)) == ("cfg.yaml:finetune.lr", 5, 0.01)
    out = rewrite(TWO_YAML, {"finetune.lr": 0.003, "train.epochs": 5}, path="cfg.yaml")
    assert yaml.safe_load(out) == {"train": {"lr": 0.1, "epochs": 5},
                                   "finetune": {"lr": 0.003}}
    assert out.endswith("  lr: 0.003  # the small one\n")
    # A marker on one of them makes the bare name clear again.
    marked = TWO_YAML.replace("# the small one", "# knob: log(1e-4, 1)")
    (tmp_path / "cfg.yaml").write_text(marked)
    (knob,) = discover_knobs(tmp_path, {"cfg.yaml:lr": "log(1e-5, 1)"}, ["cfg.yaml"])
    assert (knob.line, knob.source) == (5, "config")


def test_a_deeper_yaml_path_and_a_top_level_key_of_the_same_name(tmp_path: Path) -> None:
    text = ("lr: 0.5\nmodel:\n  optim:\n    lr: 0.1\n    name: adam\n  head:\n    lr: 0.2\n"
            "---\nlr: 7\n")
    out = rewrite(text, {"model.optim.lr": 0.3, "model.head.lr": 0.4, "lr": 0.6}, path="c.yaml")
    first, second = yaml.safe_load_all(out)
    assert first == {"lr": 0.6, "model": {"optim": {"lr": 0.3, "name": "adam"},
                                          "head": {"lr": 0.4}}}
    assert second == {"lr": 7}


@pytest.mark.parametrize(("file", "text", "read"), [
    ("setup.cfg", "[train]\nlr = 0.1\n[finetune]\nlr = 0.01\n",
     lambda out: ini_value(out, "finetune", "lr")),
    ("params.toml", "[train]\nlr = 0.1\n[finetune]\nlr = 0.01\n",
     lambda out: str(tomllib.loads(out)["finetune"]["lr"])),
    ("params.toml", "[ model . finetune ]\nlr = 0.01\n[train]\nlr = 0.1\n",
     lambda out: str(tomllib.loads(out)["model"]["finetune"]["lr"])),
])
def test_an_ini_or_toml_key_under_two_sections_is_named_by_its_section(
        tmp_path: Path, file: str, text: str, read: Callable[[str], str]) -> None:
    (tmp_path / file).write_text(text)
    with pytest.raises(KnobError, match="has lr under more than one section"):
        discover_knobs(tmp_path, {f"{file}:lr": "float(0, 1)"}, [file])
    path = "model.finetune.lr" if "model" in text else "finetune.lr"
    (knob,) = discover_knobs(tmp_path, {f"{file}:{path}": "float(0, 1)"}, [file])
    assert read_value(text, knob) == 0.01
    out = rewrite(text, {path: 0.25}, path=file)
    assert read(out) == "0.25"
    assert out.count("0.1\n") == 1  # train's lr untouched


def test_a_marker_on_a_nested_key_wins_over_a_top_level_key_of_its_name(tmp_path: Path) -> None:
    text = "lr: 0.5\nmodel:\n  lr: 0.1  # knob: float(0, 1)\n"
    (tmp_path / "c.yaml").write_text(text)
    (knob,) = discover_knobs(tmp_path, {}, ["c.yaml"])
    assert (knob.key, knob.line, read_value(text, knob)) == ("c.yaml:lr", 3, 0.1)
    assert yaml.safe_load(rewrite(text, {"lr": 0.2}, path="c.yaml")) == {
        "lr": 0.5, "model": {"lr": 0.2}}


def test_a_contract_entry_naming_a_marked_line_by_its_path_replaces_the_marker(
        tmp_path: Path) -> None:
    # Two knobs on one line ("cfg.yaml:lr" from the marker, "cfg.yaml:finetune.lr" from the
    # contract) would each set the value.
    (tmp_path / "cfg.yaml").write_text(TWO_YAML.replace("# the small one", "# knob: float(0, 1)"))
    knobs = discover_knobs(tmp_path, {"cfg.yaml:finetune.lr": "log(1e-4, 1)"}, ["cfg.yaml"])
    assert [(k.key, k.line, k.source) for k in knobs] == [("cfg.yaml:finetune.lr", 5, "config")]


# -- 3. an INI file's `;` comment -------------------------------------------------------------


def test_an_ini_semicolon_comment_carries_a_knob_marker(tmp_path: Path) -> None:
    # `timeout: 30  ; knob: int(1, 60)` was neither a knob nor named among ignored markers.
    text = "[run]\ntimeout: 30  ; knob: int(1, 60)\nname = x;y\n"
    (tmp_path / "run.ini").write_text(text)
    (knob,) = discover_knobs(tmp_path, {}, ["run.ini"])
    assert (knob.key, knob.line, str(knob.space)) == ("run.ini:timeout", 2, "int(1, 60)")
    out = rewrite(text, {"timeout": 45}, path="run.ini")
    assert out == text.replace("30", "45")
    assert ini_value(out, "run", "timeout") == "45"
    assert ini_value(out, "run", "name") == "x;y"  # no space before `;`: part of the value


def test_a_semicolon_marker_where_semicolons_are_no_comment_is_named(tmp_path: Path) -> None:
    (tmp_path / "conf.yaml").write_text("timeout: 30  ; knob: int(1, 60)\n")
    with pytest.raises(KnobError) as info:
        require_knobs(tmp_path, tune_config(tmp_path, ["conf.yaml"]))
    err = info.value
    assert ("the `; knob:` marker at conf.yaml:1 is no comment: in a YAML file `;` is part of "
            "the value (only an INI file's `;` starts a comment)") in err.what
    assert err.fix == "write the marker after `#` instead: `KEY: value  # knob: ...`"
    (tmp_path / "conf.yaml").write_text("timeout: 30  ; knob: int(1, 60)\nlr: 0.1  # knob: "
                                        "float(0, 1)\n")
    knobs = require_knobs(tmp_path, tune_config(tmp_path, ["conf.yaml"]))
    assert describe_knobs(knobs, tmp_path, ["conf.yaml"]) == (
        "1 knob(s): conf.yaml:lr; 1 `# knob:` marker(s) ignored: conf.yaml:1 (`;` starts no "
        "comment in a YAML file: write `# knob:`)")


def test_check_accepts_a_semicolon_marker_in_an_ini_file(tmp_path: Path) -> None:
    config = "\n".join(['scope = ["run.ini"]', "[verify]", 'command = "true"',
                        "budget_seconds = 5", "[metric]", 'name = "loss"',
                        'direction = "minimize"', "[proposer]", 'name = "tune"', ""])
    repo = make_repo(tmp_path / "repo", {"run.ini": "[run]\ntimeout = 30 ; knob: int(1, 60)\n",
                                         "autoresearch.toml": config})
    check = run_cli(repo, "check")
    assert "1 knob(s): run.ini:timeout" in flat(check.stdout), check.stdout + check.stderr
