"""Replaying a group's commits onto the base with git plumbing alone, for `finalize`.

A file belongs to exactly one group, so its content at each step is exactly the source commit's:
the new commits are built in a private index (never the user's index, working tree or checkout),
keep their source's author, dates and message, and come out byte-identical when finalize runs
again.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from autoresearch.finalize.groups import SourceCommit
from autoresearch.gitops.runner import git

_ZERO = "0" * 40
# The trailer each commit finalize makes carries: the session commit it replays. It is how a
# later finalize tells the branches it wrote from anyone else's (see `_finalize_wrote`).
SOURCE_TRAILER = "Autoresearch-Source"


class PrivateIndex:
    """A private index file, so building trees never touches the user's index or checkout."""

    def __init__(self, repo: Path, directory: str) -> None:
        self.repo = repo
        self.env = {"GIT_INDEX_FILE": os.path.join(directory, f"index-{id(self)}")}

    def read(self, tree_ish: str) -> None:
        git(self.repo, "read-tree", tree_ish, env=self.env)

    def take(self, source: str, paths: list[str]) -> None:
        """Make `paths` in the index what they are in commit `source` (absent means deleted)."""
        if not paths:
            return
        listing = git(self.repo, "ls-tree", "-z", "--full-tree", source, "--", *paths)
        present: dict[str, str] = {}
        for entry in filter(None, listing.split("\0")):
            meta, path = entry.split("\t", 1)
            mode, _kind, sha = meta.split()
            present[path] = f"{mode} {sha}\t{path}"
        # Mode 0 in --index-info removes the path.
        lines = [present.get(p, f"0 {_ZERO}\t{p}") for p in paths]
        git(self.repo, "update-index", "-z", "--index-info", env=self.env,
            input_text="\0".join(lines) + "\0")

    def write(self) -> str:
        return git(self.repo, "write-tree", env=self.env).strip()


def _trailer_message(message: str, source: str) -> str:
    body = message.rstrip("\n")
    last = body.split("\n\n")[-1].splitlines()
    in_trailers = bool(last) and all(re.match(r"^[\w-]+: ", line) for line in last)
    return f"{body}{'' if in_trailers else chr(10)}\n{SOURCE_TRAILER}: {source}\n"


def _with_subject(message: str, subject: str) -> str:
    """The message with its first line (the subject) replaced; its body and trailers kept."""
    _, newline, rest = message.partition("\n")
    return subject + newline + rest


def replay_commits(repo: Path, index: PrivateIndex, base: str, commits: list[SourceCommit]) -> str:
    """New commits on `base`, one per source commit, with the same author, dates and message."""
    index.read(base)
    head = base
    for c in commits:
        index.take(c.sha, c.files)
        tree = index.write()
        fmt = "%an%x00%ae%x00%ad%x00%cn%x00%ce%x00%cd%x00%B"
        an, ae, ad, cn, ce, cd, message = git(repo, "show", "-s", "--date=raw", f"--format={fmt}",
                                              c.sha).split("\0", 6)
        env = {"GIT_AUTHOR_NAME": an, "GIT_AUTHOR_EMAIL": ae, "GIT_AUTHOR_DATE": ad,
               "GIT_COMMITTER_NAME": cn, "GIT_COMMITTER_EMAIL": ce, "GIT_COMMITTER_DATE": cd}
        if c.subject:
            message = _with_subject(message, c.subject)
        head = git(repo, "commit-tree", tree, "-p", head, "-F", "-", env=env,
                   input_text=_trailer_message(message, c.sha)).strip()
    return head
