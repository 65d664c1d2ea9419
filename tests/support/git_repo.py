"""Throwaway git repositories for tests: git with a fixed identity, and a repository made of
files in one commit. Every test that builds a repository uses these (tests/conftest.py re-exports
them, the views' ledger factory passes its own identity)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from pathlib import Path

IDENTITY: Mapping[str, str] = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
                               "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}


def git(cwd: Path, *args: str, identity: Mapping[str, str] = IDENTITY) -> str:
    """Run git in `cwd` as `identity` (a test must not depend on the user's git configuration);
    its stdout, stripped. A failing command raises CalledProcessError."""
    return subprocess.run(["git", *args], cwd=cwd, env={**os.environ, **identity}, check=True,
                          capture_output=True, text=True).stdout.strip()


def make_repo(path: Path, files: Mapping[str, str], *, message: str = "init",
              identity: Mapping[str, str] = IDENTITY) -> Path:
    """A new repository at `path` (created if need be) whose branch `main` has one commit
    holding `files` (relative path -> text)."""
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", "main", identity=identity)
    for name, content in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(content)
    git(path, "add", "-A", identity=identity)
    git(path, "commit", "-qm", message, identity=identity)
    return path


def commit_in_linked_worktree(repo: Path, linked: Path, branch: str) -> str:
    """A user's linked worktree of `repo` at `linked`, on `branch`, with a commit of theirs on
    it (a notes file); that commit's sha."""
    git(repo, "worktree", "add", "-q", str(linked), branch)
    (linked / "notes.txt").write_text("mine\n")
    git(linked, "add", "notes.txt")
    git(linked, "commit", "-qm", "mine, in a worktree on the session branch")
    return git(linked, "rev-parse", "HEAD")
