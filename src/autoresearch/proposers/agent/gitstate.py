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
- every ref (`git for-each-ref`), except remote-tracking ones (`refs/remotes/`: a copy of
  another repository's branches that only a fetch, pull or push moves; the user fetching from
  another terminal moves them exactly as an agent's `git fetch` would, the harness never reads
  them, and putting them back would undo the user's fetch), those of another session that is live (see `sessions`:
  `refs/heads/autoresearch/<other>`, `refs/autoresearch/<other>/`, which its own process moves
  while this agent runs; a finished session's are its record and are watched like any other),
  and the refs this process's harness moved meanwhile (`gitops.REF_JOURNAL`: a sibling slot's
  keep or park): a ref that holds what the harness last wrote to it is not the agent's doing;
- the registered worktrees (`git worktree list`): a new one is a violation (an agent that checks
  a branch out in a worktree of its own can commit onto it), unless it is one the harness made
  meanwhile (`sessions.is_harness_worktree`);
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

The session branch is compared apart (`session_branch_move`), not as a phrase of `changes`: a
commit the user makes on it from another terminal while the agent runs looks exactly like the
agent's, so it is no violation of the agent's, and the proposer stops the session instead (exit 3,
as `checkout_sync.SessionBranch` does for the same move between keeps).

What is restored: the worktrees added during the run are removed when nothing in them would be
lost, and left in place, named, when they hold work (`added_worktrees`: the user may have added
one from another terminal), then HEAD (detached at its commit), refs (compare-and-swap, so a
concurrent change is never overwritten blindly), the stash list and the index flags. Before a
ref is moved back or deleted, the commits no ref would hold any more are saved under refs/autoresearch/<tag>/saved/<sha12> (`checkout_sync.save_commits`, where a
resume saves commits made on the session branch): they may be the user's, made meanwhile, and
must not be left to the reflog. A branch that was checked out in another worktree before the
run (the user's checkout) is put back only while that checkout's index still holds the commit it
was at (the agent moved it under them: their files then agree with it again); once they staged
or committed work of their own it is reported and left as it is, since rewinding it would make
their files disagree with their branch. Either way the proposer stops the session (their checkout's HEAD
moved). Which worktrees those are is what they were before the run, never after (a worktree the
agent added must not shelter the branch it moved), but for a worktree added during the run that
was left in place because it holds work: a branch checked out there is treated the same way.
That holds for the session branch too (the session never moves it under a checkout either,
`checkout_sync.SessionBranch`): left as is, it stops the session all the same
(`session_branch_move`), and a resume is refused until that worktree is off it. Session refs
without a checkout are always put back (a session branch is a record; the session's own
worktrees are detached).

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
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from autoresearch.checkout_sync import save_commits
from autoresearch.gitops import REF_JOURNAL
from autoresearch.gitops.runner import GitError, git, run_git
from autoresearch.proposers.agent import added_worktrees, sessions
from autoresearch.proposers.agent.sessions import Worktrees

_STASH = "refs/stash"
_REMOTE_TRACKING = "refs/remotes/"
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
        if name and not sessions.is_transient_harness_ref(name):
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


def _checkout_agrees(checkout: str, old: str) -> bool:
    """Whether a branch moved under another checkout (the user's) can be put back: that
    checkout's index still holds the old commit's tree, so its files agree with the branch
    again. One whose index moved on (the user committed meanwhile) is left as it is. The
    caller's move is a compare-and-swap, so a move made meanwhile is never overwritten."""
    if not os.path.isdir(checkout):
        return False  # its directory is gone (git still counts the branch checked out there)
    return run_git(Path(checkout), "diff", "--cached", "--quiet", old, "--").returncode == 0


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
    worktrees: Worktrees = field(default_factory=dict)
    root: Path | None = None  # where the session locks are (`sessions.state_root`)
    live: frozenset[str] = frozenset()  # the other sessions running at `take`

    @classmethod
    def take(cls, cwd: Path, tag: str) -> GitState:
        mark = REF_JOURNAL.mark()
        head_ref, head = _head(cwd)
        refs = _refs(cwd)
        trees = sessions.worktrees(cwd)
        root = sessions.state_root(cwd)
        live = sessions.live_sessions(root, sessions.candidate_tags(refs, trees, root) - {tag})
        return cls(tag=tag, head_ref=head_ref, head=head, refs=refs, flagged=_flagged(cwd),
                   index=_index(cwd), journal_mark=mark,
                   stash=_stash(cwd) if _STASH in refs else (), worktrees=trees, root=root,
                   live=live)

    def _harness_moved(self, name: str, now: str | None) -> bool:
        """The ref holds what this process's harness wrote to it since `take` (not the agent)."""
        moved = REF_JOURNAL.since(self.journal_mark)
        return name in moved and moved[name] == now

    @property
    def session_branch(self) -> str:
        return f"{sessions.SESSION_REF_PREFIXES[0]}{self.tag}"

    def session_branch_move(self, cwd: Path) -> tuple[str | None, str | None] | None:
        """Where the session branch was at `take` and is now, if anyone but the harness moved
        it meanwhile (the agent, or the user committing on it): None when it did not move."""
        old = self.refs.get(self.session_branch)
        new = _refs(cwd).get(self.session_branch)
        if old == new or self._harness_moved(self.session_branch, new):
            return None
        return old, new

    def _not_the_agents(self, name: str, old: str | None, new: str | None,
                        live: frozenset[str]) -> bool:
        """A ref whose move is none of the run's concern: unmoved, moved by this process's
        harness or a live session, or remote-tracking (a fetch, the user's as likely as not)."""
        return (old == new or self._harness_moved(name, new) or self._live_session_ref(name, live)
                or name.startswith(_REMOTE_TRACKING))

    def _live_session_ref(self, name: str, live: frozenset[str]) -> bool:
        """A ref of another session that ran during the run (its process moves it, not the
        agent); a finished session's refs are watched like any other."""
        tag = sessions.session_of_ref(name)
        return tag is not None and tag != self.tag and tag in live

    def _live_now(self, cwd: Path, refs: Mapping[str, str], trees: Worktrees) -> frozenset[str]:
        """The other sessions live at `take` or now: one that started or ended during the run
        moved its refs itself."""
        root = self.root or sessions.state_root(cwd)
        tags = sessions.candidate_tags(refs, trees, root) - {self.tag} - self.live
        return self.live | sessions.live_sessions(root, tags)

    def _added_worktrees(self, cwd: Path, trees: Worktrees,
                         live: frozenset[str]) -> dict[str, str | None]:
        """Worktrees registered during the run that the harness did not make (the agent's)."""
        root = self.root or sessions.state_root(cwd)
        return {path: branch for path, branch in trees.items()
                if path not in self.worktrees
                and not sessions.is_harness_worktree(path, branch, root, live | {self.tag})}

    def changes(self, cwd: Path) -> list[str]:
        """What git state the run changed, one phrase each (empty when nothing did). The session
        branch is not among them: who moved it cannot be told (`session_branch_move`)."""
        now = GitState.take(cwd, self.tag)
        live = self.live | now.live
        found: list[str] = []
        if now.head_ref != self.head_ref:
            found.append(f"HEAD was switched to {now.head_ref or 'a detached commit'}")
        if now.head != self.head:
            found.append(f"HEAD moved from {self.head[:10]} to {now.head[:10]} (a commit or reset)")
        for name in sorted(set(self.refs) | set(now.refs)):
            old, new = self.refs.get(name), now.refs.get(name)
            if self._not_the_agents(name, old, new, live) or name == self.session_branch:
                continue
            if old is None:
                found.append(f"{name} was created at {new[:10] if new else '?'}")
            elif new is None:
                found.append(f"{name} was deleted (it was at {old[:10]})")
            else:
                found.append(f"{name} moved from {old[:10]} to {new[:10]}")
        for path, branch in sorted(self._added_worktrees(cwd, now.worktrees, live).items()):
            found.append(f"a worktree was added at {path}"
                         + (f" with {branch} checked out" if branch else ""))
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
        """Put HEAD, refs, the stash and the flags back; returns what to tell the user: what was
        left as is, and why, and where the commits a ref held were saved before it was put back.
        ``user_active``: the user's checkout changed during the run (their stashes are then
        left alone). The index itself is the caller's `reset --hard`."""
        left: list[str] = []
        # Detach first, without touching files: a reset on a symbolic HEAD would move its branch.
        git(cwd, "update-ref", "--no-deref", "HEAD", self.head)
        now, trees = _refs(cwd), sessions.worktrees(cwd)
        live = self._live_now(cwd, now, trees)
        # The worktrees added during the run go first: one may hold a branch the refs below move
        # back. Those holding work stay (`added_worktrees`), their branches then checked out
        # elsewhere like the user's checkout's.
        stayed: dict[str, str | None] = {}
        saved: set[str] = set()
        for path, branch in sorted(self._added_worktrees(cwd, trees, live).items()):
            settled = added_worktrees.settle(cwd, path, branch, self.tag)
            left += settled.notes
            if not settled.removed:
                stayed[path] = branch
            if settled.saved is not None:
                saved.add(settled.saved)
        elsewhere = self._checked_out_elsewhere(cwd, stayed)
        # What the refs will hold once put back: their values before the run, and those of the
        # refs the harness or a live session moved meanwhile (left as they are).
        held = {sha for name, sha in self.refs.items() if name != _STASH} | {self.head} | {
            sha for name, sha in now.items()
            if self._not_the_agents(name, None, sha, live)} | saved
        for name in sorted(set(self.refs) | set(now)):
            old, new = self.refs.get(name), now.get(name)
            if self._not_the_agents(name, old, new, live):
                continue
            if name == _STASH:
                continue  # below, as a list
            if name in elsewhere:
                checkout = elsewhere[name]
                if old is not None and new is not None and _checkout_agrees(checkout, old):
                    left += self._save_before_putting_back(cwd, name, old, new, held)
                    if run_git(cwd, "update-ref", name, old, new).returncode == 0:
                        left.append(f"{name}, checked out in {checkout}, was moved by the "
                                    f"agent to {new[:10]}: put back at {old[:10]}, where that "
                                    "checkout's files and index still are")
                        continue
                left.append(self._left_checked_out(name, checkout, old, new))
                continue
            left += self._save_before_putting_back(cwd, name, old, new, held)
            with contextlib.suppress(GitError):  # it moved again meanwhile: leave it
                if old is None:
                    git(cwd, "update-ref", "-d", name, new or "")
                else:
                    git(cwd, "update-ref", name, old, new or "0" * len(old))
        if _stash(cwd) != self.stash:
            left += self._restore_stash(cwd, set(elsewhere), user_active)
        flags = _flagged(cwd)
        added = sorted(flags - self.flagged)
        if added:
            git(cwd, "update-index", "--no-assume-unchanged", "--no-skip-worktree", "--", *added)
        return left

    def _left_checked_out(self, name: str, checkout: str, old: str | None,
                          new: str | None) -> str:
        """What to say of a branch left where the run moved it, under a checkout of its own."""
        said = (f"{name} was left as is (it is checked out in another worktree, {checkout}, "
                "whose files and index would show its commits undone if it moved under them; it "
                f"points at {new or 'nothing'}, and was at {old or 'nothing'})")
        if name == self.session_branch:
            said += (f"; switch that worktree to another branch before you resume (git -C "
                     f"{shlex.quote(checkout)} switch -c my-{self.tag})")
        return said

    def _save_before_putting_back(self, cwd: Path, name: str, old: str | None,
                                  new: str | None, held: set[str]) -> list[str]:
        """Before `name` goes back from `new` to `old` (deleted when `old` is None): keep the
        commits no ref would hold any more (none of `held`'s) under
        refs/autoresearch/<tag>/saved/, as a resume keeps commits on the session branch the
        session did not make. Whose they are cannot be told (the user's, made meanwhile, or the
        agent's): only the reflog would have them otherwise. What to tell the user ([] when
        nothing needed saving)."""
        if new is None:
            return []
        counted = run_git(cwd, "rev-list", "--count", "--stdin", input_bytes="".join(
            f"^{sha}\n" for sha in sorted(held)).encode() + f"{new}\n".encode())
        # A failure (an object the run deleted from under a ref) proves nothing held: save.
        lost = counted.stdout.decode().strip() if counted.returncode == 0 else "some"
        if lost in ("", "0"):
            return []
        ref = save_commits(cwd, self.tag, new)
        held.add(new)  # one ref saves them: another ref put back from the same commits needs none
        back = f"put back at {old[:10]}" if old is not None else "deleted"
        return [f"{name} held {lost} commit(s) no other ref holds (latest {new[:10]}): saved as "
                f"{ref} before it was {back} (git log {ref}; build on them from there)"]

    def _checked_out_elsewhere(self, cwd: Path, stayed: Worktrees) -> dict[str, str]:
        """The branches checked out in other worktrees of the repository, and where: those of
        before the run (the user's checkout), never the list after it, which holds the
        worktrees the agent added, but for the added ones left in place (`stayed`: they hold
        work, maybe the user's, that a branch moved under them would show undone)."""
        here = os.path.realpath(
            git(cwd, "rev-parse", "--path-format=absolute", "--show-toplevel").strip())
        return {branch: path for path, branch in [*self.worktrees.items(), *stayed.items()]
                if branch is not None and path != here}

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
