"""The fence around one agent run: what it may not do to the worktree besides editing files.

`RunGuard.take` records git's files (`gitops.control_files`), git's state (`gitstate`) and
every untracked file (`untracked`) right before the agent CLI starts; `check` right after it exits first puts
git's files back (before any git command: with a repointed `.git` or a planted config, git would
answer from the agent's copy or run its code), then names every violation (the agent ran git,
changed git's files, created a nested repository, or changed a git-ignored file or a
`.gitignore`), puts the index back on HEAD if the agent staged something (the change is read from
the working tree) and deletes the regenerable caches the run wrote; `checkout_changes` names what
it changed in the user's own checkout (`checkout`: reported, not undone); `restore` undoes a
refused run completely: git's files, the worktrees added during it (one holding uncommitted
work is left in place and named: it may be the user's, see `added_worktrees`), HEAD detached
where it was, refs moved back (the commits only such a ref held saved under
refs/autoresearch/<tag>/saved/ first), the tracked files and the index, and every untracked
file, ignored ones and nested repositories included.

The session branch moved during the run is not called a violation of the agent's
(`session_branch_moved`): a commit the user made on it from another terminal looks the same as
the agent's. Either way its commits are saved, it is put back (unless a worktree other than
the session's has it checked out: it is then left as is, as the session never moves it under a
checkout), and the proposer stops the session (exit 3), as the session stops when its branch
moves between keeps (`checkout_sync`).

Comparing just before with just after the call means that files the verify command produced
between agent runs (logs, `__pycache__/`, outputs) are never mistaken for the agent's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from autoresearch.gitops.control_files import GitFiles, describe
from autoresearch.gitops.runner import git
from autoresearch.proposers.agent.checkout import CheckoutSnapshot
from autoresearch.proposers.agent.gitstate import GitState
from autoresearch.proposers.agent.untracked import UntrackedSnapshot

GIT_RULE = ("the agent ran git: it may commit only on the detached HEAD it was given, and may "
            "not switch branches or move refs")
NESTED_RULE = ("the agent created a nested git repository (the harness's git cannot see, judge or "
               "commit the files in it)")
FILES_RULE = ("the agent may not touch git-ignored files or .gitignore files (the harness can "
              "neither see nor commit them)")


@dataclass(frozen=True)
class Restored:
    # What to tell the user of git's state: what was deliberately not moved back, and where
    # the commits of a ref that was put back are saved.
    left: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)  # ignored files that could not be put back
    branch_moved: str | None = None  # `RunGuard.session_branch_moved`, seen before the undo


@dataclass(frozen=True)
class RunGuard:
    gitfiles: GitFiles
    git: GitState
    files: UntrackedSnapshot
    checkout: CheckoutSnapshot
    # The messages of the commits the run made on its detached HEAD, folded back into the
    # working tree by `check` (see `gitstate`): filled in there, oldest first.
    folded: list[str] = field(default_factory=list)

    @classmethod
    def take(cls, cwd: Path, tag: str) -> RunGuard:
        return cls(gitfiles=GitFiles.take(cwd), git=GitState.take(cwd, tag),
                   files=UntrackedSnapshot.take(cwd),
                   checkout=CheckoutSnapshot.take(cwd))

    def session_branch_moved(self, cwd: Path) -> str | None:
        """The session branch moved during the run by someone other than the harness, said as
        the session says it between keeps (`checkout_sync.SessionBranch`); None when it did
        not. Only once git's files are put back (`check` or `restore`): it runs git."""
        move = self.git.session_branch_move(cwd)
        if move is None:
            return None
        old, new = move
        branch = self.git.session_branch.removeprefix("refs/heads/")
        now = f"pointed at {new[:10]}" if new else "was deleted"
        was = f", not at {old[:10]} where the session last set it" if old else " (new)"
        return (f"the session branch {branch} was moved while the agent ran: it {now}{was} (a "
                "commit, reset or rebase made on it, by you or by the agent: the harness cannot "
                "tell which)")

    def checkout_changes(self) -> list[str]:
        """What the run changed in the user's own checkout (reported, never undone)."""
        return self.checkout.changes()

    def check(self, cwd: Path, scratch: Sequence[str] = ()) -> list[str]:
        """Every violation of the run, one sentence each (empty when there is none)."""
        problems: list[str] = []
        changed = describe(self.gitfiles.restore(), cwd)  # first: no git call before it
        if not changed:
            # An honest agent's own commits (aider's auto-commits): the change, not a violation.
            self.folded.extend(self.git.fold_own_commits(cwd))
        changed += self.git.changes(cwd)
        if changed:
            problems.append(f"{GIT_RULE} ({'; '.join(changed)})")
        else:
            self.git.reset_index(cwd)  # a `git add` or `git mv`: the working tree holds it
        verdict = self.files.judge(cwd, scratch)
        if verdict.nested:
            problems.append(f"{NESTED_RULE}: {', '.join(verdict.nested_repos[:10])}")
        if verdict.violations:
            shown = ", ".join(map(str, verdict.violations[:10]))
            more = len(verdict.violations) - 10
            problems.append(f"{FILES_RULE}: it changed {shown}" + (f" and {more} more" if more > 0 else ""))
        self.files.drop_caches(cwd, verdict)
        return problems

    def restore(self, cwd: Path) -> Restored:
        """Undo the run: git state first (a reset on a switched HEAD would move its branch), then
        the tracked files, then every untracked file."""
        self.gitfiles.restore()  # first, as in `check`
        moved = self.session_branch_moved(cwd)  # before `git.restore` puts it back
        # A user stashing in their checkout meanwhile shows there: their stash list is theirs.
        left = self.git.restore(cwd, user_active=bool(self.checkout.changes()))
        git(cwd, "reset", "--hard", "--quiet", self.git.head)
        lost = self.files.restore(cwd)
        return Restored(left=left, lost=lost, branch_moved=moved)
