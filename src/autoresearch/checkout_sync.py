"""A session and the user's checkout: what a start or a resume must reconcile between them.

The session measures from its own base on its own branch, never from the user's HEAD, so its
runs stay comparable across resumes. Where that meets the user's checkout:

- the session branch checked out in the user's checkout, or in any worktree of the
  repository, is refused (the session moves it);
- a session whose base or incumbent commit this repository lacks is refused (its ledger came
  from another repository, or the commits were deleted);
- on resume, a session whose baseline never passed starts again from HEAD (the user fixed the
  evaluation), and one that has a baseline names the protected files HEAD changed;
- commits someone made on the session branch are saved before the branch is reset to the
  ledger's incumbent;
- while the session runs, it moves its branch only from where it last set it (`SessionBranch`):
  a commit, reset or checkout of someone else's on the branch stops the session (exit 3), their
  commits saved as a resume saves them, instead of the branch being moved over or under them.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path

from autoresearch import gitops
from autoresearch.config import CONFIG_NAME, STATE_DIR, Config
from autoresearch.errors import PreconditionError
from autoresearch.gitops.history import diff_names, rev_list
from autoresearch.guardrails import protected_among
from autoresearch.history import History
from autoresearch.ledger import Ledger, SessionRow
from autoresearch.state import StatePaths
from autoresearch.stop_signals import SessionStopped


def refuse_session_branch_checked_out(root: Path, branch: str) -> None:
    """The session moves its branch as it keeps commits; a checkout sitting on it would be left
    behind, its index showing the kept change undone, and a commit made there would be reset
    over by the next resume. The same holds for a linked worktree (`git worktree add`) on it."""
    if gitops.current_branch(root) == branch:
        raise PreconditionError(
            f"your checkout is on the session branch {branch}, which the session moves as it "
            "keeps commits", where=str(root),
            fix="switch back to your own branch first (git switch -), and look at the "
                f"session's commits with git log {branch}")
    elsewhere = [w for w in checkouts_on(root, branch) if w.resolve() != root.resolve()]
    if elsewhere:
        worktree = elsewhere[0]
        raise PreconditionError(
            f"the worktree {worktree} is on the session branch {branch}, which the session "
            "moves as it keeps commits (and resets to its incumbent on resume, over commits "
            "made there)", where=str(worktree),
            fix=f"switch that worktree to another branch (git -C {shlex.quote(str(worktree))} "
                f"switch -c my-{branch.rsplit('/', 1)[-1]}) or remove it (git worktree remove "
                f"{shlex.quote(str(worktree))}), then run again")


def checkouts_on(root: Path, branch: str) -> list[Path]:
    """The worktrees of the repository (the user's checkout among them) that have the session
    branch checked out, other than the session's own slots: those are detached, and one switched
    onto the branch is made detached again. One git call."""
    slots = (root / STATE_DIR / "worktrees" / branch.split("/", 1)[1]).resolve()
    return [w for w in gitops.worktrees_on_branch(root, branch)
            if not w.resolve().is_relative_to(slots)]


class SessionBranch:
    """The session branch as this process last set it; every move the session makes goes here.

    A move is a compare-and-swap from where the session left the branch (`gitops.swap_ref`), so
    a commit, reset or rebase someone made on it meanwhile is never moved over (and left to the
    reflog), and it is not made while a checkout other than the session's slots has the branch:
    that checkout's HEAD would move underneath it, its index showing the kept changes undone.
    Either way the session stops (exit 3, as when its checkout or data changed under it), the
    commits it did not make saved under refs/autoresearch/<tag>/saved/ as a resume saves them,
    and the same command resumes (the branch back at the ledger's incumbent). One extra git call
    per keep (the worktree list); none per run."""

    def __init__(self, root: Path, paths: StatePaths) -> None:
        self.root = root
        self.paths = paths
        self.ref = f"refs/heads/{paths.branch}"
        self.at: str | None = None  # where the session last set it (the recovery sets it first)

    def reset(self, held: str, tip: str) -> None:
        """The recovery puts the branch at the ledger's incumbent `tip` from `held` (what it
        read there, once the commits the session did not make were saved)."""
        if held != tip and gitops.swap_ref(self.root, self.ref, tip, held) is not None:
            raise PreconditionError(
                f"the session branch {self.paths.branch} moved while the session was being "
                "resumed (a commit or reset made on it meanwhile)", where=str(self.root),
                fix="run the same command again: commits on the branch that the session did not "
                    f"make are saved under refs/autoresearch/{self.paths.tag}/saved/ before it "
                    "goes back to the session's incumbent")
        self.at = tip

    def keep(self, exp_id: str, commit: str, history: History, base: str) -> None:
        """Move the branch to the kept `commit` (experiment `exp_id`), or stop the session."""
        at = self.at
        assert at is not None, "the branch is moved only once the recovery has set it"
        elsewhere = checkouts_on(self.root, self.paths.branch)
        held = (gitops.read_ref(self.root, self.ref) if elsewhere
                else gitops.swap_ref(self.root, self.ref, commit, at))
        if held is None:
            self.at = commit
            return
        saved = self._saved(held, at, history, base)
        parked = (f"{exp_id}, which was to be kept, is recorded interrupted; its commit "
                  f"{commit[:10]} stays under {self.paths.discarded_ref(exp_id)}.")
        if elsewhere:
            checkout = elsewhere[0]
            if checkout.resolve() == self.root.resolve():
                here, switch = "your checkout", "git switch -"
            else:
                here = f"the worktree {checkout}"
                switch = (f"git -C {shlex.quote(str(checkout))} switch -c "
                          f"my-{self.paths.tag}")
            raise SessionStopped(
                f"{here} is on the session branch {self.paths.branch} (checked out while the "
                "session ran): the session stopped rather than move the branch under that "
                "checkout's HEAD, whose index would then show the kept changes undone. "
                f"{saved}{parked} To go on, switch that checkout to another branch ({switch}), "
                "then run the same command to resume (the session's commits: git log "
                f"{self.paths.branch}).", exit_code=3)
        now = f"points at {held[:10]}" if held else "was deleted"
        raise SessionStopped(
            f"the session branch {self.paths.branch} was moved while the session ran: it {now}, "
            f"not at {at[:10]} where the session last set it (a commit, reset or rebase made on "
            f"it). The session stopped rather than move the branch over that. {saved}{parked} "
            "Run the same command to resume: the branch goes back to the session's incumbent "
            f"{at[:10]}.", exit_code=3)

    def _saved(self, held: str, at: str, history: History, base: str) -> str:
        """The commits on the branch the session did not make, saved as a resume saves them;
        what to tell the user about them ("" when the branch did not move)."""
        if held == at:
            return ""
        saved = _save_unknown(self.root, self.paths.tag, history, base, held, at) if held else None
        if saved is None:
            return "It holds no commit the session did not make: nothing needed saving. "
        ref, count = saved
        return (f"Your {count} commit(s) on it (latest {held[:10]}) are saved as {ref} (git log "
                f"{ref}); build on them from there, not on the session branch. ")


def require_session_commits(root: Path, row: SessionRow, incumbent: str | None) -> None:
    """The session's base and incumbent must be commits of this repository: a ledger shared
    with another repository (a symlinked .autoresearch), or a branch deleted and collected,
    would otherwise fail in the middle of git with its raw error."""
    needed = {"base": row.base_commit, **({"incumbent": incumbent} if incumbent else {})}
    present = gitops.existing_commits(root, needed.values())
    for role, sha in needed.items():
        if sha in present:
            continue
        raise PreconditionError(
            f"session {row.tag}'s {role} commit {sha} is not in this repository (the ledger "
            "belongs to another repository, or the commit was deleted and garbage-collected)",
            where=str(root),
            fix=f"run in the repository the session ran in, or bring the commit back (git fetch "
                f"it from a clone that has it: git fetch <clone> {sha}); or start a new session "
                "here with --tag NEW")


@dataclass
class HeadFollowed:
    row: SessionRow  # the session's row, its base moved to HEAD when it started again
    restarted: bool
    notices: list[str] = field(default_factory=list)


def follow_head(root: Path, config: Config, ledger: Ledger, row: SessionRow,
                history: History) -> HeadFollowed:
    """On resume, the user's checkout may have moved since the session started (the usual
    reason: the baseline failed and they fixed the evaluation). A session whose baseline never
    passed has measured nothing yet: it starts again from HEAD. One that has a baseline goes on
    from its own base, and says so when the evaluation differs."""
    head = gitops.rev_parse(root, "HEAD")
    base = row.base_commit
    if head == base:
        return HeadFollowed(row, restarted=False)
    history.load()
    if history.baseline is None:
        ledger.restart_session_from(row.id, head)
        message = (f"the baseline never passed at {base[:10]}; starting again from your "
                   f"checkout's HEAD {head[:10]}")
        ledger.add_event(row.id, "session", message)
        return HeadFollowed(ledger.session(row.tag) or row, restarted=True, notices=[message])
    incumbent = history.incumbent
    require_session_commits(root, row, incumbent.commit_sha if incumbent else None)
    # autoresearch.toml is read from the checkout at every start (resume_contract says
    # which of its changes a session refuses); the evaluation's files come from the base.
    changed = [path for path in protected_among(diff_names(root, base, head), config.all_protected)
               if path != CONFIG_NAME]
    if not changed:
        return HeadFollowed(row, restarted=False)
    return HeadFollowed(row, restarted=False, notices=[
        f"your checkout's {', '.join(changed[:5])}{' …' if len(changed) > 5 else ''} "
        f"differ(s) from the session's base {base[:10]}: this session goes on measuring with "
        "its own copy, so its runs stay comparable. To measure with yours, start a new "
        "session: autoresearch run --tag NEW"])


def save_unknown_commits(root: Path, tag: str, branch: str, history: History, base: str,
                         branch_tip: str, tip: str) -> str | None:
    """The branch is about to be reset to the ledger's incumbent `tip`. Commits on it that the
    session never made are not thrown away: the old tip is kept under
    refs/autoresearch/<tag>/saved/. Returns what to tell the user, or None."""
    saved = _save_unknown(root, tag, history, base, branch_tip, tip)
    if saved is None:
        return None
    ref, count = saved
    return (f"the branch {branch} held {count} commit(s) this session did not make "
            f"(latest {branch_tip[:10]}); saved as {ref} before the branch went back to the "
            f"incumbent {tip[:10]}")


def _save_unknown(root: Path, tag: str, history: History, base: str, branch_tip: str,
                  tip: str) -> tuple[str, int] | None:
    """Keep `branch_tip` under refs/autoresearch/<tag>/saved/ when the commits it has beyond
    `tip` include one the session never made: the ref, and how many there are; or None."""
    made = {e.commit_sha for e in history.experiments if e.commit_sha}
    made |= {r.commit_sha for runs in history.runs.values() for r in runs}
    made.add(base)
    unknown = [c for c in rev_list(root, [branch_tip, f"^{tip}"]) if c not in made]
    if not unknown:
        return None
    return save_commits(root, tag, branch_tip), len(unknown)


def save_commits(root: Path, tag: str, tip: str) -> str:
    """Keep commit `tip` and its history reachable under refs/autoresearch/<tag>/saved/<sha12>,
    the one place commits about to be dropped from a ref are kept (a resume, a moved session
    branch, the agent guard putting back a ref): returns the ref. Through `gitops.update_ref`,
    so a guard watching refs meanwhile knows it for the harness's own."""
    ref = f"refs/autoresearch/{tag}/saved/{tip[:12]}"
    gitops.update_ref(root, ref, tip)
    return ref
