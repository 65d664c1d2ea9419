"""Building an evaluation repository: commits with messages, a feature branch, labels."""

from __future__ import annotations

import os
import subprocess
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

_ENV = {"GIT_AUTHOR_NAME": "Dev", "GIT_AUTHOR_EMAIL": "dev@example.com",
        "GIT_COMMITTER_NAME": "Dev", "GIT_COMMITTER_EMAIL": "dev@example.com"}


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, env={**os.environ, **_ENV}, check=True,
                          capture_output=True, text=True).stdout.strip()


@dataclass(frozen=True)
class Bug:
    """A planted bug: where it is in the head revision and which categories name it."""

    path: str
    snippet: str  # the text of its (first) line in the head revision
    bug_class: str
    categories: frozenset[str]
    lines: int = 1  # how many lines from the snippet's line the bug spans


@dataclass
class Built:
    path: Path
    bugs: list[Bug] = field(default_factory=list)

    def locate(self, bug: Bug) -> tuple[int, int]:
        text = (self.path / bug.path).read_text().splitlines()
        for n, line in enumerate(text, 1):
            if bug.snippet in line:
                return n, n + bug.lines - 1
        raise ValueError(f"{bug.snippet!r} not in {bug.path}")


class RepoBuilder:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir(parents=True)
        git(path, "init", "-q", "-b", "main")

    def commit(self, message: str, files: dict[str, str]) -> None:
        for name, text in files.items():
            target = self.path / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(textwrap.dedent(text).lstrip("\n"))
        git(self.path, "add", "-A")
        git(self.path, "commit", "-qm", message)

    def feature(self, message: str, files: dict[str, str]) -> None:
        git(self.path, "checkout", "-qb", "feature")
        self.commit(message, files)
