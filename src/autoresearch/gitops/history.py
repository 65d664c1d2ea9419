"""Reading history: what a commit holds and changes, for the views, `finalize`, the guardrails
and the proposers. Nothing here writes to the repository."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from autoresearch.gitops.runner import GitError, git, git_names, is_sha, run_git


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
    return git_names(repo, "diff-tree", "--no-commit-id", "--name-only", "--no-renames", "-r",
                     "-z", "--root", sha)


def diff_names(repo: Path, a: str, b: str) -> list[str]:
    return git_names(repo, "diff", "--name-only", "--no-renames", "-z", a, b, "--")


def rev_list(repo: Path, spec: Sequence[str]) -> list[str]:
    return git(repo, "rev-list", *spec).split()


def is_ancestor(repo: Path, ancestor: str, descendant: str) -> bool:
    return run_git(repo, "merge-base", "--is-ancestor", ancestor, descendant).returncode == 0
