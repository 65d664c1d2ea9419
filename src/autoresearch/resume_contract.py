"""What a resumed session must still agree with: the machine, the evaluation's inputs outside
the repository, and what it measures.

A session's verdicts compare runs with runs recorded hours earlier, so they must be comparable:
- the machine: every run records an environment fingerprint; a resume on another machine (CPU,
  GPU, Python, key package versions) or with another interpreter for the verify command
  (`python3` resolving elsewhere on PATH, another virtualenv) is refused, and so is a run
  measured in another environment mid-session (runs made elsewhere: a Ray cluster's nodes);
- the threads each run gets: recorded from the session's first runs, a run given another count
  once the baseline passed stops the session (`[run] threads` or `--workers` changed, or the
  pinned "auto" figure deleted); on this machine a resume is refused before anything runs;
- `[verify] inputs`: their content is hashed when first seen and must be the same on resume;
- what a run's number means is fixed when the session starts: the objective's name and direction
  and how it is read from the output, and the verify command with its budget and environment.
  `autoresearch.toml` is read again at every start (the proposer, the workers, the limits, the
  decision's settings may change from then on: they decide what is tried and how, not what a
  number means), and a change to any of these refuses the resume once a baseline passed, since
  the runs before and after it would be compared as if they measured one thing. A session that
  has measured nothing yet takes the new settings instead.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

from autoresearch.config import CONFIG_NAME, Config
from autoresearch.errors import PreconditionError
from autoresearch.evaluation_inputs import EvaluationInputs
from autoresearch.executor import Measurement
from autoresearch.fingerprint import (
    RUN_THREADS_FIELD,
    comparable_key,
    describe_difference,
    environment_fingerprint,
)
from autoresearch.ledger import Ledger, SessionRow, TrialStatus
from autoresearch.stop_signals import SessionStopped

# (table, key) of the settings that define what a run's number means.
MEASURED = (
    ("metric", "name"),
    ("metric", "direction"),
    ("metric", "format"),
    ("metric", "patterns"),
    ("verify", "command"),
    ("verify", "budget_seconds"),
    ("verify", "env"),
)


def _value(config: Mapping[str, Any], table: str, key: str) -> Any:
    section = config.get(table)
    return section.get(key) if isinstance(section, Mapping) else None


def _shown(value: Any) -> str:
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 80 else text[:77] + "…"


def measurement_changes(recorded: Mapping[str, Any], config: Config) -> list[str]:
    """The measured settings that differ from the session's recorded config, as
    "[metric] direction: 'minimize' → 'maximize'"."""
    now = config.to_json_dict()
    changes = []
    for table, key in MEASURED:
        section = recorded.get(table)
        if not isinstance(section, Mapping) or key not in section:
            continue  # recorded by a version that had no such setting
        before, after = section[key], _value(now, table, key)
        if before != after:
            changes.append(f"[{table}] {key}: {_shown(before)} → {_shown(after)}")
    return changes


def other_changes(recorded: Mapping[str, Any], config: Config) -> list[str]:
    """The other settings that differ, as "[proposer] name": they take effect from now on."""
    now = config.to_json_dict()
    measured = set(MEASURED)
    changed = []
    for table in sorted(set(recorded) | set(now)):
        before, after = recorded.get(table), now.get(table)
        if isinstance(before, Mapping) and isinstance(after, Mapping):
            keys = sorted(k for k in set(before) | set(after)
                          if (table, k) not in measured and before.get(k) != after.get(k))
            changed += [f"[{table}] {k}" for k in keys]
        elif before != after:
            changed.append(f"[{table}]" if isinstance(before or after, Mapping) else table)
    return changed


def refuse_changed_measurement(tag: str, recorded: Mapping[str, Any], config: Config,
                               where: str) -> None:
    """Refuse to go on with a session whose measured settings changed since it started."""
    changes = measurement_changes(recorded, config)
    if not changes:
        return
    raise PreconditionError(
        f"{CONFIG_NAME} changed what session {tag!r} measures since it last ran: "
        + "; ".join(changes) + ". Its recorded runs would be compared with runs that measure "
        "something else",
        where=where,
        fix=f"start a new session with these settings (autoresearch run --tag NEW), or set them "
            f"back in {CONFIG_NAME} to go on with {tag!r}",
    )


def same_measurement(row: SessionRow, config: Config, measured: bool, where: str) -> list[str]:
    """Refuse to resume when the config changed what the session measures, once it has
    measured something (`measured`: its baseline passed); else the changed settings, to say
    (they take effect from now on; the session's recorded config is updated when it opens)."""
    if measured:
        refuse_changed_measurement(row.tag, row.config, config, where)
    changed = other_changes(row.config, config)
    if not measured:
        changed = measurement_changes(row.config, config) + changed
    if not changed:
        return []
    more = " …" if len(changed) > 8 else ""
    return [f"{CONFIG_NAME} changed since this session last ran: {', '.join(changed[:8])}{more}; "
            "in effect from now on"]


def same_inputs(ledger: Ledger, row: SessionRow, inputs: EvaluationInputs) -> None:
    """[verify] inputs: their content is recorded when first seen, and must not differ when the
    session is resumed (a change meanwhile would go unseen by the stamps)."""
    if not inputs:
        return
    recorded = ledger.events(row.id, kind="inputs")
    if recorded and recorded[-1]["data"] is not None:
        inputs.check_same_as(recorded[-1]["data"])
    else:
        ledger.add_event(row.id, "inputs", "the evaluation's inputs outside the repository, "
                         "hashed", data=inputs.digests())


RESUME_FIX = "start a new session on this machine with another --tag"
# Re-measuring a finished session (report --verify, finalize --verify) must happen where it ran.
REMEASURE_FIX = ("re-measure where the session measured: on its machine, or on its Ray cluster "
                 "with the --executor ray and --ray-address its `run` had")


def environment_difference(ledger: Ledger, row: SessionRow, fingerprint: Mapping[str, Any],
                           key: str) -> str | None:
    """What differs between the environment the session measured in and `fingerprint` (whose
    comparable key is `key`), or None: the same, or the session has measured nothing yet."""
    if not row.fingerprint_key or not key or key == row.fingerprint_key:
        return None
    before = ledger.fingerprint(row.fingerprint_key) or {}
    if before and "evaluation" not in before and "evaluation" in fingerprint:
        # Recorded before the evaluation's interpreter was part of the fingerprint: compared on
        # what it recorded, so that a session started then can still be resumed.
        fingerprint = {k: v for k, v in fingerprint.items() if k != "evaluation"}
        if comparable_key(fingerprint) == row.fingerprint_key:
            return None
    return ("; ".join(describe_difference(before, fingerprint))
            or f"fingerprint {key} vs {row.fingerprint_key}")


def same_machine(ledger: Ledger, row: SessionRow, where: str, fix: str = RESUME_FIX) -> None:
    """Refuse to resume on a machine whose environment differs from the session's, the
    interpreter its verify command runs included (resolved as the session's recorded command
    and `[verify] env` would be now: a changed command is refused by same_measurement).

    The machine's part is cached per process, so within one process it cannot change: this
    check at open, in the process that resumes, is what refuses another machine.
    """
    here = environment_fingerprint(**_recorded_evaluation(row.config))
    diffs = environment_difference(ledger, row, here, comparable_key(here))
    if diffs is not None:
        if "evaluation." in diffs:
            fix = (f"{fix}; or resume with the interpreter the session's runs had (the same "
                   "PATH, virtualenv and PYTHONPATH)")
        raise PreconditionError(
            f"this machine's environment differs from the one session {row.tag!r} was measured "
            f"on ({diffs}); its results would not be comparable", where=where, fix=fix)


def _recorded_evaluation(recorded: Mapping[str, Any]) -> dict[str, Any]:
    """The verify command and `[verify] env` the session recorded, as the executor passes them
    to environment_fingerprint."""
    verify = recorded.get("verify")
    if not isinstance(verify, Mapping) or not isinstance(verify.get("command"), str):
        return {}
    env = verify.get("env")
    return {"command": verify["command"].replace("{python}", sys.executable),
            "verify_env": {str(k): str(v) for k, v in env.items()}
            if isinstance(env, Mapping) else {}}


def same_environment(ledger: Ledger, row: SessionRow, m: Measurement) -> SessionRow:
    """Every run of a session is measured in one environment: the first run's fingerprint is
    the session's (the row returned), a run measured in another stops the session (exit 3).
    Until a run of the session's measured cleanly (only crashes so far), a new environment
    becomes the session's: a verify command fixed before the baseline passed may run another
    interpreter, and nothing measured would be compared with it.

    With the local executor the machine cannot differ: its part is taken once per process and
    `open` refused a process whose fingerprint differs from the session's. It guards executors
    that measure somewhere else (a Ray cluster's nodes), and an interpreter replaced meanwhile.
    """
    if row.fingerprint_key is None:
        ledger.set_session_fingerprint(row.id, m.fingerprint_key)
        return same_threads(ledger, ledger.session(row.tag) or row, m)
    diffs = environment_difference(ledger, row, m.fingerprint, m.fingerprint_key)
    if diffs is not None:
        if not any(r.status == "ok" and r.fingerprint_key == row.fingerprint_key
                   for r in ledger.session_runs(row.id)):
            ledger.set_session_fingerprint(row.id, m.fingerprint_key)
            return same_threads(ledger, ledger.session(row.tag) or row, m)
        raise SessionStopped(
            f"the environment fingerprint changed mid-session ({diffs}): {m.role} run of "
            f"{m.commit[:10]} is not comparable with the session's earlier measurements. "
            "Start a new session (another --tag) in the new environment.", exit_code=3)
    return same_threads(ledger, row, m)


def same_threads(ledger: Ledger, row: SessionRow, m: Measurement) -> SessionRow:
    """Every run of a session gets one thread count: under a fixed time budget a run with 2
    threads trains about twice the steps of one with 1, an effect no change made. The count
    the session's runs got is recorded from its first clean run; once the baseline passed, a
    run given another stops the session (exit 3), before that run's experiment is judged."""
    threads = m.fingerprint.get(RUN_THREADS_FIELD)
    if threads is None or not m.ok:
        return row
    before = _recorded_threads(ledger, row)
    if before == threads:
        return row
    if before is not None and _baseline_passed(ledger, row):
        raise SessionStopped(
            f"this run of {m.commit[:10]} got {threads} thread(s) where the runs of session "
            f"{row.tag!r} got {before}: its measurements would not be comparable with theirs. "
            f"Where: [run] threads in {CONFIG_NAME}, --workers (the \"auto\" threads are shared "
            f"among the workers), OMP_NUM_THREADS in [verify] env. Fix: set them back so that "
            f"each run gets {before}, or start a new session (autoresearch run --tag NEW)",
            exit_code=3)
    ledger.add_event(row.id, "threads", f"each run gets {threads} thread(s)",
                     data={"threads": threads})
    return row


def threads_at_start(ledger: Ledger, row: SessionRow, threads: str | None) -> None:
    """Refuse a resume whose runs would get another thread count than the session's, before
    anything runs (`same_threads` would stop it at its first run, that run spent)."""
    before = _recorded_threads(ledger, row)
    if before is None or threads is None or before == threads or not _baseline_passed(ledger,
                                                                                        row):
        return
    raise PreconditionError(
        f"each run would now get {threads} thread(s) where the runs of session {row.tag!r} got "
        f"{before}: its measurements would not be comparable with theirs",
        where=f"[run] threads in {CONFIG_NAME}, --workers (the \"auto\" threads are shared "
              f"among the workers), OMP_NUM_THREADS in [verify] env",
        fix=f"set them back so that each run gets {before}, or start a new session "
            f"(autoresearch run --tag NEW)")


def _recorded_threads(ledger: Ledger, row: SessionRow) -> str | None:
    recorded = ledger.events(row.id, kind="threads")
    data = recorded[-1]["data"] if recorded else None
    threads = data.get("threads") if data else None
    return str(threads) if threads is not None else None



def _baseline_passed(ledger: Ledger, row: SessionRow) -> bool:
    return any(e.kind == "baseline" and e.status == TrialStatus.KEEP
               for e in ledger.experiments(row.id))
