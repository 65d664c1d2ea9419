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


def read_files(root: Path, rev: str, paths: Iterable[str]) -> dict[str, str | None]:
    """The text of each of `paths` at the commit `rev` (None: not a file there), in one
    `git cat-file --batch` call.

    That call reads one object name a line, and git cuts a line at a line feed and drops a
    carriage return before it: a file named `a.py<LF>HEAD:evaluate.py` would be two requests,
    shifting every later file's content onto the wrong name and reading an object the name
    chose. Such a path is looked up in the tree first and asked for by its object id, so no part
    of a file name is ever read as the name of another object."""
    names: dict[str, str | None] = {}
    for path in dict.fromkeys(paths):
        names[path] = _blob_id(root, rev, path) if _breaks_line(path) else f"{rev}:{path}"
    blobs = read_blobs(root, [name for name in names.values() if name is not None])
    return {path: None if name is None else blobs[name] for path, name in names.items()}


def _breaks_line(text: str) -> bool:
    return "\n" in text or "\r" in text


def _blob_id(root: Path, rev: str, path: str) -> str | None:
    """The object id of the file `path` in the commit `rev` (None: no file of that name)."""
    listed = run_git_bytes(root, "ls-tree", "-z", rev, "--", f":(literal){path}", check=False)
    for entry in listed.split(b"\0"):
        meta, _, name = entry.partition(b"\t")
        fields = meta.split()
        if len(fields) == 3 and fields[1] == b"blob" and \
                name.decode("utf-8", errors="replace") == path:
            return fields[2].decode("ascii")
    return None


def read_blobs(root: Path, names: Iterable[str]) -> dict[str, str | None]:
    """Read many objects (`rev:path` or ids) in one `git cat-file --batch` call (None: not a
    file there). A name must fit on one line: `read_files` sees to it for file names."""
    wanted = list(dict.fromkeys(names))
    if not wanted:
        return {}
    split = [name for name in wanted if _breaks_line(name)]
    if split:
        raise ValueError(f"an object name git would read as two: {split[0]!r}")
    raw = run_git_bytes(root, "cat-file", "--batch",
                        input_bytes="".join(f"{s}\n" for s in wanted).encode())
    out: dict[str, str | None] = {}
    pos = 0
    for name in wanted:
        end = raw.index(b"\n", pos)
        header = raw[pos:end].decode("utf-8", errors="replace").split()
        pos = end + 1
        # "<name> missing" (or "ambiguous") echoes the name, whose words could look like a
        # header's: the last word tells; a found object's header ends with its size.
        if len(header) == 3 and header[2].isdigit():
            size = int(header[2])
            body = raw[pos:pos + size]
            pos += size + 1  # the object is followed by a newline
            out[name] = body.decode("utf-8", errors="replace") if header[1] == "blob" else None
        else:
            out[name] = None
    return out


def is_repo(path: Path) -> bool:
    return run_git(path, "rev-parse", "--git-dir", check=False).strip() != ""
