"""A session and the user's checkout: what a start or a resume must reconcile between them.

The session measures from its own base on its own branch, never from the user's HEAD, so its
runs stay comparable across resumes. Three places where that meets the user's checkout:

- the session branch checked out in the user's checkout, or in any worktree of the
  repository, is refused (the session moves it);
- a session whose base or incumbent commit this repository lacks is refused (its ledger came
  from another repository, or the commits were deleted);
- on resume, a session whose baseline never passed starts again from HEAD (the user fixed the
  evaluation), and one that has a baseline names the protected files HEAD changed;
- commits someone made on the session branch are saved before the branch is reset to the
  ledger's incumbent.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path

from autoresearch import gitops
from autoresearch.config import CONFIG_NAME, STATE_DIR, Config
from autoresearch.errors import PreconditionError
from autoresearch.gitops.history import diff_names, rev_list
from autoresearch.globs import select
from autoresearch.history import History
from autoresearch.ledger import Ledger, SessionRow


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
    # The session's own slots are detached; one switched onto the branch is made detached again.
    slots = root / STATE_DIR / "worktrees" / branch.split("/", 1)[1]
    elsewhere = [w for w in gitops.worktrees_on_branch(root, branch)
                 if w.resolve() != root.resolve() and not w.resolve().is_relative_to(
                     slots.resolve())]
    if elsewhere:
        worktree = elsewhere[0]
        raise PreconditionError(
            f"the worktree {worktree} is on the session branch {branch}, which the session "
            "moves as it keeps commits (and resets to its incumbent on resume, over commits "
            "made there)", where=str(worktree),
            fix=f"switch that worktree to another branch (git -C {shlex.quote(str(worktree))} "
                f"switch -c my-{branch.rsplit('/', 1)[-1]}) or remove it (git worktree remove "
                f"{shlex.quote(str(worktree))}), then run again")


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
    changed = [path for path in select(diff_names(root, base, head), config.all_protected)
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
    made = {e.commit_sha for e in history.experiments if e.commit_sha}
    made |= {r.commit_sha for runs in history.runs.values() for r in runs}
    made.add(base)
    unknown = [c for c in rev_list(root, [branch_tip, f"^{tip}"]) if c not in made]
    if not unknown:
        return None
    ref = f"refs/autoresearch/{tag}/saved/{branch_tip[:12]}"
    gitops.update_ref(root, ref, branch_tip)
    return (f"the branch {branch} held {len(unknown)} commit(s) this session did not make "
            f"(latest {branch_tip[:10]}); saved as {ref} before the branch went back to the "
            f"incumbent {tip[:10]}")
