"""The offline `tune` proposer: memory, no repeats, strategy when stuck, and that it optimizes."""

from __future__ import annotations

import importlib.util
import math
import random
import re
import statistics
import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from optuna.trial import TrialState

from autoresearch.config import Config, parse_config
from autoresearch.errors import ConfigError, ProposalError
from autoresearch.proposers.base import (
    ExperimentOutcome,
    ExperimentSummary,
    InFlight,
    Proposal,
    ProposalContext,
)
from autoresearch.proposers.trust_region import LENGTH_INIT
from autoresearch.proposers.tune import TuneProposer


def make_config(knobs: dict[str, str], direction: str = "minimize", **proposer: Any) -> Config:
    return parse_config(
        {
            "scope": ["target.py"],
            "verify": {"command": "true", "budget_seconds": 5},
            "metric": {"name": "score", "direction": direction},
            "knobs": knobs,
            "proposer": {"name": "tune", **proposer},
        }
    )


def make_ctx(
    root: Path, config: Config, history: Sequence[ExperimentSummary] = (), *, stuck: bool = False
) -> ProposalContext:
    return ProposalContext(
        session_tag="test",
        worktree=root,
        config=config,
        program="",
        scope_files=["target.py"],
        history=list(history),
        baseline=history[0] if history else None,
        incumbent=None,
        stuck=stuck,
        last_crash_log=None,
        metric_name="score",
        direction=config.metric.direction,
    )


def summary(
    seq: int, params: dict[str, Any] | None, status: str = "discard", objective: float | None = 1.0
) -> ExperimentSummary:
    return ExperimentSummary(
        id=f"exp{seq}",
        seq=seq,
        status=status,
        hypothesis="",
        objective=objective,
        delta=None,
        reason="",
        params=params,
    )


def proposer(config: Config, seed: int = 0, **options: Any) -> TuneProposer:
    return TuneProposer(config, {"seed": seed, **options})


SMALL = {"target.py:A": 'choice("a", "b")', "target.py:B": "choice(1, 2)"}


def test_exhausting_a_small_space_returns_none(tmp_path: Path) -> None:
    (tmp_path / "target.py").write_text('A = "a"\nB = 1\n')
    config = make_config(SMALL)
    tune = proposer(config)
    history = [summary(1, {"target.py:A": "a", "target.py:B": 1}, "keep")]
    tune.resume([ExperimentOutcome(history[0], None)])
    tried = {("a", 1)}
    while (prop := tune.propose(make_ctx(tmp_path, config, history))) is not None:
        assert prop.params is not None
        config_tuple = (prop.params["target.py:A"], prop.params["target.py:B"])
        assert config_tuple not in tried
        tried.add(config_tuple)
        done = summary(len(history) + 1, prop.params)
        history.append(done)
        tune.observe(ExperimentOutcome(done, prop))
        assert len(tried) <= 4
    assert tried == {("a", 1), ("a", 2), ("b", 1), ("b", 2)}


def test_never_repeats_even_without_verdicts(tmp_path: Path) -> None:
    """Proposals in flight (no verdict yet) count as tried too, e.g. with parallel workers."""
    (tmp_path / "target.py").write_text("N = 3\nM = 0\n")
    config = make_config({"target.py:N": "int(1, 6)", "target.py:M": "int(0, 2)"})
    tune = proposer(config)
    seen = {(3, 0)}
    for _ in range(17):
        prop = tune.propose(make_ctx(tmp_path, config))
        assert prop is not None and prop.params is not None
        key = (prop.params["target.py:N"], prop.params["target.py:M"])
        assert key not in seen
        seen.add(key)
    assert tune.propose(make_ctx(tmp_path, config)) is None


def test_proposal_edits_only_knob_lines(tmp_path: Path) -> None:
    text = '"""Doc."""\nimport os\n\nMATRIX_LR = 0.02  # knob: log(1e-3, 1e-1)\nDEPTH: int = 2\nNAME = "x"\n'
    (tmp_path / "target.py").write_text(text)
    config = make_config({"target.py:DEPTH": "int(1, 8)"})
    prop = proposer(config).propose(make_ctx(tmp_path, config))
    assert prop is not None and prop.params is not None
    assert set(prop.params) == {"target.py:MATRIX_LR", "target.py:DEPTH"}
    new = prop.edits["target.py"]
    assert new is not None
    changed = [(a, b) for a, b in zip(text.splitlines(), new.splitlines(), strict=True) if a != b]
    assert changed and all(a.split("=")[0] == b.split("=")[0] for a, b in changed)
    lr, depth = prop.params["target.py:MATRIX_LR"], prop.params["target.py:DEPTH"]
    assert f"MATRIX_LR = {lr!r}  # knob: log(1e-3, 1e-1)" in new
    assert f"DEPTH: int = {depth}" in new
    # The hypothesis names only what changed, with values as written in the file.
    parts = [f"MATRIX_LR 0.02 → {lr!r}"] * (lr != 0.02) + [f"DEPTH 2 → {depth}"] * (depth != 2)
    assert prop.hypothesis == "tune: " + ", ".join(parts)
    assert "local start" in prop.rationale  # the first proposals stay near the incumbent


def test_resume_restores_memory(tmp_path: Path) -> None:
    (tmp_path / "target.py").write_text("N = 1\nM = 0\n")
    config = make_config({"target.py:N": "int(1, 4)", "target.py:M": "int(0, 1)"})
    grid = [(n, m) for n in range(1, 5) for m in range(2)]
    untried = (3, 1)
    history = [
        summary(
            i + 1, {"target.py:N": n, "target.py:M": m}, "keep" if i == 0 else "discard", 10.0 - i
        )
        for i, (n, m) in enumerate(c for c in grid if c != untried)
    ]
    tune = proposer(config)
    tune.resume([ExperimentOutcome(s, None) for s in history])
    prop = tune.propose(make_ctx(tmp_path, config))  # no history in ctx: memory comes from resume
    assert prop is not None and prop.params == {"target.py:N": 3, "target.py:M": 1}
    study = tune._memory.study
    assert study is not None
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert (
        sorted(t.value for t in complete if t.value is not None)
        == [10.0 - i for i in range(7)][::-1]
    )


def test_crashes_become_failed_trials_and_odd_records_are_skipped(tmp_path: Path) -> None:
    (tmp_path / "target.py").write_text("LR = 0.01\n")
    config = make_config({"target.py:LR": "log(1e-4, 1e-1)"})
    history = [
        summary(1, {"target.py:LR": 0.01}, "keep", 1.0),
        summary(2, {"target.py:LR": 0.02}, "crash", None),
        summary(3, {"target.py:LR": 0.03}, "timeout", None),
        summary(4, {"target.py:LR": 0.04}, "rejected", None),
        summary(5, {"target.py:LR": 0.05}, "interrupted", None),
        summary(6, {"target.py:LR": 5.0}, "discard", 2.0),  # outside today's space
        summary(7, None, "discard", 3.0),  # another proposer's code change
        summary(8, {"target.py:LR": 0.06}, "discard", 0.5),
    ]
    tune = proposer(config)
    tune.resume([ExperimentOutcome(s, None) for s in history])
    prop = tune.propose(make_ctx(tmp_path, config))
    assert prop is not None and prop.params is not None
    study = tune._memory.study
    assert study is not None
    states = [(t.state, t.params.get("target.py:LR"), t.value) for t in study.trials[:5]]
    assert states == [
        (TrialState.COMPLETE, 0.01, 1.0),
        (TrialState.FAIL, 0.02, None),
        (TrialState.FAIL, 0.03, None),
        (TrialState.COMPLETE, 0.06, 0.5),
        (TrialState.RUNNING, pytest.approx(prop.params["target.py:LR"], rel=1e-3), None),
    ]
    # Rejected and interrupted configurations are remembered as tried all the same.
    assert prop.params["target.py:LR"] not in (0.01, 0.02, 0.03, 0.04, 0.05, 0.06)
    assert "best 0.5" in prop.rationale

    # A crash of the proposal in flight closes its trial as FAIL.
    crashed = summary(9, prop.params, "crash", None)
    tune.observe(ExperimentOutcome(crashed, prop))
    assert study.trials[4].state == TrialState.FAIL


def test_history_in_the_context_is_enough(tmp_path: Path) -> None:
    """Without resume/observe calls, ctx.history alone keeps the proposer from repeating."""
    (tmp_path / "target.py").write_text('A = "a"\nB = 1\n')
    config = make_config(SMALL)
    history = [
        summary(1, {"target.py:A": "a", "target.py:B": 1}, "keep"),
        summary(2, {"target.py:A": "b", "target.py:B": 1}),
        summary(3, {"target.py:A": "b", "target.py:B": 2}),
    ]
    prop = proposer(config).propose(make_ctx(tmp_path, config, history))
    assert prop is not None and prop.params == {"target.py:A": "a", "target.py:B": 2}
    assert prop.hypothesis == "tune: B 1 → 2"


def test_without_the_local_phase_stuck_switches_to_random_bursts(tmp_path: Path) -> None:
    (tmp_path / "target.py").write_text("X = 0.5\n")
    config = make_config({"target.py:X": "float(0, 1)"})
    tune = proposer(config, local=False)
    rationales = []
    for i in range(7):
        prop = tune.propose(make_ctx(tmp_path, config, stuck=True))
        assert prop is not None and prop.params is not None
        rationales.append(prop.rationale)
        tune.observe(ExperimentOutcome(summary(i + 1, prop.params), prop))
    assert all("stuck after 5 discards in a row" in r for r in rationales[:3])
    assert all("random exploration" in r for r in rationales[:3])
    assert (
        all("back to TPE" in r for r in rationales[3:6]) and "random exploration" in rationales[6]
    )
    calm = tune.propose(make_ctx(tmp_path, config, stuck=False))
    assert calm is not None and "stuck" not in calm.rationale and calm.rationale.startswith("TPE")


def test_options_are_checked() -> None:
    config = make_config(SMALL)
    with pytest.raises(ConfigError, match="unknown tune sampler 'bayes'"):
        TuneProposer(config, {"sampler": "bayes"})
    with pytest.raises(ConfigError, match="non-negative integer"):
        TuneProposer(config, {"seed": "zero"})
    assert (
        TuneProposer(config, {"sampler": "random", "seed": 3}).describe()
        == "tune (random search, seed 3)"
    )
    # Options meant for other proposers (proposer = "auto" may resolve to tune) are ignored.
    TuneProposer(config, {"model": "claude", "base_url": "http://x"})


@pytest.mark.parametrize(("sampler", "module"),
                         [("gp", "torch"), ("gp", "scipy"), ("cmaes", "cmaes")])
def test_missing_sampler_dependency_is_a_config_error(sampler: str, module: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    # The module is made missing whether or not this machine has it (scipy is a dependency).
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *args: None if name == module else real(name, *args))
    with pytest.raises(ConfigError, match=f"needs .*{module}") as err:
        TuneProposer(make_config(SMALL), {"sampler": sampler})
    assert err.value.fix and "pip install" in err.value.fix


def test_no_knobs_is_a_proposal_error(tmp_path: Path) -> None:
    (tmp_path / "target.py").write_text("X = 1\n")
    config = make_config({})
    with pytest.raises(ProposalError, match="no knobs"):
        proposer(config).propose(make_ctx(tmp_path, config))


def test_maximize_and_loaded_through_the_registry(tmp_path: Path) -> None:
    from autoresearch.proposers.registry import load_proposer

    (tmp_path / "target.py").write_text("X = 0.5  # knob: float(0, 1)\n")
    config = make_config({}, direction="maximize", seed=1, sampler="random")
    tune, _why = load_proposer(config)
    assert isinstance(tune, TuneProposer)
    prop = tune.propose(make_ctx(tmp_path, config))
    assert prop is not None and tune._memory.study is not None
    assert tune._memory.study.direction.name == "MAXIMIZE"


# -- behaviour ------------------------------------------------------------------------------------


def _quadratic(params: dict[str, Any]) -> float:
    lr, x, n = params["target.py:LR"], params["target.py:X"], params["target.py:N"]
    return float((math.log10(lr) + 2) ** 2 + 0.1 * (x - 1.5) ** 2 + 0.02 * (n - 9) ** 2)


def test_tpe_improves_a_noisy_quadratic_under_the_ratchet(tmp_path: Path) -> None:
    (tmp_path / "target.py").write_text("LR = 0.0001\nX = -4.0\nN = 1\n")
    config = make_config(
        {"target.py:LR": "log(1e-4, 1)", "target.py:X": "float(-5, 5)", "target.py:N": "int(1, 16)"}
    )
    tune = proposer(config, seed=0)
    noise = random.Random(0)
    start = {"target.py:LR": 1e-4, "target.py:X": -4.0, "target.py:N": 1}
    start_true = _quadratic(start)  # 8.3; the optimum is 0
    incumbent_measured = start_true + noise.gauss(0, 0.01)
    incumbent_true = start_true
    history = [summary(1, start, "keep", incumbent_measured)]
    tune.resume([ExperimentOutcome(history[0], None)])
    discards = 0
    for seq in range(2, 32):
        ctx = make_ctx(tmp_path, config, history, stuck=discards >= config.decision.stuck_after)
        prop = tune.propose(ctx)
        assert prop is not None and prop.params is not None
        true = _quadratic(prop.params)
        measured = true + noise.gauss(0, 0.01)
        # The harness's ratchet, simplified: keep only a clear improvement over the incumbent.
        keep = measured < incumbent_measured - 0.02
        if keep:
            incumbent_measured, incumbent_true, discards = measured, true, 0
            for file, text in prop.edits.items():
                assert text is not None
                (tmp_path / file).write_text(text)
        else:
            discards += 1
        done = summary(seq, prop.params, "keep" if keep else "discard", measured)
        history.append(done)
        tune.observe(ExperimentOutcome(done, prop))
    # Over 20 seeds the final incumbent was at most 0.22 (random search: up to 0.62).
    assert incumbent_true < 0.5 < start_true / 10


def test_propose_is_fast(tmp_path: Path) -> None:
    (tmp_path / "target.py").write_text(
        "LR = 0.02  # knob: log(1e-4, 1e-1)\nDEPTH: int = 4  # knob: int(1, 12)\nWD = 0.1\n"
        'OPT = "adamw"  # knob: choice("adamw", "sgd", "lion")\nMOM = 0.9\n'
        "BIAS = True  # knob: choice(True, False)\n"
    )
    config = make_config({"target.py:WD": "float(0, 0.3)", "target.py:MOM": "float(0.8, 0.99)"})
    tune = proposer(config)
    rng = random.Random(0)
    history: list[ExperimentSummary] = []
    times = []
    for seq in range(1, 51):
        t0 = time.perf_counter()
        prop = tune.propose(make_ctx(tmp_path, config, history))
        times.append(time.perf_counter() - t0)
        assert isinstance(prop, Proposal) and prop.params is not None
        assert re.fullmatch(r"tune: .+ → .+", prop.hypothesis)
        done = summary(seq, prop.params, "discard", rng.random())
        history.append(done)
        tune.observe(ExperimentOutcome(done, prop))
    # The target is well under 20 ms; the bound is loose so a busy CI machine does not flake.
    assert statistics.median(times[1:]) < 0.1


def test_initial_params_are_the_files_values(tmp_path: Path) -> None:
    """The loop records these as the baseline's params (the scope globs are expanded here)."""
    (tmp_path / "target.py").write_text('X = 0.5  # knob: float(0, 1)\nOPT = "adamw"\n')
    (tmp_path / "other.py").write_text("Y = 1  # knob: int(0, 3)\n")  # out of scope
    config = make_config({"target.py:OPT": 'choice("adamw", "sgd")'})
    assert proposer(config).initial_params(tmp_path) == {
        "target.py:X": 0.5,
        "target.py:OPT": "adamw",
    }


def _moved(params: dict[str, Any], start: float = 0.5) -> int:
    return sum(v != start for v in params.values())


def test_schedule_local_moves_with_a_global_move_in_four(tmp_path: Path) -> None:
    lines = [f"K{i} = 0.5  # knob: float(0, 1)" for i in range(8)]
    (tmp_path / "target.py").write_text("\n".join(lines) + "\n")
    config = make_config({})
    tune = proposer(config)
    history: list[ExperimentSummary] = [summary(1, {f"target.py:K{i}": 0.5 for i in range(8)},
                                                "keep")]
    rationales = []
    for seq in range(2, 11):
        prop = tune.propose(make_ctx(tmp_path, config, history=history))
        assert prop is not None and prop.params is not None
        rationales.append(prop.rationale)
        if "local" in prop.rationale:
            assert 1 <= _moved(prop.params) <= 3  # a neighbour: one to three knobs moved
        history.append(summary(seq, prop.params))
    assert all(r.startswith("local start: a neighbour") for r in rationales[:5])
    assert all(r.startswith("local: trust region ±") for r in rationales[5:8])
    assert rationales[8].startswith("TPE (trial") and "a global move (one in 4" in rationales[8]
    assert "local" in tune.describe() and "TPE" in tune.describe()


def test_a_collapsed_trust_region_goes_global_then_restarts(tmp_path: Path) -> None:
    (tmp_path / "target.py").write_text("A = 0.5  # knob: float(0, 1)\nB = 0.5  # knob: float(0, 1)\n")
    config = make_config({})
    tune = proposer(config)
    history = [summary(1, {"target.py:A": 0.5, "target.py:B": 0.5}, "keep")]
    rationales = []
    for seq in range(2, 30):
        prop = tune.propose(make_ctx(tmp_path, config, history=history))
        assert prop is not None and prop.params is not None
        rationales.append(prop.rationale)
        history.append(summary(seq, prop.params))  # every move is a discard
    collapsed = [i for i, r in enumerate(rationales) if "trust region collapsed (restart 1)" in r]
    assert collapsed, rationales
    first = collapsed[0]
    assert rationales[first + 1].startswith("TPE") and "collapsed" in rationales[first + 1]
    local = [(i, r) for i, r in enumerate(rationales) if r.startswith("local: trust region")]
    before = [r for i, r in local if i < first]
    after = [r for i, r in local if i > first]
    assert before[-1].startswith("local: trust region ±4%")  # halved twice, then collapsed
    assert after[0].startswith("local: trust region ±15%")  # restarted


def test_local_phase_off_is_the_sampler_after_the_start(tmp_path: Path) -> None:
    lines = [f"K{i} = 0.5  # knob: float(0, 1)" for i in range(4)]
    (tmp_path / "target.py").write_text("\n".join(lines) + "\n")
    config = make_config({})
    tune = proposer(config, local=False)
    history: list[ExperimentSummary] = []
    rationales = []
    for seq in range(1, 10):
        prop = tune.propose(make_ctx(tmp_path, config, history=history))
        assert prop is not None and prop.params is not None
        rationales.append(prop.rationale)
        history.append(summary(seq, prop.params))
    assert all("local start" in r for r in rationales[:5])
    assert all(r.startswith("TPE (trial") for r in rationales[6:])
    with pytest.raises(ConfigError, match="local must be true or false"):
        proposer(config, local="yes")


def test_the_trust_region_follows_the_ledger_and_is_replayed_on_resume(tmp_path: Path) -> None:
    (tmp_path / "target.py").write_text("X = 0.6\nY = 0.6\n")
    config = make_config({"target.py:X": "float(0, 1)", "target.py:Y": "float(0, 1)"})

    def at(x: float, y: float) -> dict[str, Any]:
        return {"target.py:X": x, "target.py:Y": y}

    history = [
        summary(1, at(0.5, 0.5), "keep", 1.0),
        replace(summary(2, at(0.6, 0.5), "discard", 0.99), delta=-0.01),  # a near miss
        replace(summary(3, at(0.5, 0.4), "discard", 1.05), delta=0.05),  # worse: a failure
        summary(4, at(0.4, 0.5), "crash", None),  # a failure
        replace(summary(5, at(0.6, 0.6), "keep", 0.9), delta=-0.1),
        replace(summary(6, at(0.6, 0.7), "discard", 0.95), delta=0.05),
    ]
    resumed = proposer(config)
    resumed.resume([ExperimentOutcome(s, None) for s in history])
    assert resumed.propose(make_ctx(tmp_path, config)) is not None
    region = resumed._memory.region
    assert region.length == pytest.approx(LENGTH_INIT * 1.5 * 1.5)
    assert region.failures == 1 and set(region.momentum) == {("target.py:X", 1), ("target.py:Y", 1)}

    live = proposer(config)  # the same experiments learnt one verdict at a time
    for n, done in enumerate(history):
        assert live.propose(replace(make_ctx(tmp_path, config, history[:n + 1]))) is not None
        live.observe(ExperimentOutcome(done, None))
    assert live._memory.region == region


# -- parallel slots ---------------------------------------------------------------------------------


def _ctx_with(root: Path, config: Config, history: Sequence[ExperimentSummary],
              in_flight: dict[str, Proposal], exp_id: str) -> ProposalContext:
    ctx = make_ctx(root, config, history)
    flying = [InFlight(id=k, hypothesis=p.hypothesis, params=p.params) for k, p in in_flight.items()]
    return replace(ctx, in_flight=flying, experiment_id=exp_id)


def _value(params: dict[str, Any]) -> float:
    return sum((float(v) - 0.3) ** 2 for v in params.values())


def _trial_of(tune: TuneProposer, params: dict[str, Any]) -> Any:
    """The trial holding `params` (TPE's trials keep its unsnapped values; closed repeats of a
    configuration, FAIL trials made when a sampler suggested it again, are left out)."""
    study = tune._memory.study
    assert study is not None
    matches = [t for t in study.trials
               if all(t.params.get(k) == pytest.approx(v, abs=1e-3) for k, v in params.items())
               and t.user_attrs.get("tune") != "repeat"]
    assert len(matches) == 1, (params, matches)
    return matches[0]


@pytest.mark.parametrize("phase", ["local", "tpe"])
def test_n_proposals_in_flight_are_distinct_and_outcomes_may_arrive_in_any_order(
    tmp_path: Path, phase: str
) -> None:
    """A scheduler with 4 slots asks 4 times before any verdict, then learns them out of order."""
    names = [f"target.py:K{i}" for i in range(3)]
    (tmp_path / "target.py").write_text("".join(f"K{i} = 0.5\n" for i in range(3)))
    config = make_config({n: "float(0, 1)" for n in names})
    rng = random.Random(1)
    history = [summary(1, dict.fromkeys(names, 0.5), "keep", _value(dict.fromkeys(names, 0.5)))]
    if phase == "tpe":  # enough results for the model to be past its random start
        for seq in range(2, 14):
            params = {n: round(rng.random(), 3) for n in names}
            history.append(summary(seq, params, "discard", _value(params)))
    tune = proposer(config, local=phase == "local", n_startup_trials=5)
    tune.resume([ExperimentOutcome(s, None) for s in history])
    flying: dict[str, Proposal] = {}
    for slot in range(4):
        exp_id = f"e{len(history) + slot + 1}"
        prop = tune.propose(_ctx_with(tmp_path, config, history, flying, exp_id))
        assert prop is not None and prop.params is not None
        assert (phase == "tpe") == prop.rationale.startswith("TPE")
        flying[exp_id] = prop
    configs = [tuple(p.params.values()) for p in flying.values() if p.params]
    past = {tuple(s.params.values()) for s in history if s.params}
    assert len(set(configs)) == 4 and not set(configs) & past
    study = tune._memory.study
    assert study is not None
    assert len(study.get_trials(states=(TrialState.RUNNING,))) == 4

    order = list(flying)[::-1][1:] + [list(flying)[-1]]  # e.g. 3, 2, 1, then 4
    for n, exp_id in enumerate(order):
        prop = flying[exp_id]
        assert prop.params is not None
        done = summary(int(exp_id[1:]), prop.params, "discard", _value(prop.params))
        done = replace(done, id=exp_id)
        tune.observe(ExperimentOutcome(done, prop))
        trial = _trial_of(tune, prop.params)
        assert trial.state == TrialState.COMPLETE and trial.value == _value(prop.params)
        assert len(study.get_trials(states=(TrialState.RUNNING,))) == 3 - n


def test_local_moves_in_flight_take_different_directions(tmp_path: Path) -> None:
    """The local constant liar: a sibling's direction counts as tried while it runs."""
    (tmp_path / "target.py").write_text("X = 0.5\n")
    config = make_config({"target.py:X": "float(0, 1)"})
    opposite = 0
    for seed in range(20):
        tune = proposer(config, seed=seed)
        history = [summary(1, {"target.py:X": 0.5}, "keep", 1.0)]
        tune.resume([ExperimentOutcome(history[0], None)])
        first = tune.propose(_ctx_with(tmp_path, config, history, {}, "e2"))
        assert first is not None and first.params is not None
        second = tune.propose(_ctx_with(tmp_path, config, history, {"e2": first}, "e3"))
        assert second is not None and second.params is not None
        opposite += (first.params["target.py:X"] > 0.5) != (second.params["target.py:X"] > 0.5)
    assert opposite >= 16  # 19 of 20 here; 13 when siblings' directions are not counted


def test_siblings_in_flight_from_elsewhere_are_never_proposed_and_are_told(tmp_path: Path) -> None:
    """After a resume, slots still running experiments this process did not propose."""
    (tmp_path / "target.py").write_text("N = 3\n")
    config = make_config({"target.py:N": "int(1, 6)"})
    tune = proposer(config)
    history = [summary(1, {"target.py:N": 3}, "keep", 1.0)]
    tune.resume([ExperimentOutcome(history[0], None)])
    sibling = Proposal(hypothesis="tune: N 3 → 4", params={"target.py:N": 4})
    flying = {"e2": sibling}
    proposed = []
    for exp_id in ("e3", "e4", "e5", "e6"):
        prop = tune.propose(_ctx_with(tmp_path, config, history, flying, exp_id))
        assert prop is not None and prop.params is not None
        proposed.append(prop.params["target.py:N"])
        flying[exp_id] = prop
    assert sorted(proposed) == [1, 2, 5, 6]  # 3 is the incumbent, 4 is in flight
    assert tune.propose(_ctx_with(tmp_path, config, history, flying, "e7")) is None
    study = tune._memory.study
    assert study is not None
    assert _trial_of(tune, {"target.py:N": 4}).state == TrialState.RUNNING
    tune.observe(ExperimentOutcome(replace(summary(2, {"target.py:N": 4}, "discard", 2.0),
                                           id="e2"), None))
    assert _trial_of(tune, {"target.py:N": 4}).value == 2.0


def test_resume_after_a_kill_leaves_no_phantom_running_trials(tmp_path: Path) -> None:
    names = [f"target.py:K{i}" for i in range(3)]
    (tmp_path / "target.py").write_text("".join(f"K{i} = 0.5\n" for i in range(3)))
    config = make_config({n: "float(0, 1)" for n in names})
    history = [summary(1, dict.fromkeys(names, 0.5), "keep", 1.0)]
    first = proposer(config)
    first.resume([ExperimentOutcome(history[0], None)])
    flying: dict[str, Proposal] = {}
    for exp_id in ("e2", "e3", "e4"):
        prop = first.propose(_ctx_with(tmp_path, config, history, flying, exp_id))
        assert prop is not None
        flying[exp_id] = prop
    # kill -9: `first` is gone. e2 was decided and recorded; the engine re-runs e3; e4 is lost
    # (recorded as interrupted, which the session does not pass on).
    assert flying["e2"].params is not None and flying["e4"].params is not None
    history.append(replace(summary(2, flying["e2"].params, "discard", 2.0), id="e2"))
    second = proposer(config)
    second.resume([ExperimentOutcome(s, None) for s in history])
    still = {"e3": flying["e3"]}
    prop = second.propose(_ctx_with(tmp_path, config, history, still, "e5"))
    assert prop is not None and prop.params is not None
    assert prop.params != flying["e3"].params
    study = second._memory.study
    assert study is not None
    running = study.get_trials(states=(TrialState.RUNNING,))
    assert len(running) == 2  # e3 (re-run by the engine) and e5 (just proposed)
    # e5 is decided; e3 is lost this time too, so the next context has nothing in flight.
    e5 = replace(summary(5, prop.params, "discard", 3.0), id="e5")
    second.observe(ExperimentOutcome(e5, prop))
    nxt = second.propose(_ctx_with(tmp_path, config, [*history, e5], {}, "e6"))
    assert nxt is not None
    running = study.get_trials(states=(TrialState.RUNNING,))
    assert len(running) == 1  # only e6: e3's trial was closed, not left RUNNING
    assert _trial_of(second, flying["e3"].params or {}).state == TrialState.FAIL
    # Its result, should it still arrive, is learnt as a new trial.
    late = replace(summary(3, flying["e3"].params, "discard", 0.5), id="e3")
    second.observe(ExperimentOutcome(late, None))
    values = [t.value for t in study.trials if t.state == TrialState.COMPLETE]
    assert 0.5 in values


def test_resume_in_the_same_process_closes_the_trials_left_running(tmp_path: Path) -> None:
    (tmp_path / "target.py").write_text("X = 0.5\nY = 0.5\n")
    config = make_config({"target.py:X": "float(0, 1)", "target.py:Y": "float(0, 1)"})
    tune = proposer(config)
    history = [summary(1, {"target.py:X": 0.5, "target.py:Y": 0.5}, "keep", 1.0)]
    tune.resume([ExperimentOutcome(history[0], None)])
    flying: dict[str, Proposal] = {}
    for exp_id in ("e2", "e3", "e4"):
        prop = tune.propose(_ctx_with(tmp_path, config, history, flying, exp_id))
        assert prop is not None
        flying[exp_id] = prop
    study = tune._memory.study
    assert study is not None and len(study.get_trials(states=(TrialState.RUNNING,))) == 3
    e3 = replace(summary(3, flying["e3"].params, "discard", 2.0), id="e3")
    tune.resume([ExperimentOutcome(s, None) for s in [*history, e3]])
    assert not study.get_trials(states=(TrialState.RUNNING,))
    assert _trial_of(tune, flying["e3"].params or {}).value == 2.0


def test_a_seed_makes_the_proposals_reproducible(tmp_path: Path) -> None:
    names = [f"target.py:K{i}" for i in range(4)]
    (tmp_path / "target.py").write_text("".join(f"K{i} = 0.5\n" for i in range(4)))
    config = make_config({n: "float(0, 1)" for n in names})

    def session(seed: int) -> list[dict[str, Any]]:
        tune = proposer(config, seed=seed)
        history = [summary(1, dict.fromkeys(names, 0.5), "keep", _value(dict.fromkeys(names, 0.5)))]
        out = []
        for seq in range(2, 16):
            prop = tune.propose(replace(make_ctx(tmp_path, config, history),
                                        experiment_id=f"e{seq}"))
            assert prop is not None and prop.params is not None
            out.append(prop.params)
            history.append(replace(summary(seq, prop.params, "discard", _value(prop.params)),
                                   id=f"e{seq}"))
        return out

    assert session(3) == session(3)
    assert session(3) != session(4)


def test_concurrent_calls_from_several_slots_are_serialized(tmp_path: Path) -> None:
    (tmp_path / "target.py").write_text("X = 0.5\nY = 0.5\n")
    config = make_config({"target.py:X": "float(0, 1)", "target.py:Y": "float(0, 1)"})
    tune = proposer(config)
    found: list[tuple[Any, ...]] = []
    errors: list[BaseException] = []

    def slot(k: int) -> None:
        try:
            for i in range(6):
                prop = tune.propose(replace(make_ctx(tmp_path, config),
                                            experiment_id=f"s{k}-{i}"))
                assert prop is not None and prop.params is not None
                found.append(tuple(prop.params.values()))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=slot, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(found) == 24 == len(set(found))


FOUR_SLOTS_SCORE = """\
import time
from target import A, B, C
time.sleep(0.5)
print(f"score: {(A - 1) ** 2 + (B - 3) ** 2 + (C - 1) ** 2}")
"""
FOUR_SLOTS_CONFIG = """\
scope = ["target.py"]
protected = ["score.py"]
[verify]
command = "{python} score.py"
budget_seconds = 10
timeout_seconds = 60
[metric]
name = "score"
direction = "minimize"
[decision]
repeats = 2
headline_pairs = 0
deterministic = true  # the score is exact: identical repeats are the truth
[proposer]
name = "tune"
seed = 3
[knobs]
"target.py:A" = "int(0, 3)"
"target.py:B" = "int(0, 3)"
"target.py:C" = "int(0, 3)"
"""


@pytest.mark.slow
def test_four_workers_through_the_cli_propose_distinct_points(tmp_path: Path) -> None:
    """`run --workers 4` with tune: the engine asks while siblings run; no point twice (on a
    grid of 64 points, where 12 draws that ignored the siblings would repeat one ~2 times in 3)."""
    import sqlite3

    from tests.conftest import make_repo, run_cli

    repo = make_repo(tmp_path / "repo", {
        "target.py": "A = 2\nB = 2\nC = 2\n", "score.py": FOUR_SLOTS_SCORE,
        "autoresearch.toml": FOUR_SLOTS_CONFIG})
    result = run_cli(repo, "run", "--tag", "t", "--iterations", "13", "--workers", "4")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 workers" in result.stdout
    with sqlite3.connect(repo / ".autoresearch" / "ledger.db") as conn:
        exps = conn.execute("SELECT id, kind, params_json, worker FROM experiments ORDER BY seq")
        rows = [(i, k, p, w) for i, k, p, w in exps.fetchall()]
        spans = conn.execute("SELECT experiment_id, MIN(started_at), MAX(started_at + duration_s)"
                             " FROM runs WHERE role = 'candidate' GROUP BY experiment_id")
        runs = {e: (start, end) for e, start, end in spans.fetchall()}
    candidates = [r for r in rows if r[1] == "candidate"]
    assert len(candidates) == 12 and all(r[2] for r in candidates)
    points = [r[2] for r in candidates] + [r[2] for r in rows if r[1] == "baseline" and r[2]]
    assert len(points) == len(set(points)), points  # distinct, and never the baseline again
    assert {r[3] for r in candidates} == {"slot-1", "slot-2", "slot-3", "slot-4"}
    # The proposals were asked for while siblings ran: some candidates' runs overlapped.
    overlapping = sum(1 for a in runs for b in runs if a < b and runs[a][0] < runs[b][1]
                      and runs[b][0] < runs[a][1])
    assert overlapping >= 3, runs


def test_replay_sets_the_knobs_a_change_set_on_a_newer_incumbent(tmp_path: Path) -> None:
    # A parallel winner replayed by its values (git's replay conflicted): the knobs it set take
    # its values, the rest stay the incumbent's; anything else, or a knob gone, is no replay.
    text = "A = 1.0  # knob: float(0, 10)\nB = 2  # knob: int(0, 9)\nC = 3  # knob: int(0, 9)\n"
    (tmp_path / "target.py").write_text(text)
    config = make_config({})
    tune = proposer(config)
    tune.propose(make_ctx(tmp_path, config))  # finds the knobs
    after = text.replace("A = 1.0", "A = 4.5").replace("B = 2", "B = 7")
    (tmp_path / "target.py").write_text(text.replace("B = 2", "B = 5").replace("C = 3", "C = 8"))
    replayed = tune.replay({"target.py": text}, {"target.py": after}, tmp_path)
    assert replayed is not None
    assert replayed.edits == {"target.py": text.replace("A = 1.0", "A = 4.5")
                              .replace("B = 2", "B = 7").replace("C = 3", "C = 8")}
    # Its hypothesis is told from the new incumbent's values (B was 5 there, not 2).
    assert replayed.hypothesis == "tune: A 1.0 → 4.5, B 5 → 7"
    # More than knob values, a file made, a knob's line gone from the incumbent: None.
    assert tune.replay({"target.py": text}, {"target.py": after + "D = 1\n"}, tmp_path) is None
    assert tune.replay({"target.py": None}, {"target.py": after}, tmp_path) is None
    (tmp_path / "target.py").write_text("A = 1.0  # knob: float(0, 10)\n")
    assert tune.replay({"target.py": text}, {"target.py": after}, tmp_path) is None
