"""What git history says about the files a change touches: fix commits and what they removed.

One `git log -p` over the touched files (newest first, up to `max_commits`) yields every commit
that changed them; those whose message says fix, bug, revert, regression or security are *fix
commits*, and the lines they removed are remembered. The history reviewer asks three questions
with it (a line coming back that a fix removed, a line a fix added going away, a region that fix
after fix has touched), and the LLM reviewers get the same facts as context.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from autoresearch.review.gitio import run_git

FIX_MESSAGE = re.compile(
    r"\b(fix(e[sd]|ing)?|bug(fix)?|hotfix|revert(s|ed)?|regression|security|vulnerab\w*|"
    r"cve-\d{4}-\d+)\b", re.IGNORECASE)

# Lines too generic to say anything when they come back ("return None", "else:", "}").
_MIN_SIGNIFICANT = 12
_GENERIC = re.compile(r"^(?:[\W_]*|(?:return|pass|break|continue|else|try|finally|except|end|"
                      r"raise|default|yield|await)\b[\s\w:;(){}]{0,8})$")


# A research session's own commits carry this trailer: their messages are hypotheses ("fix the
# warmup"), not bug fixes, so they never count as fix commits (the review gate reads them).
EXPERIMENT_TRAILER = "Experiment-Id:"


def is_fix_message(subject: str, body: str = "") -> bool:
    if EXPERIMENT_TRAILER in body:
        return False
    return bool(FIX_MESSAGE.search(subject) or FIX_MESSAGE.search(body))


def normalize(line: str) -> str:
    """A line with its whitespace collapsed (so re-indented code still matches)."""
    return " ".join(line.split())


def significant(line: str) -> bool:
    text = normalize(line)
    return len(text) >= _MIN_SIGNIFICANT and not _GENERIC.match(text) and \
        not text.startswith(("#", "//", "import ", "from ")) and any(c.isalnum() for c in text)


@dataclass(frozen=True)
class PastCommit:
    sha: str
    subject: str
    is_fix: bool

    @property
    def short(self) -> str:
        return self.sha[:10]


@dataclass(frozen=True)
class FixRemoval:
    commit: PastCommit
    path: str
    line: str  # as the fix commit removed it


class History:
    """Fix commits of the touched files, read once per review."""

    def __init__(self, root: Path, base_rev: str | None, paths: Sequence[str],
                 max_commits: int) -> None:
        self.root = root
        self.base_rev = base_rev
        self.commits_by_path: dict[str, list[PastCommit]] = defaultdict(list)
        self.removed_by_fix: dict[tuple[str, str], FixRemoval] = {}
        self.fix_removals_by_path: dict[str, list[FixRemoval]] = defaultdict(list)
        self.experiments: set[str] = set()  # research-session commits seen in the scan
        self.scanned = 0
        if base_rev is not None and paths and max_commits > 0:
            self._scan(paths, max_commits)

    def _scan(self, paths: Sequence[str], max_commits: int) -> None:
        assert self.base_rev is not None
        out = run_git(
            self.root, "log", "-p", "--unified=0", "--no-color", "--no-ext-diff", "--no-merges",
            "--no-renames", f"--max-count={max_commits}", "--format=%x1e%H%x1f%s%x1f%b%x1f",
            self.base_rev, "--", *paths, check=False)
        for record in out.split("\x1e")[1:]:
            sha, subject, body, patch = (record.split("\x1f", 3) + ["", "", ""])[:4]
            commit = PastCommit(sha.strip(), subject.strip(), is_fix_message(subject, body))
            if EXPERIMENT_TRAILER in body:
                self.experiments.add(commit.sha)
            self.scanned += 1
            self._read_patch(commit, patch)

    def _read_patch(self, commit: PastCommit, patch: str) -> None:
        path: str | None = None
        in_header = True
        for line in patch.splitlines():
            if line.startswith("diff --git "):
                in_header, path = True, None
                continue
            if in_header:
                if line.startswith("--- a/"):
                    path = line[6:]
                elif line.startswith("+++ b/"):
                    path = line[6:]
                    self.commits_by_path[path].append(commit)
                elif line.startswith("@@"):
                    in_header = False
                continue
            if line.startswith("@@"):
                continue
            if commit.is_fix and path and line.startswith("-") and significant(line[1:]):
                key = (path, normalize(line[1:]))
                if key not in self.removed_by_fix:  # newest first: keep the latest fix
                    removal = FixRemoval(commit, path, line[1:])
                    self.removed_by_fix[key] = removal
                    self.fix_removals_by_path[path].append(removal)

    def fix_commits(self, path: str) -> list[PastCommit]:
        return [c for c in self.commits_by_path.get(path, []) if c.is_fix]

    def blame(self, path: str, lines: Sequence[int]) -> dict[int, PastCommit]:
        """The commit that last changed each of `lines` of `path` at the base revision."""
        if self.base_rev is None or not lines:
            return {}
        ranges: list[str] = []
        for start, end in _runs(sorted(set(lines))):
            ranges += ["-L", f"{start},{end}"]
        out = run_git(self.root, "blame", "--line-porcelain", *ranges, self.base_rev, "--", path,
                      check=False)
        found: dict[int, PastCommit] = {}
        sha, final, subject = "", 0, ""
        for line in out.splitlines():
            parts = line.split(" ")
            if len(parts) >= 3 and len(parts[0]) in (40, 64) and parts[1].isdigit():
                sha, final = parts[0], int(parts[2])
            elif line.startswith("summary "):
                subject = line[8:]
            elif line.startswith("\t") and sha:
                found[final] = PastCommit(sha, subject, sha not in self.experiments
                                          and is_fix_message(subject))
        return found

    def region_commits(self, path: str, start: int, end: int, limit: int = 40) -> list[PastCommit]:
        """Every commit that changed lines start..end of `path` (as the base has them)."""
        if self.base_rev is None:
            return []
        out = run_git(self.root, "log", "-s", f"--max-count={limit}",
                      "--format=%x1e%H%x1f%s%x1f%b", "-L", f"{start},{end}:{path}",
                      self.base_rev, check=False)
        commits = []
        for record in out.split("\x1e")[1:]:
            sha, subject, body = (record.split("\x1f", 2) + ["", ""])[:3]
            commits.append(PastCommit(sha.strip(), subject.strip(),
                                      is_fix_message(subject, body)))
        return commits


def _runs(numbers: Sequence[int]) -> list[tuple[int, int]]:
    """Consecutive runs of sorted numbers: [1,2,3,7,8] -> [(1,3),(7,8)]."""
    runs: list[tuple[int, int]] = []
    for n in numbers:
        if runs and n == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], n)
        else:
            runs.append((n, n))
    return runs
