"""Git plumbing, all of it: one runner, one error, and every git call the package makes.

The session works in worktree slots with a detached HEAD: candidates are committed on top of the
incumbent, and the session branch (`autoresearch/<tag>`) only moves when a candidate is kept.
Discarded candidates stay reachable under `refs/autoresearch/<tag>/discarded/<id>`, so their diffs
remain inspectable while the branch history stays clean. The user's checkout is never touched.

Sections: running git; the repository; refs (and the journal of the refs this process moved);
worktrees; commits; reading history (for the views, `finalize` and the proposers).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from autoresearch.errors import AutoresearchError, PreconditionError

# Hooks, pagers, prompts and localisation all make git slower or less predictable in a loop; a
# pager or a colour escape would also end up in the output we parse or show. Paths are always
# literal: a file named `*.py` must stage that file, never every match of the glob (what is
# committed must be exactly what the guardrails judged).
_GIT_ENV = {
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_PAGER": "cat",
    "PAGER": "cat",
    "LC_ALL": "C",
    "GIT_OPTIONAL_LOCKS": "0",
    "GIT_LITERAL_PATHSPECS": "1",
}
# Every git call the harness makes runs none of the user's or an agent's code and lets nothing
# rewrite the content it checks out, stages or compares: an agent runs as the same user and can
# write `~/.gitconfig` or `.git/config`, and a `post-checkout` hook (or an fsmonitor, a gpg
# program, a filter picked by a planted attributes file) running inside the harness's own
# checkout would make it measure code it never committed (diffs also pass --no-ext-diff and
# --no-textconv). Command-line settings win over every config file, so they hold whatever those
# files say; the rest of the user's configuration (identity, safe.directory, excludes, the
# drivers of filters their committed .gitattributes name, such as git-lfs) still applies, and
# the agent guard undoes any change an agent makes to those files (proposers/agent/gitfiles.py).
HARDENED = (
    "-c", "core.hooksPath=/dev/null",  # no hook of any kind, from any config
    "-c", "core.fsmonitor=false",  # an fsmonitor is a command git would run on status/add
    "-c", "core.attributesFile=/dev/null",  # attributes only from the repository itself
    "-c", "commit.gpgSign=false",  # gpg.program would be run by every commit
)
_IDENTITY = ("-c", "user.name=autoresearch", "-c", "user.email=autoresearch@localhost")
_SHA = re.compile(r"^[0-9a-f]{7,64}$")


# --- running git ---------------------------------------------------------------------------


class GitError(AutoresearchError):
    """A git command failed; the message is git's own."""

    def __init__(self, args: Sequence[str], returncode: int, stderr: str,
                 where: str | None = None) -> None:
        self.returncode = returncode
        self.stderr = stderr
        shown = " ".join(args[:4]) + (" …" if len(args) > 4 else "")
        super().__init__(f"git {shown} failed ({returncode}): {stderr.strip()}", where=where)


def run_git(cwd: Path, *args: str, input_bytes: bytes | None = None,
            env: Mapping[str, str] | None = None,
            unset: Sequence[str] = ()) -> subprocess.CompletedProcess[bytes]:
    """The one place a git process is started: `git args` in `cwd`, output as bytes, with
    hooks, fsmonitor, global attributes and signing off (`HARDENED`)."""
    full_env = {k: v for k, v in {**os.environ, **_GIT_ENV, **(env or {})}.items()
                if k not in unset}
    return subprocess.run(["git", *HARDENED, *args], cwd=cwd, env=full_env, input=input_bytes,
                          capture_output=True, check=False)


def git(cwd: Path, *args: str, check: bool = True, input_text: str | None = None,
        env: Mapping[str, str] | None = None, errors: str = "surrogateescape") -> str:
    """Run git in `cwd` and return its stdout as text (without the trailing newline).

    A file name that is not UTF-8 keeps its bytes as lone surrogates (surrogateescape, as
    os.fsdecode does), so it can still be named, refused and put back; text meant for display
    (diffs) is decoded with errors="replace" instead.
    """
    proc = run_git(cwd, *args, env=env, input_bytes=None if input_text is None
                   else input_text.encode("utf-8", "surrogateescape"))
    if check and proc.returncode != 0:
        raise GitError(list(args), proc.returncode,
                       proc.stderr.decode("utf-8", "replace") or proc.stdout.decode("utf-8", "replace"),
                       where=str(cwd))
    return proc.stdout.decode("utf-8", errors).rstrip("\n")


def _names(raw: bytes) -> list[str]:
    """NUL-separated file names as git prints them (surrogateescape: see `git`)."""
    return [p.decode("utf-8", "surrogateescape") for p in raw.split(b"\0") if p]


def _names_of(cwd: Path, *args: str) -> list[str]:
    proc = run_git(cwd, *args)
    if proc.returncode != 0:
        raise GitError(list(args), proc.returncode, proc.stderr.decode("utf-8", "replace"),
                       where=str(cwd))
    return _names(proc.stdout)


def is_sha(value: str | None) -> bool:
    """A commit id (full or abbreviated): nothing user-controlled is ever read as an option."""
    return bool(value) and _SHA.match(value or "") is not None


# --- the repository ------------------------------------------------------------------------


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


def common_root(path: Path) -> Path:
    """The main working tree of the repository containing `path` (also from inside a worktree).

    Session worktrees live under `.autoresearch/worktrees/`, but the ledger is in the main
    repository, so `--show-toplevel` alone would point at the wrong place.
    """
    try:
        common = git(path, "rev-parse", "--path-format=absolute", "--git-common-dir").strip()
    except (GitError, OSError):
        return path.resolve()
    common_path = Path(common)
    return common_path.parent if common_path.name == ".git" else path.resolve()


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
    return _names_of(cwd, "ls-tree", "-r", "--name-only", "-z", commit)


def rev_parse(cwd: Path, rev: str) -> str:
    return git(cwd, "rev-parse", "--verify", rev)


def tree_of(cwd: Path, commit: str) -> str:
    return rev_parse(cwd, f"{commit}^{{tree}}")


@lru_cache(maxsize=64)
def _has_identity(cwd: str) -> bool:
    return bool(git(Path(cwd), "config", "user.email", check=False))


def identity_args(cwd: Path) -> tuple[str, ...]:
    # Commits need an author; a fresh CI machine has none configured, so lend one.
    return () if _has_identity(str(cwd)) else _IDENTITY


# --- refs ----------------------------------------------------------------------------------


class RefJournal:
    """The refs this process moved, so that a guard watching refs can tell them from another's.

    The agent proposer's guard compares every ref before and after an agent run; a ref the
    harness itself moved meanwhile (a sibling slot's keep or park) is not the agent's doing.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._moves: list[tuple[str, str]] = []  # (ref, new sha), in order

    def mark(self) -> int:
        with self._lock:
            return len(self._moves)

    def record(self, ref: str, sha: str) -> None:
        with self._lock:
            self._moves.append((ref, sha))

    def since(self, mark: int) -> dict[str, str]:
        """Every ref moved since `mark`, and where this process last pointed it."""
        with self._lock:
            return dict(self._moves[mark:])


REF_JOURNAL = RefJournal()


def ref_exists(cwd: Path, ref: str) -> bool:
    return bool(git(cwd, "rev-parse", "--verify", "--quiet", ref, check=False))


def update_ref(cwd: Path, ref: str, sha: str) -> None:
    git(cwd, "update-ref", ref, sha)
    REF_JOURNAL.record(ref, sha)


def update_refs(cwd: Path, refs: Mapping[str, str]) -> None:
    """Point several refs at their commits in one git call (one transaction)."""
    if refs:
        git(cwd, "update-ref", "--stdin",
            input_text="".join(f"update {ref} {sha}\n" for ref, sha in refs.items()))
        for ref, sha in refs.items():
            REF_JOURNAL.record(ref, sha)


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


def commit_exists(repo: Path, sha: str) -> bool:
    return is_sha(sha) and git(repo, "cat-file", "-t", sha, check=False) == "commit"


def ensure_branch(root: Path, branch: str, start: str) -> None:
    """Create `branch` at `start` unless it exists."""
    if not ref_exists(root, f"refs/heads/{branch}"):
        git(root, "branch", branch, start)


# --- worktrees -----------------------------------------------------------------------------


@lru_cache(maxsize=16)
def _worktrees_dir(root: str) -> Path:
    common = git(Path(root), "rev-parse", "--path-format=absolute", "--git-common-dir")
    return (Path(common) / "worktrees").resolve()


def links_to(root: Path, worktree: Path) -> bool:
    """Whether `worktree` is a linked worktree of `root`'s repository: its `.git` is a file naming
    a gitdir in that repository's `worktrees/` (file reads only). Anything can rewrite that file
    (an agent, a verify run); pointed at a copy of the repository, every commit the harness made
    there would be missing from the real one."""
    dotgit = worktree / ".git"
    try:
        if dotgit.is_symlink() or not dotgit.is_file():
            return False
        text = dotgit.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    if not text.startswith("gitdir:"):
        return False
    gitdir = Path(text[len("gitdir:"):].strip())
    if not gitdir.is_absolute():
        gitdir = worktree / gitdir
    return gitdir.resolve().parent == _worktrees_dir(str(root.resolve()))


def worktree_paths(root: Path) -> list[Path]:
    """Every worktree git has registered for `root`'s repository (the main one first)."""
    out = run_git(root, "worktree", "list", "--porcelain", "-z").stdout
    return [Path(field[len(b"worktree "):].decode("utf-8", "surrogateescape"))
            for field in out.split(b"\0") if field.startswith(b"worktree ")]


def ensure_detached_worktree(root: Path, path: Path, commit: str) -> None:
    """Create (or re-attach) a worktree at `path`, detached at `commit` with exactly its files.

    A worktree whose `.git` no longer links to this repository (`links_to`) is removed and made
    again: nothing in it can be trusted, and git's own repair would keep the foreign link."""
    if (path / ".git").exists() or (path / ".git").is_symlink():
        if links_to(root, path):
            checkout(path, commit)
            return
        shutil.rmtree(path)
    git(root, "worktree", "prune")
    path.parent.mkdir(parents=True, exist_ok=True)
    git(root, "worktree", "add", "--detach", "--force", str(path), commit)


def remove_worktree(root: Path, path: Path) -> None:
    git(root, "worktree", "remove", "--force", str(path), check=False)
    git(root, "worktree", "prune", check=False)


def checkout(worktree: Path, commit: str) -> None:
    """Make the worktree's files exactly `commit` (tracked files and the index; untracked files
    and nested repositories removed; ignored files are kept).

    core.trustctime=false: the protected fence (guardrails.protected_fence) chmods protected
    files around each run, which changes their ctime; a forced checkout trusting ctime would
    rewrite every such file (same content, new mtime), and a write inside a fenced run is
    tampering. Content changes still show in mtime and size."""
    git(worktree, "-c", "core.trustctime=false", "checkout", "--quiet", "--force", "--detach",
        commit)
    # -ff: a nested repository someone created in the worktree goes too (-f alone keeps it);
    # ignored files stay (data a verify run prepared, the shared links).
    git(worktree, "clean", "-ffdq")


def changed_paths(worktree: Path) -> list[str]:
    """Every path that differs from HEAD in the worktree, untracked ones included."""
    entries = _names_of(worktree, "status", "--porcelain", "-z", "--untracked-files=all")
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
    proc = run_git(cwd, "check-ignore", "-z", "--stdin", input_bytes=data,
                   unset=("GIT_LITERAL_PATHSPECS",))
    stderr = proc.stderr.decode("utf-8", "replace")
    if proc.returncode == 128 and "not a git repository" in stderr:
        return set()  # a plain directory has no ignore rules
    if proc.returncode not in (0, 1):  # 1: none is ignored
        raise GitError(["check-ignore"], proc.returncode, stderr, where=str(cwd))
    return set(_names(proc.stdout))


def tracked_among(cwd: Path, paths: list[str]) -> set[str]:
    """The paths among `paths` that the index tracks (all of them outside a git repository)."""
    if not paths:
        return set()
    proc = run_git(cwd, "ls-files", "-z", "--", *paths)
    stderr = proc.stderr.decode("utf-8", "replace")
    if proc.returncode == 128 and "not a git repository" in stderr:
        return set(paths)
    if proc.returncode != 0:
        raise GitError(["ls-files"], proc.returncode, stderr, where=str(cwd))
    return set(_names(proc.stdout))


# --- commits -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Committed:
    sha: str
    tree: str
    files: list[str]
    lines_added: int
    lines_removed: int


def _described(worktree: Path) -> Committed:
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


def commit_change(worktree: Path, message: str, paths: list[str] | None = None) -> Committed:
    """Stage a change (the given paths, or everything), commit it on the detached HEAD, and
    describe it. Three git calls: this runs once per experiment, so it is kept lean."""
    if paths is None:
        git(worktree, "add", "-A")
    else:
        git(worktree, "add", "-A", "--", *paths)
    # The message on stdin, not argv: a hypothesis is untrusted text of any length, and one
    # argument over 128 KiB (MAX_ARG_STRLEN) fails exec with "Argument list too long".
    git(worktree, *identity_args(worktree), "commit", "--quiet", "--no-verify", "--allow-empty",
        "-F", "-", input_text=message)
    return _described(worktree)


def cherry_pick(worktree: Path, commit: str, onto: str) -> Committed | None:
    """Replay `commit`'s change on top of `onto` in the worktree (same message, new parent).

    Returns the new commit, or None when the change conflicts with `onto` (the worktree is then
    left exactly at `onto`, clean).
    """
    checkout(worktree, onto)
    # A change already contained in `onto` is kept as an empty commit so the caller can tell
    # "redundant" from "conflicting" (hooks are off, as for every git call: HARDENED).
    picked = run_git(worktree, *identity_args(worktree), "cherry-pick",
                     "--keep-redundant-commits", commit)
    if picked.returncode != 0:
        git(worktree, "cherry-pick", "--abort", check=False)
        checkout(worktree, onto)
        return None
    return _described(worktree)


def create_bundle(repo: Path, commit: str, path: Path, exclude: Iterable[str] = ()) -> Path:
    """A git bundle at `path` holding `commit` and its history (less what `exclude` commits, which
    the receiver has, already hold): how a candidate travels to a machine that runs it remotely.
    The bundle names it `refs/autoresearch/bundle/<commit>` (a ref that exists only while the
    bundle is made)."""
    ref = f"refs/autoresearch/bundle/{commit}"
    git(repo, "update-ref", ref, commit)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        git(repo, "bundle", "create", "--quiet", str(path), ref, *(f"^{e}" for e in exclude))
    finally:
        git(repo, "update-ref", "-d", ref, check=False)
    return path


def fetch_bundle(repo: Path, path: Path) -> list[str]:
    """Fetch every commit a bundle holds into `repo` (initialised if needed); returns them."""
    if not (repo / ".git").exists():
        repo.mkdir(parents=True, exist_ok=True)
        git(repo, "init", "--quiet")
    heads = [line.split()[0] for line in git(repo, "bundle", "list-heads", str(path)).splitlines()
             if line.strip()]
    git(repo, "fetch", "--quiet", str(path), *(f"{sha}:refs/autoresearch/received/{sha}"
                                                for sha in heads))
    return heads


def blob_at(cwd: Path, commit: str, path: str) -> bytes | None:
    """The exact bytes of `path` at `commit`; None unless it is a regular file there."""
    listed = run_git(cwd, "ls-tree", "-z", commit, "--", path)
    if listed.returncode != 0:
        return None
    entry, _, name = listed.stdout.split(b"\0", 1)[0].partition(b"\t")
    fields = entry.split()
    if (name.decode("utf-8", "surrogateescape") != path or len(fields) != 3
            or fields[1] != b"blob" or fields[0] == b"120000"):
        return None
    blob = run_git(cwd, "cat-file", "blob", fields[2].decode())
    return blob.stdout if blob.returncode == 0 else None


def file_at(cwd: Path, commit: str, path: str) -> str | None:
    """The text of `path` as `commit` has it; None unless it is a regular file there.

    Read as bytes (and decoded leniently) so the content comes back exactly, final newline included.
    """
    data = blob_at(cwd, commit, path)
    return None if data is None else data.decode("utf-8", errors="replace")


# --- reading history -----------------------------------------------------------------------


def diff(cwd: Path, base: str, head: str, paths: list[str] | None = None) -> str:
    args = ["diff", "--no-color", "--no-ext-diff", "--no-textconv", base, head]
    if paths:
        args += ["--", *paths]
    return git(cwd, *args, errors="replace")


def show_commit(repo: Path, sha: str, *, max_chars: int = 400_000, message_chars: int = 4000,
                message_lines: int = 40) -> str:
    """The commit's message, stat and patch, each cut (with a note) when it is very large.

    The message is a proposer's hypothesis, of any length; whoever shows this shows the
    hypothesis beside it (whole on request), so a long one is cut here rather than fill the
    terminal or push the patch out of `max_chars`.
    """
    if not is_sha(sha):
        raise GitError(["show", sha], 128, f"not a commit id: {sha!r}", where=str(repo))
    head = git(repo, "show", "-s", "--no-color", "--format=commit %H%nAuthor: %an <%ae>%nDate:   %ad",
               sha, errors="replace").rstrip("\n")
    message = git(repo, "show", "-s", "--no-color", "--format=%B", sha,
                  errors="replace").rstrip("\n")
    shown = "\n".join(message[:message_chars].split("\n")[:message_lines])
    if len(shown) < len(message):
        shown += (f"\n… {len(message) - len(shown):,} more characters of the message "
                  f"(git log -1 --format=%B {sha[:12]})")
    patch = git(repo, "show", "--no-color", "--no-ext-diff", "--no-textconv", "--format=",
                "--stat", "--patch", sha, errors="replace").lstrip("\n")
    if len(patch) > max_chars:
        patch = patch[:max_chars] + f"\n… diff cut at {max_chars} characters (git show {sha})\n"
    indented = "\n".join("    " + line if line else "" for line in shown.split("\n"))
    return f"{head}\n\n{indented}\n\n---\n{patch}\n"


def patch_of(repo: Path, sha: str, *, max_chars: int = 200_000) -> str:
    """The change a commit makes (stat + patch, no message), cut when it is very large."""
    if not is_sha(sha):
        raise GitError(["show", sha], 128, f"not a commit id: {sha!r}", where=str(repo))
    text = git(repo, "show", "--no-color", "--no-ext-diff", "--no-textconv", "--format=", "--stat",
               "--patch", sha, errors="replace")
    text = text.lstrip("\n") + "\n"
    if len(text) > max_chars:
        text = text[:max_chars] + f"\n… diff cut at {max_chars} characters (git show {sha})\n"
    return text


def changed_files(repo: Path, sha: str) -> list[str]:
    """Paths a commit changes relative to its first parent; renames count as delete + add."""
    return _names_of(repo, "diff-tree", "--no-commit-id", "--name-only", "--no-renames", "-r",
                     "-z", "--root", sha)


def diff_names(repo: Path, a: str, b: str) -> list[str]:
    return _names_of(repo, "diff", "--name-only", "--no-renames", "-z", a, b, "--")


def rev_list(repo: Path, spec: Sequence[str]) -> list[str]:
    return git(repo, "rev-list", *spec).split()


def is_ancestor(repo: Path, ancestor: str, descendant: str) -> bool:
    return run_git(repo, "merge-base", "--is-ancestor", ancestor, descendant).returncode == 0
