"""Recovery after any stop, kill -9 included: make git and the slots agree with the ledger.

The ledger is the truth. On open (a resume, or a session whose runs were cut short) the
leftover processes of earlier runs are killed, the slots are emptied of what runs left, the
experiments left open are ended as interrupted, the parked commits get their refs back, and the
session branch is put at the ledger's incumbent (commits git has that the ledger does not are
saved under a ref first), before every slot is made to hold it.

The ledger may also know less than git and the session's files: restored from a backup taken
before the last experiments (README, "When the ledger is damaged"). Their parked commits, logs
and results.tsv rows are kept, and new experiments are numbered past them, never reusing an id.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from autoresearch import gitops
from autoresearch.checkout_sync import (
    refuse_session_branch_checked_out,
    require_session_commits,
    save_unknown_commits,
)
from autoresearch.executor import run_id_prefix
from autoresearch.gitops.stale_locks import remove_stale_locks
from autoresearch.ledger import TrialStatus
from autoresearch.ledger.experiment_tables import NUMBERED_PAST, NUMBERING_EVENT
from autoresearch.results_tsv import experiment_ids
from autoresearch.runner import kill_leftovers

if TYPE_CHECKING:
    from autoresearch.session import Session


def recover(s: Session) -> str:
    """Make git agree with the ledger after any stop, including kill -9; returns the tip."""
    # Before anything is written: a ledger whose commits this repository lacks is refused.
    s.history.load()
    incumbent = s.history.incumbent
    require_session_commits(s.root, s.row, incumbent.commit_sha if incumbent else None)
    # This tag's leftovers, and those of any tag of this repository whose orchestrator died.
    killed = kill_leftovers(run_id_prefix(s.paths.repo_key, s.paths.tag),
                            orphans_of=s.paths.repo_run_ids)
    # Before anything is written: what the runs left in the slots (a checkpoint that filled
    # the disk) would fail the first ledger write of every resume. The slots hold nothing
    # else of value; prepare() below makes them the incumbent again.
    for slot in s.slots.all:
        if gitops.links_to(s.root, slot.worktree):
            gitops.remove_untracked(slot.worktree)
    if killed:
        s.event("recovery", f"killed {killed} leftover process(es) of an earlier run")
    # Before any git step in the slots: a process group killed mid-checkout left its locks.
    if locks := remove_stale_locks(s.root, [slot.worktree for slot in s.slots.all],
                                   s.paths.branch, f"refs/autoresearch/{s.paths.tag}"):
        s.event("recovery", "removed the git locks a killed process left: "
                + ", ".join(str(lock) for lock in locks))
    # A process killed while it made a bundle for a remote run (any session of this repository)
    # left a ref that would keep its commits from gc for good, and a bundle in the temp dir.
    if stale := gitops.remove_stale_bundles(s.root):
        s.event("recovery", "removed what a killed process left while it made a bundle: "
                + ", ".join(stale))
    if s.lock.cleared_stale:
        s.event("recovery", "cleared a stale lock of dead process "
                f"{s.lock.cleared_stale.get('pid')}")
    left_open = s.ledger.open_experiments(s.row.id)
    for exp in left_open:  # any number: they may overlap
        # Ended when it was last seen at work, not now: the hours between a kill and this
        # resume are no one's work (the time limits and the machine-time spend count it).
        s.ledger.finish_experiment(
            exp.id, status=TrialStatus.INTERRUPTED,
            reason="the session stopped mid-experiment; marked interrupted on resume",
            finished_at=s.ledger.last_sign_of_life(exp.id),
        )
        s.event("recovery", f"{exp.id} was left {exp.status}; marked interrupted", exp.id)
    if left_open:  # read again only when that changed it (~0.25 s at 2,250 experiments)
        s.history.load()
        s.history.write_results(s.paths.results_tsv)  # the view says so too, at once
    s.size_timeout(r for runs in s.history.runs.values() for r in runs)
    _restore_parked(s)
    _number_past_unrecorded(s)
    # The ledger is the truth: the branch points at its incumbent, whatever git says.
    incumbent = s.history.incumbent
    tip = incumbent.commit_sha if incumbent else s.row.base_commit
    assert tip is not None
    gitops.ensure_branch(s.root, s.paths.branch, tip)
    branch_tip = gitops.rev_parse(s.root, f"refs/heads/{s.paths.branch}")
    if branch_tip != tip:
        # No ref moves under a checkout: a start refused one already, `report --verify` not.
        refuse_session_branch_checked_out(s.root, s.paths.branch)
        saved = save_unknown_commits(s.root, s.paths.tag, s.paths.branch,
                                     s.history, s.row.base_commit, branch_tip, tip)
        if saved:
            s.event("recovery", saved)
            s.notices.append(saved)
    s.branch.reset(branch_tip, tip)  # compare-and-swap from what was read; where it is now
    if branch_tip != tip:
        s.event("recovery", f"branch reset to the ledger's incumbent {tip[:10]}")
    s.slots.prepare(tip)
    return tip

def _restore_parked(s: Session) -> None:
    """Every commit the ledger parked keeps its ref under refs/autoresearch/<tag>/discarded/.

    A trial creates the ref before it records the verdict, but a kill -9 can fall between
    the commit and the ref (or someone deleted refs): re-create the missing ones.
    """
    by_id = {e.id: e for e in s.history.experiments}
    want: dict[str, str] = {}
    for e in s.history.experiments:
        if e.kind != "baseline" and e.commit_sha and e.status != TrialStatus.KEEP:
            want[s.paths.discarded_ref(e.id)] = e.commit_sha
    for exp_id, runs in s.history.runs.items():  # earlier attempts of the experiment
        exp = by_id.get(exp_id)
        for r in runs:
            if exp is not None and r.role == "candidate" and r.attempt < exp.attempts:
                want[s.paths.discarded_ref(f"{exp_id}-a{r.attempt}")] = r.commit_sha
    have = gitops.refs_under(s.root, s.paths.discarded_prefix)
    missing = {ref: sha for ref, sha in want.items() if ref not in have}
    alive = gitops.existing_commits(s.root, missing.values())
    missing = {ref: sha for ref, sha in missing.items() if sha in alive}
    if missing:
        gitops.update_refs(s.root, missing)
        names = ", ".join(ref.rsplit("/", 1)[1] for ref in sorted(missing))
        s.event("recovery", f"re-created the refs of {len(missing)} parked commit(s): {names}")


def _number_past_unrecorded(s: Session) -> None:
    """Experiments of this tag that git, the logs or results.tsv hold and the ledger does not
    (it was restored from an older backup) keep their ids: the next experiment is numbered past
    the highest, and an event says why (the ledger numbers from it: `Ledger.next_seq`)."""
    tag = s.paths.tag
    own = re.compile(re.escape(tag) + r"-(\d+)(?:-a\d+)?")
    logs = s.paths.session_dir / "logs"
    places = {
        "parked commits (refs/autoresearch/" + tag + "/discarded/)":
            [ref.rsplit("/", 1)[1] for ref in gitops.refs_under(s.root, s.paths.discarded_prefix)],
        "logs (" + str(logs) + ")":
            [p.name for p in logs.iterdir()] if logs.is_dir() else [],
        "results.tsv": experiment_ids(s.paths.results_tsv),
    }
    numbered = s.ledger.next_seq(s.row.id)
    found: dict[int, set[str]] = {}  # sequence number past the ledger's -> where it was seen
    for place, names in places.items():
        for name in names:
            match = own.fullmatch(name)
            if match and int(match[1]) >= numbered:
                found.setdefault(int(match[1]), set()).add(place)
    if not found:
        return
    highest = max(found)
    seen = sorted({place for where in found.values() for place in where})
    message = (f"the ledger does not record {len(found)} experiment(s) found in "
               f"{', '.join(seen)}, up to {tag}-{highest:04d} (a ledger restored from an older "
               "backup?): they are kept (results.tsv marks their rows [not in the ledger]), and "
               f"new experiments are numbered from {tag}-{highest + 1:04d}")
    s.event(NUMBERING_EVENT, message, data={NUMBERED_PAST: highest})
    s.notices.append(message)
