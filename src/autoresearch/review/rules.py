"""The project's own review rules: REVIEW.md files, at the root and in any directory.

Like CLAUDE.md for reviews: the root REVIEW.md applies to every file, `src/api/REVIEW.md` to the
files under `src/api/`. They are read from the head revision (a change may add or edit its own
rules, and the reviewers see the rules the change will merge with).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import PurePosixPath

from autoresearch.review.change import Source

RULES_FILE = "REVIEW.md"
MAX_RULES_CHARS = 20_000  # per file: rules are a page, not a manual


@dataclass(frozen=True)
class RulesFile:
    directory: str  # "" for the root
    text: str

    @property
    def path(self) -> str:
        return f"{self.directory}/{RULES_FILE}" if self.directory else RULES_FILE

    def applies_to(self, path: str) -> bool:
        return not self.directory or path.startswith(self.directory + "/")


def collect_rules(source: Source, changed_paths: Iterable[str]) -> list[RulesFile]:
    """The REVIEW.md files that apply to any of the changed paths, root first."""
    directories: set[str] = {""}
    for path in changed_paths:
        parent = PurePosixPath(path).parent
        while str(parent) not in (".", ""):
            directories.add(str(parent))
            parent = parent.parent
    ordered = sorted(directories, key=lambda d: (d.count("/") + (1 if d else 0), d))
    wanted = [f"{d}/{RULES_FILE}" if d else RULES_FILE for d in ordered]
    source.prefetch(head=wanted)
    found: list[RulesFile] = []
    for directory, path in zip(ordered, wanted, strict=True):
        text = source.head_text(path)
        if text and text.strip():
            found.append(RulesFile(directory, text[:MAX_RULES_CHARS]))
    return found
