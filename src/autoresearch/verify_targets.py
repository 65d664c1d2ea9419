"""The verify command read for what it tells the user: the files it names (and which of them
look like the evaluation), and what its failures mean.

`init` protects the evaluation it can recognise, and `check` warns when the proposer may edit a
file the verify command runs: a proposer that can rewrite the script printing the metric can
"improve" it by printing a better number (a rewritten evaluate.py printing `acc: 1.0` was kept).
Both read the command the same way, here. The reading is a heuristic over the command's words,
never a shell: a word is a path when it could name a file, relative to a leading `cd DIR &&`.
"""

from __future__ import annotations

import json
import posixpath
import re
import shlex
import sys
from pathlib import Path

# The names people give the code that judges a run (eval.py, evaluate.py, score.py, scoring.py,
# metrics.py, bench.py, benchmark.py, test_model.py): matched on the file name's start.
_EVALUATION_NAME = re.compile(r"^(?:eval|score|scoring|metric|bench|test)", re.IGNORECASE)

# A word with one of these suffixes is a script even before it exists (init may run before the
# evaluation is written); any other word counts only when it names a file that exists.
SCRIPT_SUFFIXES = (".py", ".sh", ".bash", ".js", ".mjs", ".ts", ".rb", ".pl", ".jl", ".r", ".lua")

_SHELL_OPERATORS = {"&&", "||", ";", "|", "&", "(", ")", ";;", ">", ">>", "<", "2>", "2>&1"}


def looks_like_evaluation(path: str) -> bool:
    """Whether the file's name says it judges the run (eval*, score*, metric*, bench*, test*)."""
    return bool(_EVALUATION_NAME.match(posixpath.basename(path)))


def is_script_name(path: str) -> bool:
    return path.lower().endswith(SCRIPT_SUFFIXES)


def _words(command: str) -> list[str]:
    """The command's words, shell operators as words of their own; [] when it cannot be read."""
    text = command.replace("{python}", "python").replace("{seed}", "0")
    lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    try:
        return list(lexer)
    except ValueError:  # an unclosed quote: the shell would refuse it too, and check says so
        return []


def _relative(directory: str, word: str) -> str | None:
    """`word` as a path relative to where the command started, None when it leaves it."""
    if word.startswith(("/", "~", "$")) or "\\" in word:
        return None
    path = posixpath.normpath(posixpath.join(directory, word)) if directory else (
        posixpath.normpath(word))
    return None if path == "." or path.startswith("../") or path == ".." else path


def named_paths(command: str) -> list[str]:
    """Every word of `command` that could be a path, relative to the directory the command
    starts in (after a `cd DIR`), in order, without repeats. `python -m pkg.mod` names
    pkg/mod.py. Options, environment assignments and shell operators are skipped."""
    words = _words(command)
    directory = ""
    out: list[str] = []
    for i, word in enumerate(words):
        previous = words[i - 1] if i else ""
        if previous == "cd":
            directory = _relative(directory, word) or directory
            continue
        if previous == "-m" and re.fullmatch(r"[\w.]+", word):
            word = word.replace(".", "/") + ".py"
        if word in _SHELL_OPERATORS or word.startswith("-") or word == "cd" or (
                "=" in word and not word.startswith("=")):
            continue
        path = _relative(directory, word)
        if path is not None and path not in out:
            out.append(path)
    return out


def command_directory(command: str) -> str:
    """The directory (relative to where it starts) a command runs its script in: the last
    leading `cd DIR`'s, or "" for the starting directory itself."""
    directory = ""
    words = _words(command)
    for i, word in enumerate(words[:-1]):
        if word == "cd":
            directory = _relative(directory, words[i + 1]) or directory
    return directory


def named_files(command: str, files: set[str]) -> list[str]:
    """The words of `command` that name one of `files` (paths relative to the same place)."""
    return [path for path in named_paths(command) if path in files]


def protected_line(protected: list[str], added: list[str]) -> str:
    """The `protected = [...]` line that keeps what is protected and adds `added`."""
    values = [*protected, *(f for f in added if f not in protected)]
    return f"protected = {json.dumps(values)}"  # TOML basic strings share JSON's escaping


def _listed(paths: list[str], most: int = 5) -> str:
    return ", ".join(paths[:most]) + (f" and {len(paths) - most} more" if len(paths) > most else "")


def _when_nothing_is_protected(named: list[str], scope: list[str], suspects: list[str]) -> str:
    """The warning for an empty `protected` with no file the command runs in the scope. The
    line it suggests names files the proposer could edit: protecting a wrapper script outside
    the scope (run.sh running eval/evaluate.py) guards nothing and silences the warning."""
    from autoresearch.globs import select

    head = ("protected is empty: only autoresearch.toml, program.md and .gitignore are guarded, "
            "so a proposer may change whatever computes the metric and print a better score")
    outside = [f for f in named if not select([f], scope)]
    ran = (f"; the verify command runs {_listed(outside)}, outside the scope and so already safe "
           "from the proposer, but not what it calls in the scope") if outside else ""
    if suspects:
        them = "it" if len(suspects) == 1 else "them"
        looks = "looks like an evaluation by its" if them == "it" else "look like evaluations by their"
        return (f"{head}{ran}; in the scope, {_listed(suspects)} {looks} name\n"
                "  where: autoresearch.toml → protected\n  fix:   add the line "
                f"{protected_line([], suspects)} (and narrow the scope so it leaves {them} out)")
    return (f"{head}{ran}\n  where: autoresearch.toml → protected\n  fix:   add the line "
            + protected_line([], ["<the file that computes the metric>"]))


def unguarded_evaluation(command: str, scope: list[str], protected: list[str],
                         always_protected: list[str], tracked: list[str]) -> list[str]:
    """`check`'s warnings (each with its where and the exact line to write) when nothing is
    protected, for each file the command runs that the proposer may edit, and for the files in
    the scope whose names say they judge the run. Warnings, not refusals: the GPT template's
    command runs train.py, in scope by design, while its evaluation lives in the protected
    prepare.py; a file is named only when nothing is protected or its name says it judges."""
    from autoresearch.globs import select
    from autoresearch.guardrails import is_protected

    guarded = [*always_protected, *protected]
    named = named_files(command, set(tracked))
    editable = [f for f in named if select([f], scope) and not is_protected(f, guarded)]
    # Whatever the command runs, the evaluation may be a file it calls: a name that says so in
    # the scope is worth a warning even when something (a wrapper script, say) is protected.
    suspects = [f for f in select(tracked, scope) if looks_like_evaluation(f)
                and not is_protected(f, guarded) and f not in editable]
    if not protected and not editable:
        return [_when_nothing_is_protected(named, scope, suspects)]
    # With nothing protected, every file the command runs may be the evaluation.
    warnings = [f"{'protected is empty, and ' * (not protected)}the proposer may edit {path}, "
                "which the verify command runs: if it computes the metric, protect it: "
                f"{protected_line(protected, [path])} (and narrow the scope so it leaves it out)"
                "\n  where: autoresearch.toml → scope / protected"
                for path in editable if not protected or looks_like_evaluation(path)]
    if suspects:
        them, say = ("it", "name says it judges") if len(suspects) == 1 else (
            "them", "names say they judge")
        warnings.append(
            f"the proposer may edit {_listed(suspects)}, in the scope, whose {say} the run: if "
            f"the verify command reaches {them}, protect {them}: "
            f"{protected_line(protected, suspects)} (and narrow the scope so it leaves {them} "
            "out)\n  where: autoresearch.toml → scope / protected")
    return warnings


_MISSING_MODULE = re.compile(r"(?:ModuleNotFoundError|ImportError): (?:No module named )?(.*)")


def failure_hints(root: Path, command: str, output: str, *,
                  node_python: str | None = None) -> list[str]:
    """The interpreter `{python}` is, when the command could not import a module (the project's
    own environment is another one), and the shell, when `source` does not exist in it.

    `node_python`: the interpreter `{python}` is on the Ray node that made the run, when runs
    are made on a cluster. There the usual cause is another: the node gets neither the variables
    exported in the shell that started autoresearch (PYTHONPATH) nor the packages installed on
    this machine."""
    hints = []
    missing = _MISSING_MODULE.search(output)
    if missing and node_python is not None:
        module = missing.group(1).strip()
        ours = "{python}" in command
        named = f"{{python}} is {node_python} there" if ours else "with the node's interpreter"
        install = (f"{node_python} -m pip install <package>" if ours
                   else "pip install it for the interpreter the command runs there")
        hints.append(
            f"the command failed to import {module} on the Ray node ({named}): a run on a node "
            "gets neither the variables exported in the shell that started autoresearch "
            "(PYTHONPATH) nor the packages installed on this machine. Give the command what it "
            "needs under [verify] in autoresearch.toml (env = { PYTHONPATH = \"…\" }: only "
            "[verify] env travels to the nodes), and install the package that provides "
            f"{module} on every node: {install}")
    elif missing and "{python}" in command:
        venv = next((p for p in (root / ".venv/bin/python", root / "venv/bin/python")
                     if p.exists()), None)
        interpreter = str(venv) if venv else "/path/to/venv/bin/python"
        hints.append(
            f"the command failed to import {missing.group(1).strip()}: {{python}} is "
            f"{sys.executable}, the interpreter running autoresearch, not your project's. Name "
            f"the interpreter that has your packages, under [verify] in autoresearch.toml: "
            f"command = {json.dumps(command.replace('{python}', interpreter))}")
    if re.search(r"\bsource: (?:not found|command not found)", output):
        hints.append(
            "the verify command runs under /bin/sh, which has no `source`: write `. "
            "venv/bin/activate && …` instead, or run it in bash: command = \"bash -c '…'\"")
    return hints
