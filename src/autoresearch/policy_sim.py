"""A simulated session that drives a verdict policy exactly as the engine's serial scheduler does.

Shared by bench/decision_noise.py (the figures in the README), bench/tune_replay.py (tune judged
by the same verdict) and the policy's tests, so all exercise one driver (`Ratchet.judge`). The
protocol (see the top of policy.py): the baseline measured `repeats` times; then per candidate,
the incumbent re-measured first when `policy.control_due(runs since the incumbent's commit last
ran)`, then `policy.step(evidence)` until it concludes, the runs it asks for made back to back in
its order. A keep makes the candidate the incumbent (its runs go with it); a simplicity keep
leaves the best measured state as the reference; every repeated commit stays in the noise
evidence.

The target: true value 1.0, lower is better, Gaussian noise σ = 0.01 per run (times a candidate's
noise multiplier), optionally a linear drift per run, or deterministic (one fixed value per
commit, as a fixed seed gives).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from autoresearch.policy import Evidence, Observation, Policy, Step, headline_pairs, paired_interval

SIGMA = 0.01
TRUE = 1.0
POSITIONS = 30


@dataclass
class World:
    """The simulated target: a clock, per-commit truths and noise, optional drift."""

    rng: random.Random
    drift: float = 0.0  # per run, in σ, towards better (lower)
    deterministic: bool = False
    # Clock time between one candidate's commit and its first run, in runs: the harness's own
    # work (proposing, committing). Nothing on a real workload; half a run on bench/toy_target.py,
    # whose runs take ~40 ms.
    gap: float = 0.0
    clock: float = 0.0
    truth: dict[int, float] = field(default_factory=dict)
    noise: dict[int, float] = field(default_factory=dict)  # multiplier of σ
    fixed: dict[int, float] = field(default_factory=dict)  # deterministic: the one value

    def commit(self, true: float, noise: float = 1.0) -> int:
        self.clock += self.gap
        cid = len(self.truth)
        self.truth[cid], self.noise[cid] = true, noise
        if self.deterministic:
            self.fixed[cid] = true + self.rng.gauss(0, SIGMA * noise)
        return cid

    def run(self, cid: int, control: bool = False) -> Observation:
        self.clock += 1
        if self.deterministic:
            value = self.fixed[cid]
        else:
            value = self.truth[cid] + self.rng.gauss(0, SIGMA * self.noise[cid])
        return Observation(value - self.drift * SIGMA * self.clock, float(self.clock), control)


@dataclass(frozen=True)
class Candidate:
    effect: float  # true improvement in σ (positive = better)
    noise: float = 1.0
    lines_added: int = 1
    lines_removed: int = 1

    @property
    def real(self) -> bool:
        return self.effect > 0


@dataclass
class Verdict:
    position: int
    candidate: Candidate
    step: Step
    runs: int  # verify runs spent on this verdict, control runs included
    after_real_keep: int | None  # positions since the last real keep (None: none yet)
    # The incumbent's mean as the candidate's first run saw it, minus its truth, in σ (negative:
    # too good); None when the candidate never ran. A diagnostic of the incumbent's selection
    # bias, meaningful without drift.
    incumbent_error: float | None = None

    @property
    def kept(self) -> bool:
        return self.step.action == "keep"


@dataclass
class Session:
    verdicts: list[Verdict]
    baseline_cid: int
    best_cid: int
    world: World
    true_gain: float  # the incumbent's true improvement over the baseline at the end (σ units)


Proposer = Callable[[int, random.Random], "Candidate"]


@dataclass
class Ratchet:
    """The serial scheduler's state between candidates: the incumbent and its runs, the noise
    evidence of every other commit measured more than once, the best measured state while a
    simplification is the incumbent, and the candidate runs since the incumbent last ran."""

    world: World
    incumbent: int
    incumbent_runs: list[Observation]
    others: list[list[Observation]] = field(default_factory=list)
    reference: list[Observation] = field(default_factory=list)
    since_control: int = 0
    # An oracle, for diagnostics only: this many extra incumbent runs, not counted as spent,
    # after each keep (and on the baseline), as if the incumbent were measured for free.
    free_runs: int = 0
    incumbent_error: float | None = None  # of the last candidate judged (see Verdict)

    @classmethod
    def start(cls, world: World, true: float, repeats: int, free_runs: int = 0,
              noise: float = 1.0) -> Ratchet:
        """The baseline: committed (its noise `noise` × σ) and measured `repeats` times."""
        cid = world.commit(true, noise)
        runs = [world.run(cid, control=True) for _ in range(repeats + free_runs)]
        return cls(world, cid, runs, free_runs=free_runs)

    def judge(self, policy: Policy, cid: int, lines_added: int = 1,
              lines_removed: int = 1) -> tuple[Step, list[Observation], int]:
        """Judge commit `cid` against the incumbent: (the concluding step, the candidate's runs,
        the verify runs it took, control runs included). A keep makes `cid` the incumbent."""
        world = self.world
        cand_runs: list[Observation] = []
        spent = 0
        self.incumbent_error = None
        if policy.control_due(self.since_control):
            self.incumbent_runs.append(world.run(self.incumbent, control=True))
            self.since_control, spent = 0, 1
        while True:
            step = policy.step(Evidence(cand_runs, self.incumbent_runs, self.others, lines_added,
                                        lines_removed, self.reference))
            if step.concluded:
                break
            for role in step.runs:
                spent += 1
                if role == "incumbent":
                    self.incumbent_runs.append(world.run(self.incumbent, control=True))
                    self.since_control = 0
                else:
                    if not cand_runs:
                        mean = sum(o.value for o in self.incumbent_runs) / len(self.incumbent_runs)
                        self.incumbent_error = (mean - world.truth[self.incumbent]) / SIGMA
                    cand_runs.append(world.run(cid))
                    self.since_control += 1
        if step.action == "keep":
            self._keep(cid, cand_runs, simpler=step.simpler)
        elif len(cand_runs) >= 2:
            self.others.append(cand_runs)
        return step, cand_runs, spent

    def _keep(self, cid: int, runs: list[Observation], *, simpler: bool) -> None:
        if simpler and not self.reference:
            self.reference = self.incumbent_runs  # the state it simplifies: measured against
        else:
            if len(self.incumbent_runs) >= 2:
                self.others.append(self.incumbent_runs)
            if not simpler and self.reference:
                if len(self.reference) >= 2:
                    self.others.append(self.reference)
                self.reference = []
        free = [self.world.run(cid, control=True) for _ in range(self.free_runs)]
        self.incumbent, self.incumbent_runs, self.since_control = cid, runs + free, 0


def run_session(policy: Policy, propose: Proposer, rng: random.Random, *, repeats: int = 3,
                drift: float = 0.0, deterministic: bool = False, gap: float = 0.0,
                positions: int = POSITIONS, free_runs: int = 0) -> Session:
    world = World(rng, drift=drift, deterministic=deterministic, gap=gap)
    ratchet = Ratchet.start(world, TRUE, repeats, free_runs)
    base_cid = ratchet.incumbent
    last_real_keep: int | None = None
    verdicts: list[Verdict] = []
    for position in range(1, positions + 1):
        cand = propose(position, rng)
        cid = world.commit(world.truth[ratchet.incumbent] - cand.effect * SIGMA, cand.noise)
        step, _, spent = ratchet.judge(policy, cid, cand.lines_added, cand.lines_removed)
        after = None if last_real_keep is None else position - last_real_keep
        verdicts.append(Verdict(position, cand, step, spent, after, ratchet.incumbent_error))
        if step.action == "keep" and cand.real:
            last_real_keep = position
    gain = (world.truth[base_cid] - world.truth[ratchet.incumbent]) / SIGMA
    return Session(verdicts, base_cid, ratchet.incumbent, world, gain)


def verify_headline(session: Session, claimed_sigma: float,
                    sigma: float | None) -> tuple[bool, int, float, float]:
    """Re-measure best vs baseline in interleaved pairs; (covers the truth, pairs, low, high).
    The number of pairs comes from the claim and the session's σ̂, as the engine will do."""
    world = session.world
    if session.best_cid == session.baseline_cid:
        return True, 0, 0.0, 0.0
    pairs = headline_pairs(claimed_sigma * SIGMA, sigma)
    measured: list[tuple[float, float]] = []
    for i in range(pairs):
        # Alternate which arm goes first, so drift cancels within every two pairs.
        if i % 2 == 0:
            b, a = world.run(session.baseline_cid), world.run(session.best_cid)
        else:
            a, b = world.run(session.best_cid), world.run(session.baseline_cid)
        measured.append((a.value, b.value))
    iv = paired_interval(measured, "minimize")
    truth = session.true_gain * SIGMA
    return iv.covers(truth), pairs, iv.low / SIGMA, iv.high / SIGMA
