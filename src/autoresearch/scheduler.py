"""The scheduler: keep a trial in flight in every slot, until a limit; one slot is the serial loop.

    baseline first (alone) ─▶ then, whenever a slot is free and no limit is reached:
        open a trial in it ─▶ run its program until it asks for a run ─▶ submit the run
    wait for any run to finish ─▶ record it ─▶ send it to its program ─▶ …

Everything that touches the proposer, git and the ledger happens here, on this one thread; only
the runs happen concurrently (an executor's `submit` returns a future). A proposer call blocks
this thread while the other slots' runs go on. A slot that frees up starts its next trial from the
current incumbent; a winner measured against an older one is replayed onto it (`judge.replay`).

Anything that stops the session (Ctrl-C, SIGTERM, a pause, an error) ends every open trial the
same way: the stop event ends their runs (recorded as interrupted), then each program is told
why, records its trial interrupted, and is parked and reset. So kill -9 aside, nothing is left
open; and after kill -9 the recovery marks what was open interrupted, per slot.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass
from pathlib import Path
from statistics import median

from rich.console import Console
from rich.markup import escape

from autoresearch import experiment, headline
from autoresearch.config import Config
from autoresearch.executor import Measurement, RunRequest
from autoresearch.session import Limits, Session, SessionStopped
from autoresearch.slots import Slot
from autoresearch.stop_signals import raise_lost_stop, stop_under_way
from autoresearch.trial import Program, Trial

# How often the wait for runs looks for a stop signal whose exception was lost on its way.
LOST_STOP_CHECK_S = 0.5

__all__ = ["Limits", "Scheduler", "effective_limits", "limit_reached", "run"]


@dataclass(eq=False)
class Flight:
    """A trial in flight: its program, and the run it waits for (if any)."""

    trial: Trial
    program: Program
    request: RunRequest | None = None
    future: Future[Measurement] | None = None


MIN_HEADLINE_PAIRS = 2  # fewer give no interval: the headline is then left to report --verify


def run(session: Session, limits: Limits) -> str:
    """Run the session until a limit; returns why it stopped (raises what stopped it early)."""
    return Scheduler(session, limits).run()


class Scheduler:
    def __init__(self, session: Session, limits: Limits) -> None:
        self.s = session
        self.limits = limits
        self.flights: list[Flight] = []
        self.free: list[Slot] = list(session.slots.all)
        self.stopping: str | None = None  # why no new trial starts

    def run(self) -> str:
        self.s.limits = self.limits
        try:
            while True:
                raise_lost_stop()
                self._fill_slots()
                if not self.flights:
                    break
                self._step()
            self.verify_headline(within_budget=True)
        except BaseException as exc:
            self._abort(exc)
            raise
        return self.stopping or "nothing left to do"

    def verify_headline(self, within_budget: bool = False) -> headline.Headline | None:
        """Re-measure best vs baseline in interleaved pairs, spread over the slots (headline.py);
        `within_budget`: at the end of `run`, only as many as the time limit and the spending
        limit leave room for (`report --verify` is asked for by the user)."""
        best = headline.to_verify(self.s)
        if best is None:
            return None
        wanted = headline.pairs_wanted(self.s)
        # A time limit is the time by which the session is done, its verification included
        # (limit_reached kept room for it; a last experiment that ran long may have used some);
        # a spending limit that prices machine time caps the runs the same way.
        rooms = [("the time limit", None if self.limits.deadline is None
                  else self.limits.deadline - time.time()),
                 ("the spending limit", self.s.affordable_seconds() if within_budget else None)]
        for limit, seconds in rooms:
            if seconds is None:
                continue
            fit = headline.pairs_that_fit(self.s, seconds, len(self.free))
            if fit < MIN_HEADLINE_PAIRS:
                message = (f"the headline of {best.id} is not verified: {limit} leaves no room "
                           f"for its {wanted} pairs of runs (`autoresearch report --verify` "
                           "measures them)")
                self.s.event("headline-skipped", message, best.id)
                self.s.display.message(message, style="yellow")
                return None
            wanted = min(wanted, fit)
        slots = self.free[:wanted]
        self.free = self.free[len(slots):]
        pairs: list[tuple[float, float]] = []
        failures: list[str] = []
        self.s.display.experiment_started(best.id, f"verifying the headline: {wanted} pairs of "
                                          "baseline and best, interleaved")
        for i, slot in enumerate(slots):
            share = wanted // len(slots) + (i < wanted % len(slots))
            trial = Trial.reopened(self.s.ledger, self.s.root, self.s.paths, best, slot)
            flight = Flight(trial, headline.pairs_program(self.s, trial, share, pairs, failures))
            self.flights.append(flight)
            self._advance(flight, None)
        while self.flights:
            self._step()
        return headline.record(self.s, best, pairs, failures)

    # --- starting trials ---------------------------------------------------------------------

    def _fill_slots(self) -> None:
        while self.free and self.stopping is None:
            program = self._next_program()
            if program is None:
                return
            reason = limit_reached(self.s, self.limits, in_flight=len(self.flights))
            if reason:
                self.stopping = reason
                return
            slot = self.free.pop(0)
            kind = "baseline" if program is experiment.baseline else "candidate"
            trial = self.s.new_trial(slot, kind=kind)
            flight = Flight(trial, program(self.s, trial))
            self.flights.append(flight)
            self._advance(flight, None)

    def _next_program(self) -> Callable[[Session, Trial], Program] | None:
        """The baseline first and alone (everything else builds on it), then candidates."""
        if self.s.history.baseline is None:
            return None if self.flights else experiment.baseline
        return self._candidate

    def _candidate(self, s: Session, trial: Trial) -> Program:
        return experiment.candidate(s, trial, lambda: self._siblings(trial))

    def _siblings(self, of: Trial) -> list[Trial]:
        """The other trials in flight (a proposer is told what they try; none is duplicated)."""
        return [f.trial for f in self.flights if f.trial is not of]

    # --- driving programs --------------------------------------------------------------------

    def _advance(self, flight: Flight, sent: Measurement | BaseException | None) -> None:
        """Run a program until it asks for its next run (submitted) or ends (its slot frees)."""
        try:
            if isinstance(sent, BaseException):
                request = flight.program.throw(sent)
            else:
                request = flight.program.send(sent)  # type: ignore[arg-type]  # None starts it
        except StopIteration:
            self._landed(flight)
            return
        except experiment.NothingLeftToTry as done:
            self._landed(flight)
            self.stopping = str(done)
            return
        except BaseException:
            self._landed(flight)
            raise
        flight.request, flight.future = request, None
        flight.future = self.s.executor.submit(request)

    def _landed(self, flight: Flight) -> None:
        self.flights.remove(flight)
        self.free.append(flight.trial.slot)
        self.free.sort(key=lambda slot: slot.index)
        pause_if_failing(self.s)

    def _step(self) -> None:
        """Wait for any run to finish; hand each finished one to its program."""
        waiting = {f.future: f for f in self.flights if f.future is not None}
        done: set[Future[Measurement]] = set()
        while not done and waiting:
            # In slices, so that a stop lost on its way is raised within a moment, not after
            # the runs in flight end (which may be hours).
            done, _ = wait(list(waiting), timeout=LOST_STOP_CHECK_S, return_when=FIRST_COMPLETED)
            raise_lost_stop()
        for flight in [waiting[f] for f in waiting if f in done]:  # in the order they started
            assert flight.request is not None and flight.future is not None
            future, flight.future = flight.future, None
            try:
                measurement = future.result()
            except BaseException as failed:  # noqa: BLE001 - the executor could not run it
                self._advance(flight, failed)  # the trial ends; its program re-raises
                continue
            try:
                measurement = self.s.accept(flight.trial, flight.request, measurement)
            except SessionStopped as stop:
                self._advance(flight, stop)
                continue
            if measurement.status == "interrupted":
                self._advance(flight, KeyboardInterrupt())
            else:
                self._advance(flight, measurement)

    def _abort(self, exc: BaseException) -> None:
        """End every open trial because of `exc`: runs stopped and recorded, trials interrupted."""
        stop_under_way()  # a second Ctrl-C now would cut this short: it is ignored
        self.s.stop_event.set()
        for flight in list(self.flights):
            if flight.future is not None and flight.request is not None:
                # The run ended (the stop event): record it; what it says changes nothing now.
                with contextlib.suppress(Exception):
                    self.s.accept(flight.trial, flight.request, flight.future.result())
            # Each program records its trial interrupted, then re-raises what it was told.
            with contextlib.suppress(BaseException):
                flight.program.throw(exc)
            if flight in self.flights:
                self.flights.remove(flight)
            flight.program.close()


def verify_headline_of(root: Path, tag: str, console: Console,
                       **run: str | None) -> headline.Headline | None:
    """Verify a session's headline now, if it is not verified for its current best (`report
    --verify`): the session is opened to measure, as a resume would, and left as it was; `run`
    (--executor, --ray-address) says where, as for `run`."""
    from autoresearch.config import CONFIG_NAME, load_config
    from autoresearch.display import Display
    from autoresearch.stop_signals import stop_signals_as_interrupt

    config = load_config(root / CONFIG_NAME).with_run(**run)
    session = Session(root, config, tag, Display(console))
    with stop_signals_as_interrupt():
        session.open_to_measure()
        try:
            why = headline.not_needed(session)
            if why:
                console.print(f"nothing to re-measure: {escape(why)}")
                return None
            return Scheduler(session, Limits()).verify_headline()
        finally:
            session.close(status=None)


def pause_if_failing(s: Session) -> None:
    """Pause (exit 5) on a streak that more of the same will not end, rather than burn the night."""
    decision, streaks = s.config.decision, s.history.streaks
    logs = f"{s.paths.session_dir}/logs"
    if streaks.crashes >= decision.max_consecutive_crashes:
        # Runs of several slots overlap: a verify command that is not safe to run twice at once
        # (a fixed port, a shared absolute path, a lock file) fails only then.
        overlap = (f" With {s.workers} workers the slots' runs overlap: if the command uses a "
                   "fixed port, a file at a fixed absolute path or a lock, two runs at once "
                   "collide (the baseline ran alone; `--workers 1` tells): derive them from "
                   "AUTORESEARCH_SLOT (1, 2, ..., the slot's number, in every run's "
                   "environment)."
                   if s.workers > 1 else "")
        raise SessionStopped(
            f"paused after {streaks.crashes} consecutive crashes: something is broken beyond one "
            f"change. Read the last logs in {logs}, fix the cause, then run the same command to "
            f"resume.{overlap}", exit_code=5)
    if streaks.rejections >= decision.max_consecutive_rejections:
        experiments = s.history.experiments
        last = experiments[-1].decision_reason if experiments else ""
        raise SessionStopped(
            f"paused after {streaks.rejections} consecutive rejected experiments (refused, "
            f"duplicate or failed proposals): the proposer is not producing usable changes. Last "
            f"reason: {last}. Fix the cause (the proposer's configuration, the scope, the model "
            "endpoint), then run the same command to resume.", exit_code=5)


def limit_reached(s: Session, limits: Limits, in_flight: int = 0) -> str | None:
    """Why no further experiment may start (counting those in flight), or None."""
    if limits.iterations is not None and s.history.counted() + in_flight >= limits.iterations:
        return f"reached {limits.iterations} experiments"
    if limits.deadline is not None:
        durations = [e.duration_s for e in s.history.experiments[-10:] if e.duration_s]
        expected = median(durations) if durations else 0.0
        # Room for the headline's verification too, so that the session ends by the deadline.
        reserve = headline.reserve_seconds(s, len(s.slots.all))
        if time.time() + expected + reserve > limits.deadline:
            return ("the time limit would be exceeded by another experiment"
                    + (" and the headline's verification" if reserve else ""))
    return s.spend_limit_reached()


def effective_limits(config: Config, iterations: int | None, until_s: float | None,
                     started: float, worked_s: float = 0.0) -> Limits:
    """The limits of this run. `--until` is this run's own time; `[limits] max_hours` is the
    session's, like `max_experiments` and `max_usd`: the time it has been at work before
    (`worked_s`, its experiments' and runs' spans, not the pauses between resumes) counts."""
    limits = config.limits
    n = iterations if iterations is not None else limits.max_experiments
    seconds = until_s if until_s is not None else (
        max(0.0, limits.max_hours * 3600 - worked_s) if limits.max_hours else None)
    return Limits(iterations=n, deadline=None if seconds is None else started + seconds,
                  max_usd=limits.max_usd)
