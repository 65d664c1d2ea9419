"""The repository the session drives: where it is, what HEAD and its refs point at, the worktree
slots candidates run in, and bundles that carry a commit to another machine.

The session works in worktree slots with a detached HEAD: candidates are committed on top of the
incumbent, and the session branch (`autoresearch/<tag>`) only moves when a candidate is kept.
Discarded candidates stay reachable under `refs/autoresearch/<tag>/discarded/<id>`, so their diffs
remain inspectable while the branch history stays clean. The user's checkout is never touched.

All git code of the package is in this package, around one runner: `gitops.runner` (running git,
`GitError`), `gitops.commits` (making commits), `gitops.history` (reading them: diffs, files at a
commit, ancestry), `gitops.status` (a working tree's changed, ignored and tracked paths),
`gitops.housekeeping` (packing the refs and objects a session leaves, when it ends).
"""

from __future__ import annotations

import secrets
import shlex
import shutil
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping
from functools import lru_cache
from pathlib import Path

from autoresearch.errors import PreconditionError
from autoresearch.gitops.runner import GitError, git, git_names, is_sha, run_git
from autoresearch.process_tree import owner_alive, owner_gone, owner_token

# --- the repository ------------------------------------------------------------------------


def repo_root(path: Path) -> Path:
    """The top of the git repository containing `path`, or a PreconditionError."""
    try:
        out = git(path, "rev-parse", "--show-toplevel")
    except (GitError, FileNotFoundError, NotADirectoryError):
        if _is_bare(path):  # `git init` there would not help: it needs a working tree
            branch = git(path, "symbolic-ref", "--quiet", "--short", "HEAD",
                         check=False) or "main"
            raise PreconditionError(
                f"{path} is a bare git repository: it has no working tree for the verify "
                "command to run in and the proposer to edit", where=str(path),
                fix=f"work in a checkout of it: `git -C {shlex.quote(str(path))} worktree add "
                f"../work {shlex.quote(branch)}` and cd there, or clone it: `git clone "
                f"{shlex.quote(str(path))} work`") from None
        raise PreconditionError(
            f"{path} is not inside a git repository",
            where=str(path),
            fix="run `git init && git add -A && git commit -m init` first, or cd into your repo",
        ) from None
    return Path(out).resolve()


def _is_bare(path: Path) -> bool:
    try:
        return git(path, "rev-parse", "--is-bare-repository", check=False) == "true"
    except OSError:  # `path` does not exist, or is not a directory
        return False


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
        # A worktree deleted under the session holds nothing (and git cannot run in it).
        return head_commit(worktree) if worktree.is_dir() else None
    if len(head) in (40, 64) and all(c in "0123456789abcdef" for c in head):
        return head
    return head_commit(worktree)


def tracked_files(cwd: Path, commit: str = "HEAD") -> list[str]:
    return git_names(cwd, "ls-tree", "-r", "--name-only", "-z", commit)


def rev_parse(cwd: Path, rev: str) -> str:
    return git(cwd, "rev-parse", "--verify", rev)


def tree_of(cwd: Path, commit: str) -> str:
    return rev_parse(cwd, f"{commit}^{{tree}}")


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


def read_ref(cwd: Path, ref: str) -> str:
    """The commit `ref` points at, or "" when there is no such ref."""
    return git(cwd, "rev-parse", "--verify", "--quiet", ref, check=False)


def update_ref(cwd: Path, ref: str, sha: str) -> None:
    git(cwd, "update-ref", ref, sha)
    REF_JOURNAL.record(ref, sha)


def swap_ref(cwd: Path, ref: str, new: str, old: str) -> str | None:
    """Point `ref` at `new` only if it still holds `old`: git's compare-and-swap (`update-ref
    <ref> <new> <old>`, atomic under the ref's lock), so a commit someone made on it meanwhile
    is never moved over. None when it moved; else what the ref holds instead ("" when it is
    gone). A failure with the ref still at `old` (another git process holding its lock) is git's
    own error."""
    done = run_git(cwd, "update-ref", ref, new, old)
    if done.returncode == 0:
        REF_JOURNAL.record(ref, new)
        return None
    held = read_ref(cwd, ref)
    if held == old:
        raise GitError(["update-ref", ref, new, old], done.returncode,
                       done.stderr.decode("utf-8", "replace"), where=str(cwd))
    return held


def park_ref(cwd: Path, ref: str, sha: str) -> None:
    """Point `ref` at `sha` unless it already holds another commit: a parked commit's ref is
    written once. One holding a commit the ledger does not know (kept from before a ledger
    backup was restored) would otherwise be overwritten, its commit left to the reflog."""
    held = git(cwd, "rev-parse", "--verify", "--quiet", ref, check=False)
    if not held:
        # `create` fails if the ref appeared meanwhile: compare-and-swap, not check-then-write.
        done = run_git(cwd, "update-ref", "--stdin", input_bytes=f"create {ref} {sha}\n".encode())
        if done.returncode == 0:
            REF_JOURNAL.record(ref, sha)
            return
        held = git(cwd, "rev-parse", "--verify", "--quiet", ref, check=False)
    if held == sha:
        return
    saved = ref.replace("/discarded/", "/saved/", 1) if "/discarded/" in ref else f"{ref}-saved"
    raise PreconditionError(
        f"{ref} already holds commit {held[:10]}, not {sha[:10]}: refusing to overwrite it (a "
        "commit the ledger does not record, e.g. one made after the ledger backup that was "
        "restored)", where=str(cwd),
        fix=f"keep that commit under another name (git update-ref {saved} {held}), delete the "
            f"ref (git update-ref -d {ref}), then run again")


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


def worktrees_on_branch(root: Path, branch: str) -> list[Path]:
    """Every worktree of `root`'s repository that has `branch` checked out (a detached one
    never has; one whose directory is gone, which git calls prunable, is left out)."""
    out = run_git(root, "worktree", "list", "--porcelain", "-z").stdout
    found = []
    for record in out.split(b"\0\0"):
        fields = [f.decode("utf-8", "surrogateescape") for f in record.split(b"\0") if f]
        path = next((f[len("worktree "):] for f in fields if f.startswith("worktree ")), None)
        if (path is not None and f"branch refs/heads/{branch}" in fields
                and not any(f.startswith("prunable") for f in fields)):
            found.append(Path(path))
    return found


def ensure_detached_worktree(root: Path, path: Path, commit: str) -> None:
    """Create (or re-attach) a worktree at `path`, detached at `commit` with exactly its files.

    A worktree whose `.git` no longer links to this repository (`links_to`) is removed and made
    again: nothing in it can be trusted, and git's own repair would keep the foreign link."""
    if (path / ".git").exists() or (path / ".git").is_symlink():
        if links_to(root, path):
            checkout(path, commit)
            return
        shutil.rmtree(path)
    elif path.is_dir() and any(path.iterdir()):
        # A worktree of ours whose `.git` link is gone (deleted mid-run, an rm -rf cut short)
        # is no checkout any more, and `worktree add` refuses a directory that is not empty.
        shutil.rmtree(path)
    git(root, "worktree", "prune")
    path.parent.mkdir(parents=True, exist_ok=True)
    git(root, "worktree", "add", "--detach", "--force", str(path), commit)


def remove_worktree(root: Path, path: Path) -> None:
    """Remove the worktree at `path` and its registration, a broken one too.

    Broken: its `.git` link is gone while git still lists it, or the link's HEAD is (a process
    killed inside `git worktree add`, or another one pruning under it, leaves that). git refuses
    to remove such a worktree, and its directory would make every later `git worktree add` at the
    same path fail ("already exists"): it is deleted, then pruned. A directory whose `.git` is a
    directory is a repository of its own and is left alone."""

    def broken() -> bool:
        link = path / ".git"
        if link.is_file():
            text = link.read_text(errors="replace").strip()
            if not text.startswith("gitdir:"):
                return False
            admin = path / text.removeprefix("gitdir:").strip()  # an absolute one stays as is
            return not (admin / "HEAD").is_file()
        if link.exists() or not path.is_dir():
            return False
        listed = git(root, "worktree", "list", "--porcelain", "-z", check=False).split("\0")
        return f"worktree {path.resolve()}" in listed

    git(root, "worktree", "remove", "--force", str(path), check=False)
    if broken():
        shutil.rmtree(path, ignore_errors=True)
    git(root, "worktree", "prune", check=False)


CHECKOUT_ATTEMPTS = 5


def checkout(worktree: Path, commit: str, rewrite: Iterable[str] = ()) -> None:
    """Make the worktree's files exactly `commit` (tracked files and the index; untracked and
    ignored files and nested repositories removed). `rewrite`: tracked files to write again from
    the commit whatever their stamps say (ones a run was seen to touch).

    Ignored files go too: what one commit's run left (a `__pycache__` whose .pyc claims to be a
    protected module's, a build output newer than its sources) would otherwise be what a later
    commit's run executes. The shared links ([verify] share) are made again before each run.

    core.trustctime=false: the protected fence (guardrails.protected_fence) chmods protected
    files around each run, which changes their ctime; a forced checkout trusting ctime would
    rewrite every such file (same content, new mtime), and a write inside a fenced run is
    tampering. Content changes usually show in mtime and size, but a process can rewrite a file
    in place and set both back: git then takes it as unchanged, so the files a run touched are
    removed first, and git has to write them."""
    for name in rewrite:
        path = worktree / name
        if path.is_symlink() or path.is_file():
            path.unlink(missing_ok=True)
    for attempt in range(CHECKOUT_ATTEMPTS):
        try:
            git(worktree, "-c", "core.trustctime=false", "checkout", "--quiet", "--force",
                "--detach", commit)
            break
        except GitError as err:
            # Another process writing the worktree (a daemon, an editor saving) can create a
            # file between git's unlink and its create: "unable to create file X: File
            # exists". Made again, the commit is restored instead of the harness stopping.
            if "unable to create file" not in str(err) or attempt == CHECKOUT_ATTEMPTS - 1:
                raise
            time.sleep(0.05 * (attempt + 1))
    remove_untracked(worktree)


def remove_untracked(worktree: Path) -> None:
    """Remove the worktree's untracked and ignored files and nested repositories: what is left
    is the commit (and the shared links, made again before each run, go too)."""
    # -ff: a nested repository someone created in the worktree goes too (-f alone keeps it);
    # -x: ignored files too (see checkout).
    git(worktree, "clean", "-ffdqx")


# --- bundles ------------------------------------------------------------------------------


BUNDLE_REFS = "refs/autoresearch/bundle/"
# The temporary directories a session makes its bundles in (named by `process_tree.owned_prefix`).
BUNDLES_PREFIX = "autoresearch-bundles-"


def create_bundle(repo: Path, commit: str, path: Path, exclude: Iterable[str] = ()) -> Path:
    """A git bundle at `path` holding `commit` and its history (less what `exclude` commits, which
    the receiver has, already hold): how a candidate travels to a machine that runs it remotely.
    The bundle names it `refs/autoresearch/bundle/<32 hex>`, a ref that exists only while the
    bundle is made: its name says which process made it (`_bundle_ref`), so that the ref of one
    killed meanwhile is removed when the next session opens (`remove_stale_bundles`); and part
    of it is random, so that two threads bundling the same commit at once do not delete each
    other's."""
    ref = BUNDLE_REFS + _bundle_ref()
    git(repo, "update-ref", ref, commit)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        git(repo, "bundle", "create", "--quiet", str(path), ref, *(f"^{e}" for e in exclude))
    finally:
        git(repo, "update-ref", "-d", ref, check=False)
    return path


def _bundle_ref() -> str:
    """32 hex digits: this process's pid (8), its start in milliseconds since the epoch (16),
    and 8 random. Hex only, as every reader of these refs expects (the agent's guard leaves
    them alone by that shape: proposers/agent/sessions.py)."""
    pid, _, start = owner_token().partition(":")
    millis = round(float(start or 0) * 1000)
    return f"{int(pid):08x}{millis:016x}{secrets.token_hex(4)}"


def _bundle_owner_alive(name: str) -> bool:
    """Whether the process a bundle ref's name (`_bundle_ref`) names still runs. One made before
    names carried their owner (a random uuid) names no live process, and goes too."""
    try:
        pid, millis = int(name[:8], 16), int(name[8:24], 16)
    except ValueError:
        return False
    return owner_alive(f"{pid}:{millis / 1000:.3f}" if millis else str(pid))


def remove_stale_bundles(repo: Path) -> list[str]:
    """Remove what a process killed while it made a bundle left: its ref in `repo` (which would
    keep the commit and its history from gc for good) and its directory of bundles in the
    temporary directory (hundreds of MB for a big repository). A live process's are kept (another
    session bundling now). Returns what was removed."""
    stale = {ref: sha for ref, sha in refs_under(repo, BUNDLE_REFS).items()
             if not _bundle_owner_alive(ref.removeprefix(BUNDLE_REFS))}
    removed = []
    for ref, sha in stale.items():  # compare-and-swap: a ref moved meanwhile is someone's
        if run_git(repo, "update-ref", "-d", ref, sha).returncode == 0:
            removed.append(ref)
    for directory in Path(tempfile.gettempdir()).glob(f"{BUNDLES_PREFIX}*"):
        if owner_gone(directory.name, BUNDLES_PREFIX):
            shutil.rmtree(directory, ignore_errors=True)
            removed.append(str(directory))
    return removed


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
