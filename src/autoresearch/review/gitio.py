"""Git calls for the review: bytes in, leniently decoded text out.

A review reads other people's history and files, where any encoding turns up; decoding with
`errors="replace"` keeps one Latin-1 file from failing the whole review. Revisions that come from
the user are checked with `rev-parse --verify` (and `--end-of-options`) before they reach any
other git command, so nothing they type is read as an option.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from autoresearch.errors import PreconditionError
from autoresearch.gitops import runner


class GitFailed(PreconditionError):
    """A git command the review needs failed."""


def run_git(root: Path, *args: str, input_bytes: bytes | None = None, check: bool = True) -> str:
    """Run git in `root`; stdout as text (undecodable bytes replaced)."""
    return run_git_bytes(root, *args, input_bytes=input_bytes, check=check).decode(
        "utf-8", errors="replace")


def run_git_bytes(root: Path, *args: str, input_bytes: bytes | None = None,
                  check: bool = True) -> bytes:
    # Through the package's one git runner (hooks and the like off); revisions and paths here
    # may be patterns, so pathspecs keep git's usual meaning.
    proc = runner.run_git(root, *args, input_bytes=input_bytes, unset=("GIT_LITERAL_PATHSPECS",))
    if check and proc.returncode != 0:
        message = proc.stderr.decode("utf-8", errors="replace").strip()
        raise GitFailed(f"git {' '.join(args[:3])} failed: {message}", where=str(root))
    return proc.stdout


def resolve_rev(root: Path, rev: str, what: str) -> str:
    """The commit `rev` names, or a clear error naming the option it came from."""
    out = run_git(root, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{rev}^{{commit}}",
                  check=False).strip()
    if not out:
        raise PreconditionError(
            f"{rev!r} is not a commit in this repository",
            where=what,
            fix="name a branch, tag or commit (`git log --oneline` lists them); in a shallow CI "
            "checkout, fetch the base first (actions/checkout with fetch-depth: 0)",
        )
    return out


def merge_base(root: Path, a: str, b: str) -> str | None:
    out = run_git(root, "merge-base", a, b, check=False).strip()
    return out or None


def read_blobs(root: Path, specs: Iterable[str]) -> dict[str, str | None]:
    """Read many `rev:path` objects in one `git cat-file --batch` call (None: not a file there)."""
    wanted = list(dict.fromkeys(specs))
    if not wanted:
        return {}
    raw = run_git_bytes(root, "cat-file", "--batch",
                        input_bytes="".join(f"{s}\n" for s in wanted).encode())
    out: dict[str, str | None] = {}
    pos = 0
    for spec in wanted:
        end = raw.index(b"\n", pos)
        header = raw[pos:end].decode("utf-8", errors="replace").split()
        pos = end + 1
        if len(header) == 3 and header[1] in ("blob", "tree", "commit", "tag"):
            size = int(header[2])
            body = raw[pos:pos + size]
            pos += size + 1  # the object is followed by a newline
            out[spec] = body.decode("utf-8", errors="replace") if header[1] == "blob" else None
        else:
            out[spec] = None  # "<spec> missing" (or ambiguous)
    return out


def is_repo(path: Path) -> bool:
    return run_git(path, "rev-parse", "--git-dir", check=False).strip() != ""
