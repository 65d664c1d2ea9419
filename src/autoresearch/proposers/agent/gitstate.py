"""What git says about the worktree besides its files, before and after one agent run.

The harness commits the agent's change itself, on the detached HEAD it left, and moves the
session branch only on a keep. An agent that runs git can break that: switch the worktree to the
session branch (the harness would then commit onto it), move or create refs, stash, flag files
`assume-unchanged` so `git status` stops showing them, or stage, move and remove files in the
index. This module records all of it before the run, names what changed afterwards, and puts it
back. Git's own files (config, hooks, attributes, the worktree's `.git` link, the user's global
config) are watched by `gitops.control_files`, which puts them back before any of this runs git.

What is compared:
- HEAD: detached, at the same commit;
- every ref (`git for-each-ref`), except other sessions' (`refs/heads/autoresearch/<other>`,
  `refs/autoresearch/<other>/`), which their own processes move while this agent runs, and the
  refs this process's harness moved meanwhile (`gitops.REF_JOURNAL`: a sibling slot's keep or
  park): a ref that holds what the harness last wrote to it is not the agent's doing;
- the index's assume-unchanged / skip-worktree flags;
- the index's entries (`git ls-files --stage`): not a violation by itself (an agent may `git add`
  or `git mv`), but the harness reads the change from the working tree, so `reset_index` puts the
  index back on HEAD first; otherwise a rename staged in the index would reach `git add` as a
  path that exists in neither and stop the session.

One git change is not a violation: commits made on the detached HEAD the run was given, on top
of it, moving no ref (aider commits each edit unless told not to; a Claude Code allowed to run
git may commit when it is done). `fold_own_commits` moves HEAD back to where it was and leaves
their content in the working tree, so the harness reads the change from there as always and
commits it once, itself; their messages can name the hypothesis. A commit that moves a branch
(the session's, the user's) or is made after a switch stays a violation.

What is restored: HEAD (detached at its commit), refs (compare-and-swap, so a concurrent change
is never overwritten blindly), the stash list and the index flags. A branch checked
out in another worktree (the user's checkout) is reported but left as it is: rewinding it would
make their files disagree with their branch.

The stash is shared by every worktree of the repository, so the user's own stashes live in the
same list as an agent's. The list is put back exactly as it was (same entries, same order: the
agent's entries dropped, any of the user's it dropped or popped stored again), unless an entry
the run added was made on a branch checked out in another worktree, or the caller saw the
user's checkout change meanwhile: then the user was stashing too and the list is left as is.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from autoresearch.gitops import REF_JOURNAL
from autoresearch.gitops.runner import GitError, git, run_git

_STASH = "refs/stash"
# A stash entry's message: "WIP on <branch>: <commit> <subject>" or "On <branch>: <message>".
_STASH_BRANCH = re.compile(r"^(?:WIP on|On) (?P<branch>.+?): ")

StashEntry = tuple[str, str]  # (commit, message), newest first in a list


def _head(cwd: Path) -> tuple[str | None, str]:
    symbolic = git(cwd, "symbolic-ref", "--quiet", "HEAD", check=False).strip() or None
    return symbolic, git(cwd, "rev-parse", "--verify", "HEAD").strip()


def _refs(cwd: Path) -> dict[str, str]:
    out = git(cwd, "for-each-ref", "--format=%(refname)%00%(objectname)")
    refs: dict[str, str] = {}
    for line in out.splitlines():
        name, _, sha = line.partition("\0")
        if name:
            refs[name] = sha
    return refs


def _flagged(cwd: Path) -> frozenset[str]:
    """Paths whose index entry hides changes: assume-unchanged (lowercase tag) or skip-worktree."""
    out = git(cwd, "ls-files", "-v", "-z")
    flagged = set()
    for entry in filter(None, out.split("\0")):
        tag, _, path = entry.partition(" ")
        if tag.islower() or tag == "S":
            flagged.add(path)
    return frozenset(flagged)


def _index(cwd: Path) -> str:
    """Every index entry: mode, object, stage and path (the flags are `_flagged`)."""
    return git(cwd, "ls-files", "--stage", "-z")


def _stash(cwd: Path) -> tuple[StashEntry, ...]:
    out = git(cwd, "stash", "list", "--format=%H%x00%gs")
    return tuple((sha, message) for sha, _, message in
                 (line.partition("\0") for line in out.splitlines()) if sha)


def _made_elsewhere(entry: StashEntry, elsewhere: set[str]) -> bool:
    """Whether a stash entry was made on a branch checked out in another worktree."""
    found = _STASH_BRANCH.match(entry[1])
    return found is not None and f"refs/heads/{found.group('branch')}" in elsewhere


def _checked_out_elsewhere(cwd: Path) -> set[str]:
    """Branches checked out in other worktrees of the repository (the user's checkout)."""
    here = git(cwd, "rev-parse", "--path-format=absolute", "--show-toplevel").strip()
    out = git(cwd, "worktree", "list", "--porcelain")
    branches: set[str] = set()
    path = ""
    for line in out.splitlines():
        if line.startswith("worktree "):
            path = line[len("worktree "):]
        elif line.startswith("branch ") and os.path.realpath(path) != os.path.realpath(here):
            branches.add(line[len("branch "):])
    return branches


@dataclass(frozen=True)
class GitState:
    """HEAD, refs, the index and its flags, and the stash at one moment."""

    tag: str
    head_ref: str | None  # the branch HEAD points at; None when detached (as the harness leaves it)
    head: str
    refs: Mapping[str, str]
    flagged: frozenset[str]
    index: str
    journal_mark: int = 0  # where the harness's own ref moves stood at `take`
    stash: tuple[StashEntry, ...] = ()

    @classmethod
    def take(cls, cwd: Path, tag: str) -> GitState:
        mark = REF_JOURNAL.mark()
        head_ref, head = _head(cwd)
        refs = cls._watched(_refs(cwd), tag)
        return cls(tag=tag, head_ref=head_ref, head=head, refs=refs, flagged=_flagged(cwd),
                   index=_index(cwd), journal_mark=mark,
                   stash=_stash(cwd) if _STASH in refs else ())

    def _harness_moved(self, name: str, now: str | None) -> bool:
        """The ref holds what this process's harness wrote to it since `take` (not the agent)."""
        moved = REF_JOURNAL.since(self.journal_mark)
        return name in moved and moved[name] == now

    @staticmethod
    def _watched(refs: Mapping[str, str], tag: str) -> dict[str, str]:
        """Every ref but other sessions' (their processes move them while this agent runs)."""
        def other_session(name: str) -> bool:
            for prefix in ("refs/heads/autoresearch/", "refs/autoresearch/"):
                if name.startswith(prefix):
                    rest = name[len(prefix):]
                    return rest != tag and not rest.startswith(tag + "/")
            return False

        return {name: sha for name, sha in refs.items() if not other_session(name)}

    def changes(self, cwd: Path) -> list[str]:
        """What git state the run changed, one phrase each (empty when nothing did)."""
        now = GitState.take(cwd, self.tag)
        found: list[str] = []
        if now.head_ref != self.head_ref:
            found.append(f"HEAD was switched to {now.head_ref or 'a detached commit'}")
        if now.head != self.head:
            found.append(f"HEAD moved from {self.head[:10]} to {now.head[:10]} (a commit or reset)")
        for name in sorted(set(self.refs) | set(now.refs)):
            old, new = self.refs.get(name), now.refs.get(name)
            if old == new or self._harness_moved(name, new):
                continue
            if old is None:
                found.append(f"{name} was created at {new[:10] if new else '?'}")
            elif new is None:
                found.append(f"{name} was deleted (it was at {old[:10]})")
            else:
                found.append(f"{name} moved from {old[:10]} to {new[:10]}")
        if now.flagged != self.flagged:
            changed = sorted(now.flagged ^ self.flagged)
            found.append("the index's assume-unchanged/skip-worktree flags changed on "
                         + ", ".join(changed[:5]))
        if now.stash != self.stash and now.refs.get(_STASH) == self.refs.get(_STASH):
            found.append("the stash list was changed (an entry dropped or stored)")
        return found

    def fold_own_commits(self, cwd: Path) -> list[str]:
        """If the run's only git change is commits on top of the detached HEAD it was given,
        move HEAD back there (their content stays in the working tree) and return their
        messages, oldest first; otherwise change nothing and return []."""
        head_ref, head = _head(cwd)
        if head_ref is not None or self.head_ref is not None or head == self.head:
            return []
        if run_git(cwd, "merge-base", "--is-ancestor", self.head, head).returncode != 0:
            return []  # not on top of it: a reset elsewhere, or a rewritten history
        if any(not phrase.startswith("HEAD moved") for phrase in self.changes(cwd)):
            return []
        out = git(cwd, "log", "--reverse", "--format=%B%x00", f"{self.head}..{head}")
        messages = [m.strip() for m in out.split("\0") if m.strip()]
        git(cwd, "reset", "--quiet", "--mixed", self.head)
        return messages or ["(a commit without a message)"]

    def reset_index(self, cwd: Path) -> bool:
        """Put the index back on HEAD if the run changed its entries (the working tree is left
        alone: it holds the change); whether it had to."""
        if _index(cwd) == self.index:
            return False
        git(cwd, "reset", "--quiet", "--mixed", "HEAD")
        return True

    def restore(self, cwd: Path, *, user_active: bool = False) -> list[str]:
        """Put HEAD, refs, the stash and the flags back; returns what was left as is, and why.
        ``user_active``: the user's checkout changed during the run (their stashes are then
        left alone). The index itself is the caller's `reset --hard`."""
        left: list[str] = []
        # Detach first, without touching files: a reset on a symbolic HEAD would move its branch.
        git(cwd, "update-ref", "--no-deref", "HEAD", self.head)
        elsewhere = _checked_out_elsewhere(cwd)
        now = _refs(cwd)
        for name in sorted(set(self.refs) | set(self._watched(now, self.tag))):
            old, new = self.refs.get(name), now.get(name)
            if old == new or self._harness_moved(name, new):
                continue
            if name == _STASH:
                continue  # below, as a list
            if name in elsewhere:
                left.append(f"{name} was left as is (it is checked out in another worktree; "
                            f"it points at {new or 'nothing'})")
                continue
            with contextlib.suppress(GitError):  # it moved again meanwhile: leave it
                if old is None:
                    git(cwd, "update-ref", "-d", name, new or "")
                else:
                    git(cwd, "update-ref", name, old, new or "0" * len(old))
        if _stash(cwd) != self.stash:
            left += self._restore_stash(cwd, elsewhere, user_active)
        flags = _flagged(cwd)
        added = sorted(flags - self.flagged)
        if added:
            git(cwd, "update-index", "--no-assume-unchanged", "--no-skip-worktree", "--", *added)
        return left

    def _restore_stash(self, cwd: Path, elsewhere: set[str], user_active: bool) -> list[str]:
        """Make `git stash list` what it was before the run (see the module's docstring)."""
        now = _stash(cwd)
        added = [entry for entry in now if entry not in self.stash]
        if any(_made_elsewhere(entry, elsewhere) for entry in added):
            return [f"{_STASH} was left as is (an entry was made in another worktree meanwhile, "
                    "maybe yours; `git stash list` shows every entry)"]
        if user_active:
            return [f"{_STASH} was left as is (your checkout changed during the run, so its "
                    "entries may be yours; `git stash list` shows every entry)"]
        # Rebuilt from scratch, oldest first: `git stash store` only ever pushes on top.
        git(cwd, "update-ref", "-d", _STASH)
        for sha, message in reversed(self.stash):
            git(cwd, "stash", "store", "-m", message, sha)
        if _stash(cwd) != self.stash:
            return [f"{_STASH} could not be put back as it was; `git stash list` shows it"]
        return []
