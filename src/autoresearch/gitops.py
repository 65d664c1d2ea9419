"""Git plumbing: the session's worktree, its commits, and the refs that keep discarded work.

The session works in its own worktree with a detached HEAD: candidates are committed on top of the
session branch's tip, and the branch (`autoresearch/<tag>`) only moves when a candidate is kept.
Discarded candidates stay reachable under `refs/autoresearch/<tag>/discarded/<id>`, so their diffs
remain inspectable while the branch history stays clean. The user's checkout is never touched.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from autoresearch.errors import PreconditionError

# Hooks, pagers, prompts and localisation all make git slower or less predictable in a loop.
# Paths are always literal: a file named `*.py` must stage that file, never every match of the
# glob (what is committed must be exactly what the guardrails judged).
_GIT_ENV = {
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_PAGER": "cat",
    "LC_ALL": "C",
    "GIT_OPTIONAL_LOCKS": "0",
    "GIT_LITERAL_PATHSPECS": "1",
}
_IDENTITY = ("-c", "user.name=autoresearch", "-c", "user.email=autoresearch@localhost")


class GitError(RuntimeError):
    def __init__(self, args: list[str], returncode: int, stderr: str) -> None:
        self.returncode = returncode
        self.stderr = stderr
        super().__init__(f"git {' '.join(args)} failed ({returncode}): {stderr.strip()}")


def git(cwd: Path, *args: str, check: bool = True, input_text: str | None = None) -> str:
    """Run git in `cwd` and return its stdout (stripped of the trailing newline)."""
    env = {**os.environ, **_GIT_ENV}
    proc = subprocess.run(
        ["git", *args], cwd=cwd, env=env, input=input_text, capture_output=True, text=True,
        check=False,
    )
    if check and proc.returncode != 0:
        raise GitError(list(args), proc.returncode, proc.stderr)
    return proc.stdout.rstrip("\n")


def repo_root(path: Path) -> Path:
    """The top of the git repository containing `path`, or a PreconditionError."""
    try:
        out = git(path, "rev-parse", "--show-toplevel")
    except (GitError, FileNotFoundError, NotADirectoryError):
        raise PreconditionError(
            f"{path} is not inside a git repository",
            where=str(path),
            fix="run `git init && git add -A && git commit -m init` first, or cd into your repo",
        ) from None
    return Path(out).resolve()


def current_branch(root: Path) -> str | None:
    """The checked-out branch name, or None on a detached HEAD."""
    out = git(root, "symbolic-ref", "--quiet", "--short", "HEAD", check=False)
    return out or None


def head_commit(cwd: Path) -> str | None:
    out = git(cwd, "rev-parse", "--verify", "--quiet", "HEAD", check=False)
    return out or None


def read_head(worktree: Path) -> str | None:
    """The commit a worktree's detached HEAD points at, read from disk (no subprocess).

    Falls back to git when HEAD is a symbolic ref or the layout is unusual.
    """
    dotgit = worktree / ".git"
    try:
        if dotgit.is_file():
            gitdir = Path(dotgit.read_text().split("gitdir:", 1)[1].strip())
            if not gitdir.is_absolute():
                gitdir = (worktree / gitdir).resolve()
        else:
            gitdir = dotgit
        head = (gitdir / "HEAD").read_text().strip()
    except (OSError, IndexError):
        return head_commit(worktree)
    if len(head) in (40, 64) and all(c in "0123456789abcdef" for c in head):
        return head
    return head_commit(worktree)


def dirty_tracked_files(root: Path) -> list[str]:
    """Tracked files with uncommitted changes (untracked files don't make a tree dirty here)."""
    out = git(root, "status", "--porcelain", "--untracked-files=no")
    return [line[3:] for line in out.splitlines() if line.strip()]


def tracked_files(cwd: Path, commit: str = "HEAD") -> list[str]:
    out = git(cwd, "ls-tree", "-r", "--name-only", "-z", commit)
    return [p for p in out.split("\0") if p]


def rev_parse(cwd: Path, rev: str) -> str:
    return git(cwd, "rev-parse", "--verify", rev)


def ref_exists(cwd: Path, ref: str) -> bool:
    return bool(git(cwd, "rev-parse", "--verify", "--quiet", ref, check=False))


def update_ref(cwd: Path, ref: str, sha: str) -> None:
    git(cwd, "update-ref", ref, sha)


@lru_cache(maxsize=64)
def _has_identity(cwd: str) -> bool:
    return bool(git(Path(cwd), "config", "user.email", check=False))


def identity_args(cwd: Path) -> tuple[str, ...]:
    # Commits need an author; a fresh CI machine has none configured, so lend one.
    return () if _has_identity(str(cwd)) else _IDENTITY


def update_refs(cwd: Path, refs: Mapping[str, str]) -> None:
    """Point several refs at their commits in one git call (one transaction)."""
    if refs:
        git(cwd, "update-ref", "--stdin",
            input_text="".join(f"update {ref} {sha}\n" for ref, sha in refs.items()))


def refs_under(cwd: Path, prefix: str) -> dict[str, str]:
    """Every ref below `prefix` (e.g. refs/autoresearch/mar5/) and the commit it points at."""
    out = git(cwd, "for-each-ref", "--format=%(refname) %(objectname)", prefix)
    return dict(line.split(" ", 1) for line in out.splitlines() if line.strip())


def existing_commits(cwd: Path, shas: Iterable[str]) -> set[str]:
    """The commits among `shas` that the object store still holds (one git call)."""
    wanted = sorted(set(shas))
    if not wanted:
        return set()
    out = git(cwd, "cat-file", "--batch-check=%(objectname) %(objecttype)",
              input_text="".join(f"{sha}\n" for sha in wanted))
    return {parts[0] for parts in (line.split() for line in out.splitlines())
            if len(parts) == 2 and parts[1] == "commit"}


def ensure_branch(root: Path, branch: str, start: str) -> None:
    """Create `branch` at `start` unless it exists."""
    if not ref_exists(root, f"refs/heads/{branch}"):
        git(root, "branch", branch, start)


def ensure_detached_worktree(root: Path, path: Path, commit: str) -> None:
    """Create (or re-attach) a worktree at `path`, detached at `commit` with exactly its files."""
    if (path / ".git").exists():
        checkout(path, commit)
        return
    git(root, "worktree", "prune")
    path.parent.mkdir(parents=True, exist_ok=True)
    git(root, "worktree", "add", "--detach", "--force", str(path), commit)


def ensure_worktree(root: Path, path: Path, branch: str, start: str) -> None:
    """Create (or re-attach) the session worktree, detached at the session branch's tip."""
    ensure_branch(root, branch, start)
    ensure_detached_worktree(root, path, rev_parse(root, f"refs/heads/{branch}"))


def remove_worktree(root: Path, path: Path) -> None:
    git(root, "worktree", "remove", "--force", str(path), check=False)
    git(root, "worktree", "prune", check=False)


def checkout(worktree: Path, commit: str) -> None:
    """Make the worktree's files exactly `commit` (tracked files; ignored files are kept).

    core.trustctime=false: the protected fence (guardrails.protected_fence) chmods protected
    files around each run, which changes their ctime; a forced checkout trusting ctime would
    rewrite every such file (same content, new mtime), and a write inside a fenced run is
    tampering. Content changes still show in mtime and size."""
    git(worktree, "-c", "core.trustctime=false", "checkout", "--quiet", "--force", "--detach",
        commit)
    git(worktree, "clean", "-fdq")


@dataclass(frozen=True)
class Committed:
    sha: str
    tree: str
    files: list[str]
    lines_added: int
    lines_removed: int


def commit_change(worktree: Path, message: str, paths: list[str] | None = None) -> Committed:
    """Stage a change (the given paths, or everything), commit it on the detached HEAD, and
    describe it. Three git calls: this runs once per experiment, so it is kept lean."""
    if paths is None:
        git(worktree, "add", "-A")
    else:
        git(worktree, "add", "-A", "--", *paths)
    git(worktree, *identity_args(worktree), "commit", "--quiet", "--no-verify", "--allow-empty",
        "-m", message)
    out = git(worktree, "log", "-1", "--numstat", "--format=%H %T").splitlines()
    sha, tree = out[0].split()
    added = removed = 0
    files: list[str] = []
    for line in out[1:]:
        if not line.strip():
            continue
        a, r, name = line.split("\t", 2)
        files.append(name)
        # Binary files report "-": count them as one changed line so they aren't "free".
        added += int(a) if a.isdigit() else 1
        removed += int(r) if r.isdigit() else 1
    return Committed(sha=sha, tree=tree, files=files, lines_added=added, lines_removed=removed)


def _git_bytes(cwd: Path, *args: str) -> bytes:
    """Run git and return its raw stdout (for output that holds file names)."""
    env = {**os.environ, **_GIT_ENV}
    proc = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, check=False)
    if proc.returncode != 0:
        raise GitError(list(args), proc.returncode, proc.stderr.decode("utf-8", "replace"))
    return proc.stdout


def _names(raw: bytes) -> list[str]:
    """NUL-separated file names as git prints them. A name that is not UTF-8 keeps its bytes as
    lone surrogates (surrogateescape, as os.fsdecode does), so the guardrails can refuse it by
    name instead of the session crashing on a decode error."""
    return [p.decode("utf-8", "surrogateescape") for p in raw.split(b"\0") if p]


def changed_paths(worktree: Path) -> list[str]:
    """Every path that differs from HEAD in the worktree, untracked ones included."""
    entries = _names(_git_bytes(worktree, "status", "--porcelain", "-z", "--untracked-files=all"))
    paths: list[str] = []
    i = 0
    while i < len(entries):
        entry = entries[i]
        i += 1
        status, path = entry[:2], entry[3:]
        paths.append(path)
        if "R" in status or "C" in status:  # renames carry their source as the next entry
            if i < len(entries):
                paths.append(entries[i])
            i += 1
    return paths


def ignored_paths(cwd: Path, paths: list[str]) -> set[str]:
    """The paths among `paths` that git ignores (tracked files never are)."""
    if not paths:
        return set()
    data = b"".join(p.encode("utf-8", "surrogateescape") + b"\0" for p in paths)
    # check-ignore takes file names, not pathspecs, and refuses the literal-pathspec setting.
    env = {k: v for k, v in {**os.environ, **_GIT_ENV}.items() if k != "GIT_LITERAL_PATHSPECS"}
    proc = subprocess.run(["git", "check-ignore", "-z", "--stdin"], cwd=cwd, env=env,
                          input=data, capture_output=True, check=False)
    stderr = proc.stderr.decode("utf-8", "replace")
    if proc.returncode == 128 and "not a git repository" in stderr:
        return set()  # a plain directory has no ignore rules
    if proc.returncode not in (0, 1):  # 1: none is ignored
        raise GitError(["check-ignore"], proc.returncode, stderr)
    return set(_names(proc.stdout))


def tracked_among(cwd: Path, paths: list[str]) -> set[str]:
    """The paths among `paths` that the index tracks (all of them outside a git repository)."""
    if not paths:
        return set()
    env = {**os.environ, **_GIT_ENV}
    proc = subprocess.run(["git", "ls-files", "-z", "--", *paths], cwd=cwd, env=env,
                          capture_output=True, check=False)
    stderr = proc.stderr.decode("utf-8", "replace")
    if proc.returncode == 128 and "not a git repository" in stderr:
        return set(paths)
    if proc.returncode != 0:
        raise GitError(["ls-files"], proc.returncode, stderr)
    return set(_names(proc.stdout))


def blob_at(cwd: Path, commit: str, path: str) -> bytes | None:
    """The exact bytes of `path` at `commit`; None unless it is a regular file there."""
    env = {**os.environ, **_GIT_ENV}

    def run(*args: str) -> bytes:
        proc = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, check=False)
        return proc.stdout if proc.returncode == 0 else b""

    entry, _, name = run("ls-tree", "-z", commit, "--", path).split(b"\0", 1)[0].partition(b"\t")
    fields = entry.split()
    if (name.decode("utf-8", "surrogateescape") != path or len(fields) != 3
            or fields[1] != b"blob" or fields[0] == b"120000"):
        return None
    return run("cat-file", "blob", fields[2].decode())


def file_at(cwd: Path, commit: str, path: str) -> str | None:
    """The text of `path` as `commit` has it; None unless it is a regular file there.

    Read as bytes (and decoded leniently) so the content comes back exactly, final newline included.
    """
    data = blob_at(cwd, commit, path)
    return None if data is None else data.decode("utf-8", errors="replace")


def tree_of(cwd: Path, commit: str) -> str:
    return rev_parse(cwd, f"{commit}^{{tree}}")


def diff(cwd: Path, base: str, head: str, paths: list[str] | None = None) -> str:
    args = ["diff", "--no-color", "--no-ext-diff", base, head]
    if paths:
        args += ["--", *paths]
    return git(cwd, *args)


def show_commit(cwd: Path, commit: str) -> str:
    return git(cwd, "show", "--no-color", "--no-ext-diff", "--format=fuller", commit)
