"""`autoresearch init --template NAME`: copy a whole project (its code, autoresearch.toml and
program.md) into the repository.

Run from a subdirectory of a repository (a monorepo), the template's code goes where init ran
and autoresearch.toml and program.md go to the root, where every command reads them: the
config's scope, protected globs and knob files are then prefixed with the subdirectory and its
command runs as `cd <sub> && ...`, as a generated config's are (scaffold_paths.rebase).
"""

from __future__ import annotations

import posixpath
import re
import shutil
from importlib import resources
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from autoresearch.config import CONFIG_NAME, PROGRAM_NAME, load_config
from autoresearch.errors import ConfigError
from autoresearch.metric_discovery import toml_literal
from autoresearch.scaffold_paths import Paths, rebase

__all__ = ["TEMPLATES", "copy_template"]

TEMPLATES = ("gpt",)

# The files every command reads at the repository root, wherever the template's code goes.
AT_ROOT = (CONFIG_NAME, PROGRAM_NAME)


def copy_template(root: Path, name: str, force: bool, here: Path | None = None,
                  console: Console | None = None) -> list[Path]:
    """Copy template `name` into the repository at `root`; its code into `here` when that is a
    subdirectory of `root`. Every conflict is named before any file is written."""
    if name not in TEMPLATES:
        raise ConfigError(f"unknown template {name!r}", where="--template",
                          fix=f"choose one of: {', '.join(TEMPLATES)}")
    subdirectory = _subdirectory(root, here)
    source = resources.files("autoresearch") / "templates" / name
    with resources.as_file(source) as src_dir:
        files = [path for path in sorted(Path(src_dir).rglob("*"))
                 if not path.is_dir() and "__pycache__" not in path.parts]
        targets = {path: _target(root, subdirectory, path.relative_to(src_dir).as_posix())
                   for path in files}
        # Every conflict before any file is written: stopping at the first one left the files
        # before it behind, and the next attempt then refused the template's own config.
        existing = [str(target.relative_to(root)) for target in targets.values()
                    if target.exists()]
        if existing and not force:
            raise ConfigError(
                f"the {name} template would overwrite {len(existing)} file(s) that already "
                f"exist: {', '.join(existing)}", where=str(root),
                fix=f"use --force to overwrite them all, or run `init --template {name}` in a "
                "new directory (git init it first); nothing was written")
        for path, target in targets.items():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
    if subdirectory:
        note = _relocate_config(root / CONFIG_NAME, subdirectory, root)
        if console is not None:
            console.print(escape(note))
    return list(targets.values())


def _subdirectory(root: Path, here: Path | None) -> str:
    """`here` relative to `root` ('' at the root or outside it)."""
    if here is None:
        return ""
    try:
        sub = here.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return ""
    return "" if sub in ("", ".") else sub


def _target(root: Path, subdirectory: str, relative: str) -> Path:
    if relative in AT_ROOT or not subdirectory:
        return root / relative
    return root / subdirectory / relative


def _relocate_config(config_path: Path, subdirectory: str, root: Path) -> str:
    """Rewrite the template's config for code that lives in `subdirectory`; the note to show."""
    config = load_config(config_path)
    moved = rebase(Paths(scope=list(config.scope), protected=list(config.protected),
                         command=config.verify.command), subdirectory, root)
    text = config_path.read_text(encoding="utf-8")
    for key, value in (("scope", moved.scope), ("protected", moved.protected)):
        text = _set_value(text, key, "[" + ", ".join(toml_literal(v) for v in value) + "]")
    text = _set_value(text, "command", toml_literal(moved.command))
    # Knob keys name a file ("train.py:DEPTH"): the file is now below the subdirectory.
    text = re.sub(r'^"([^":]+):', lambda m: f'"{posixpath.join(subdirectory, m.group(1))}:',
                  text, flags=re.MULTILINE)
    config_path.write_text(text, encoding="utf-8")
    load_config(config_path)  # what was written must load
    return moved.notes[-1]


def _set_value(text: str, key: str, value: str) -> str:
    """Replace the one uncommented `key = ...` line of the template's config."""
    pattern = re.compile(rf"^{re.escape(key)} = .*$", re.MULTILINE)
    if len(pattern.findall(text)) != 1:
        raise ConfigError(f"the template's {CONFIG_NAME} has no single `{key} = ...` line to "
                          "rewrite for a subdirectory", where=CONFIG_NAME,
                          fix="run `init --template` at the repository root")
    return pattern.sub(lambda _: f"{key} = {value}", text, count=1)
