"""Judge a trial that ran: gather the evidence, ask the policy, make the runs it asks for, conclude.

The numbers are the policy's business (`policy.py`, the sequential test of `sequential.py` by
default): the engine only gathers `Evidence` (the candidate's and the incumbent's successful runs
with their start times, each marked as a control run or not, other commits' repeated runs, the
size of the change, and the best measured state's runs while the incumbent is a simplification
of it), calls `policy.step`, and does what the `Step` says: run the requested roles back to back
in the trial's slot (that is what makes them a pair), or conclude.

A would-be keep then passes three checks, in this order, in `settle` (and the first again after
the other two, which take time: a guard command, a review):
1. the incumbent must still be the one it was measured against: if another slot's trial was
   kept meanwhile, the winner is replayed (cherry-picked) onto the new incumbent and judged
   again from fresh runs; a conflict, or an effect that does not survive, drops it with the reason
   (so independent wins stack, and a stale win is never kept blindly);
2. the guards: metric bounds and guard commands;
3. the code-review gate (`[review] gate`, issue 11): the change is reviewed against its parent
   and a blocking finding turns the keep into a discard with the finding as its reason
   (`gatekeeper.py`, which also records the review and bills its model calls).
Then the branch moves (keep) or the commit is parked (everything else).
"""

from __future__ import annotations

import math
from statistics import fmean

from autoresearch.config import Config
from autoresearch.decision import check_metric_guards
from autoresearch.gatekeeper import review_keep
from autoresearch.gitops.commits import Committed, cherry_pick, commit_change
from autoresearch.gitops.history import diff_names, file_at
from autoresearch.heldout import check_heldout
from autoresearch.history import REFERENCE_EVENT
from autoresearch.ledger import TrialStatus
from autoresearch.policy import Evidence, Step
from autoresearch.sequential import HIDDEN_NOISE_HINT
from autoresearch.session import Session, SessionStopped
from autoresearch.statuses import happened
from autoresearch.trial import Program, Steps, Trial

# A winner is replayed onto a newer incumbent at most this often before it is dropped.
MAX_REPLAYS = 3


def judge(s: Session, trial: Trial) -> Program:
    """From the candidate's first successful run to its verdict."""
    replays: list[str] = []  # the incumbents it was replayed onto, by experiment id
    while True:
        evidence = gather(s, trial)
        step = s.policy.step(evidence)
        if step.action == "measure":
            for role in step.runs:
                commit = trial.commit if role == "candidate" else trial.parent
                assert commit is not None
                m = yield s.run_request(trial, role, commit)
                if not m.ok:
                    status, reason = _failed_run(s, trial, role, m.status)
                    s.end(trial, status, _replayed(replays) + reason)
                    return
            continue
        if step.action == "keep" and s.incumbent_commit() != trial.parent:
            dropped = replay(s, trial, replays)
            if dropped:
                s.end(trial, TrialStatus.DISCARD, f"{step.reason}; but {dropped}",
                      objective=_measured(evidence))
                return
            continue
        if (yield from settle(s, trial, step, evidence, _replayed(replays))):
            level = fmean(o.value for o in evidence.incumbent)
            if step.zero_noise and not math.isfinite(step.threshold) and not noise_accounted_for(
                    s.config, level):
                # A hidden-noise discard: so would every later candidate be (one baseline run
                # cannot show it before the incumbent is measured again, `repeats = 1`).
                raise hidden_noise_stop(s.config, f"{trial.id}'s runs and the incumbent's all "
                                        "repeated their values exactly", level)
            return
        # Another slot kept a change while this one's guards or review ran: replayed too.
        dropped = replay(s, trial, replays)
        if dropped:
            s.end(trial, TrialStatus.DISCARD, f"{step.reason}; its checks passed, but {dropped}",
                  objective=_measured(evidence))
            return


def _measured(evidence: Evidence) -> float | None:
    """The objective a dropped winner measured (its runs' mean): dropped for a conflict with a
    newer keep, not for want of a measurement, it is shown like any other discard's."""
    return fmean(o.value for o in evidence.candidate) if evidence.candidate else None


def noise_accounted_for(config: Config, level: float) -> bool:
    """Identical repeats can be judged: the target is declared deterministic, or only a gain
    beyond min_effect counts (a relative one resolved at `level`: 1 % of 0 is none)."""
    return config.decision.deterministic or config.decision.min_effect.resolve(level) > 0


def hidden_noise_stop(config: Config, what: str, level: float) -> SessionStopped:
    """Why the session stops when its repeats are identical and nothing says how to judge that
    (every candidate would be discarded as hidden noise), with the fix."""
    amount = config.decision.min_effect
    said = f"min_effect {amount}" + (f" (of {level:.6g}: 0)" if amount.relative else "")
    return SessionStopped(
        f"{what}: the noise is hidden, not absent (a fixed seed?), and with [decision] {said} "
        f"no candidate could be kept, whatever it gained. To judge candidates, "
        f"{HIDDEN_NOISE_HINT}; then run the same command", exit_code=5)


def gather(s: Session, trial: Trial) -> Evidence:
    """What the policy may use: this attempt's runs, the incumbent's (control arm), the other
    commits' repeated runs (noise and drift), and the best measured state's runs while the
    incumbent is a simplification of it (so simplifications cannot ratchet backwards)."""
    history, change = s.history, trial.change
    assert change is not None
    reference = history.reference_commit
    if reference == trial.parent:
        reference = None
    return Evidence(
        candidate=history.observations(change.sha),
        incumbent=history.observations(trial.parent),
        other_groups=history.noise_groups({change.sha, trial.parent, reference or ""}),
        lines_added=change.lines_added, lines_removed=change.lines_removed,
        reference=history.observations(reference) if reference else (),
    )


def _failed_run(s: Session, trial: Trial, role: str, status: str) -> tuple[TrialStatus, str]:
    if role == "candidate":
        return TrialStatus.CRASH, f"flaky: the candidate {happened(status)} on a confirmation run"
    s.event("warning", f"the incumbent failed a {role} run", trial.id)
    return TrialStatus.DISCARD, (f"the incumbent {happened(status)} during confirmation (an unstable "
                                 "environment?): no verdict possible")


def _replayed(replays: list[str]) -> str:
    return f"replayed onto {', then '.join(replays)} and measured again: " if replays else ""


def replay(s: Session, trial: Trial, replays: list[str]) -> str | None:
    """Put a winner measured against an older incumbent on top of the current one.

    Returns why it is dropped instead (a conflict, nothing left to add, too many moves), or None
    when its change now sits on the current incumbent as the trial's next attempt.
    """
    incumbent = s.history.incumbent
    assert incumbent is not None and incumbent.commit_sha is not None and trial.commit
    if len(replays) >= MAX_REPLAYS:
        return (f"the incumbent moved {len(replays) + 1} times while it was judged (last to "
                f"{incumbent.id}): not kept on a stale base")
    # The slot's runs may have repointed its `.git`: a replay must land in this repository.
    s.slots.holding(trial.slot, incumbent.commit_sha)
    hypothesis = trial.hypothesis
    picked = cherry_pick(trial.slot.worktree, trial.commit, incumbent.commit_sha)
    if picked is None and (remade := replayed_by_proposer(s, trial)) is not None:
        picked, hypothesis = remade
    if picked is None:
        return (f"the incumbent moved to {incumbent.id} while it ran, and its change conflicts "
                "with that keep")
    if picked.tree == incumbent.tree_sha:
        return f"the incumbent moved to {incumbent.id}, which already contains its change"
    replays.append(incumbent.id)
    s.event("replay", f"{trial.id} won against {trial.parent[:10]}; the incumbent moved to "
            f"{incumbent.id}: replayed onto it as {picked.sha[:10]}, to be measured again",
            trial.id)
    trial.next_attempt(hypothesis, parent=incumbent.commit_sha)
    trial.commit_made(picked)
    return None


def replayed_by_proposer(s: Session, trial: Trial) -> tuple[Committed, str] | None:
    """The winner's change made again by its proposer on the incumbent the slot now holds,
    when git's replay conflicts (tune sets its knobs' values again: `Proposer.replay`), with
    its hypothesis as told from there; None when the proposer cannot, or the change it gives
    touches other files."""
    assert trial.commit is not None
    files = diff_names(s.root, trial.parent, trial.commit)
    before = {f: file_at(s.root, trial.parent, f) for f in files}
    after = {f: file_at(s.root, trial.commit, f) for f in files}
    replayed = s.proposer.replay(before, after, trial.slot.worktree)
    if replayed is None or not replayed.edits or set(replayed.edits) != set(files):
        return None
    for file, text in replayed.edits.items():
        path = trial.slot.worktree / file
        if text is None:
            path.unlink(missing_ok=True)
        else:
            path.write_bytes(text.encode("utf-8", "surrogateescape"))
    return commit_change(trial.slot.worktree, trial.commit_message(replayed), files), \
        replayed.hypothesis


def settle(s: Session, trial: Trial, step: Step, evidence: Evidence, prefix: str) -> Steps[bool]:
    """Check a would-be keep, then move the branch or park the commit, and record it; False
    (nothing recorded) when the keep passed its checks but the incumbent moved meanwhile."""
    commit = trial.commit
    assert commit is not None
    status = TrialStatus.KEEP if step.action == "keep" else TrialStatus.DISCARD
    reason = prefix + step.reason
    cand = fmean(o.value for o in evidence.candidate)
    inc = fmean(o.value for o in evidence.incumbent)
    guards: list[dict[str, object]] = []
    if status == TrialStatus.KEEP:
        # A would-be keep is checked here: the guards, then the review gate.
        for g in check_metric_guards(s.config.guards, s.history.mean_metrics(commit),
                                     s.history.mean_metrics(trial.parent),
                                     lambda name: s.history.metric_runs(commit, name)):
            guards.append({"guard": g.label, "passed": g.passed, "detail": g.detail})
        guards += yield from command_guards(s, trial)
        failed = [g for g in guards if not g["passed"]]
        if failed:
            status = TrialStatus.DISCARD
            reason = "guard failed: " + "; ".join(f"{g['guard']}: {g['detail']}" for g in failed)
        else:  # issue 11: the review gate may turn the keep into a discard (gatekeeper.py)
            status, reason = review_keep(s, trial, status, reason)
        if status == TrialStatus.KEEP and s.incumbent_commit() != trial.parent:
            # A guard command or the review took long enough for another slot to keep: kept
            # here, the branch would hold this change on the old incumbent and lose that one.
            return False
    # A hidden-noise discard has no finite bar (σ = 0, min_effect 0): none is recorded.
    threshold = step.threshold if math.isfinite(step.threshold) else None
    # The difference recorded (and shown, and read by the proposers) is the verdict's own
    # estimate: the incumbent at the candidate's times, drift removed, interleaved runs weighed
    # most. Under drift the plain difference of the two means says otherwise (a machine that
    # got faster makes every later candidate look better than an incumbent measured early),
    # and a proposer steering by it chases the drift.
    estimate = s.config.metric.sign * step.improvement
    delta = estimate if math.isfinite(estimate) else cand - inc
    trial.judged(incumbent_objective=inc, delta=delta, threshold=threshold, guards=guards)
    if status == TrialStatus.KEEP:
        track_reference(s, trial, step)
    s.end(trial, status, reason, objective=cand)
    if status == TrialStatus.KEEP:
        check_heldout(s, trial, commit)
    return True


def command_guards(s: Session, trial: Trial) -> Steps[list[dict[str, object]]]:
    """Run each guard command in the trial's slot, on its candidate; one row per guard."""
    rows: list[dict[str, object]] = []
    for i, g in enumerate(s.config.guards):
        if g.command is None:
            continue
        m = yield s.guard_request(trial, i, g.command, g.timeout_seconds)
        passed = m.ok and not m.tampered
        detail = ("exit 0" if passed else
                  f"its run modified protected files: {', '.join(m.tampered)}" if m.tampered
                  else "timed out" if m.status == "timeout"
                  else f"exit {m.exit_code}; log {m.log_path}")
        rows.append({"guard": g.label, "passed": passed, "detail": detail})
    return rows


def track_reference(s: Session, trial: Trial, step: Step) -> None:
    """Where later simplifications are measured from. A simplicity keep leaves the best measured
    state (the incumbent it simplified, unless that was a simplification too) as the reference;
    a keep on merit is the new best measured state. Recorded as an event, so a resumed session
    bounds simplifications against the same state."""
    history = s.history
    before = history.reference_commit
    after = (before or trial.parent) if step.simpler else None
    if step.simpler:
        s.event(REFERENCE_EVENT, f"{trial.id} kept for simplicity: {step.booked:.4g} worse than "
                f"the best measured state {after[:10] if after else ''}", trial.id,
                data={"reference": after, "booked": step.booked})
    elif before is not None:
        s.event(REFERENCE_EVENT, f"{trial.id} kept on merit: the best measured state", trial.id,
                data={"reference": None, "booked": 0.0})
    history.reference_commit = after
