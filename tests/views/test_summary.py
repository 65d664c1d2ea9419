"""The shared read model: numbers the dashboard, the PNG and the report all draw."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import pytest

from autoresearch.headline import Headline
from autoresearch.policy import Interval, paired_interval
from autoresearch.state import SessionLock
from autoresearch.views.confidence import shown_ratio
from autoresearch.views.detail import experiment_detail
from autoresearch.views.noise import NoiseFloor
from autoresearch.views.summary import (
    LedgerNotFoundError,
    SessionNotFoundError,
    build_view,
    confidence,
    open_ledger,
    resolve_session,
    short_label,
    view_to_json,
)
from tests.conftest import run_cli
from tests.views.conftest import NOISY_BASELINE
from tests.views.ledger_factory import BASELINE_VALUES, DEFAULT_PLAN, BuiltSession, build_session


def _view(repo: Path, tag: str | None = None):  # type: ignore[no-untyped-def]
    ledger = open_ledger(repo)
    return build_view(ledger, resolve_session(ledger, tag))


def test_counts_points_and_running_best(demo_ro: BuiltSession) -> None:
    view = _view(demo_ro.repo)
    s = view.summary
    # The baseline (recorded as `keep`) is counted on its own, never as a kept change.
    assert s.counts == {"keep": 5, "discard": 2, "crash": 1, "timeout": 1, "rejected": 1,
                        "interrupted": 0, "open": 0, "baseline": 1, "baseline_failed": 0,
                        "candidates": len(DEFAULT_PLAN), "total": len(DEFAULT_PLAN) + 1}
    assert s.counts["total"] == len(view.experiments)  # the table's rows, `run -n`'s count
    # One point per experiment with a measured objective: baseline + 5 kept + 2 discarded.
    roles = [p.role for p in view.chart.points]
    assert roles.count("baseline") == 1 and roles.count("kept") == 5
    assert roles.count("discarded") == 2 and len(roles) == 8
    assert view.chart.crashed_seqs == [4, 6]
    # The step line starts at the baseline, moves only at kept experiments, reaches the end.
    steps = view.chart.best_line
    assert steps[0] == (1, pytest.approx(statistics.mean(BASELINE_VALUES)))
    kept = [p.seq for p in view.chart.points if p.role == "kept"]
    assert [x for x, _ in steps[1:]][: len(kept)] == kept
    assert steps[-1][0] == view.chart.max_seq == len(DEFAULT_PLAN) + 1
    # Repeats are a spread around the mean.
    first_kept = next(p for p in view.chart.points if p.role == "kept")
    assert (first_kept.low, first_kept.high, first_kept.runs) == (9.58, 9.63, 3)
    assert first_kept.label == "raise the learning rate to 0.02"


def test_best_baseline_noise_and_spend(demo_ro: BuiltSession) -> None:
    s = _view(demo_ro.repo).summary
    assert s.baseline == pytest.approx(10.0)
    assert s.best_id == f"{demo_ro.tag}-{len(DEFAULT_PLAN) + 1:04d}"  # the last kept experiment
    assert s.best == pytest.approx(8.81)
    assert s.improvement == pytest.approx(10.0 - 8.81)
    assert s.noise == pytest.approx(statistics.stdev(BASELINE_VALUES))
    assert s.cost_usd == pytest.approx(sum(p.cost_usd for p in DEFAULT_PLAN))
    assert s.max_usd == 1.0 and s.max_hours == 8.0
    assert not s.live and s.status == "finished"
    # Eleven experiments one minute apart, each running 45-48 s: the rate counts running time.
    assert s.active_s == pytest.approx(45 + 48 * len(DEFAULT_PLAN))
    assert s.active_s < s.elapsed_s
    assert s.experiments_per_hour == pytest.approx(len(DEFAULT_PLAN) / (s.active_s / 3600))


def test_the_rate_counts_the_experiments_that_got_a_verdict_not_the_interrupted(
        tmp_path: Path) -> None:
    # A session killed again and again re-runs the same candidate from zero each time: those
    # interrupted attempts are no experiments done (a tester saw 1,733/h, 92 of 214 interrupted).
    from tests.views.ledger_factory import Planned

    plan = [Planned(name, status, [value], {"notes.py": f"NOTE = {name!r}\n"})
            for name, status, value in [("a", "keep", 9.0), ("b", "interrupted", 9.5),
                                        ("c", "interrupted", 9.4), ("d", "discard", 9.8)]]
    built = build_session(tmp_path / "repo", plan=plan)
    s = _view(built.repo).summary
    assert s.experiments_per_hour == pytest.approx(2 / (s.active_s / 3600))


def test_active_time_leaves_out_the_pauses_between_runs() -> None:
    from autoresearch.views.summary import active_seconds

    # Two runs of a session a night apart; overlapping experiments count once; an open one
    # runs until `until`.
    spans = [(0.0, 10.0), (5.0, 12.0), (12.0, 15.0), (36_000.0, 36_010.0), (36_020.0, None)]
    assert active_seconds(spans, until=36_030.0) == pytest.approx(15 + 10 + 10)
    assert active_seconds([], until=5.0) == 0.0
    assert active_seconds([(None, None)], until=5.0) == 0.0


@pytest.mark.parametrize(("improvement", "noise", "level", "label"), [
    (2.0, 1.0, "green", "2.0σ"),
    (2.06, 1.0, "green", "2.0σ"),
    (1.99, 1.0, "yellow", "1.9σ"),
    (1.0, 1.0, "yellow", "1.0σ"),
    (0.99, 1.0, "red", "0.9σ"),
    (0.97, 1.0, "red", "0.9σ"),
    (0.3, 0.1, "green", "3.0σ"),
    (-0.5, 1.0, "red", "-0.5σ"),
    (0.3, None, "unknown", "σ unknown"),
    (0.3, 0.0, "unknown", "σ = 0: hidden"),  # never "∞σ": the noise is hidden, not absent
    (0.0, 0.0, "unknown", "σ = 0: hidden"),
    (None, 1.0, "unknown", "—"),
])
def test_confidence_levels(improvement: float | None, noise: float | None, level: str,
                           label: str) -> None:
    conf = confidence(improvement, NoiseFloor(noise, 3, noise, 2, 1), "score")
    assert (conf.level, conf.label) == (level, label)
    assert "noise floor" in conf.explanation and "≥ 2σ" in conf.explanation


def test_confidence_label_never_contradicts_its_colour() -> None:
    floor = NoiseFloor(1.0, 3, 1.0, 2, 1)
    for i in range(-300, 3300):
        conf = confidence(i / 1000, floor, "score")
        shown = float(conf.label.removesuffix("σ"))
        want = "green" if shown >= 2 else "yellow" if shown >= 1 else "red"
        assert conf.level == want, (i / 1000, conf.label, conf.level)
        assert shown <= i / 1000 + 1e-9  # floored, never rounded up past a threshold


def test_confidence_divides_by_the_better_measured_sigma(demo: BuiltSession) -> None:
    """The engine overwrites the session's σ with the pooled one after confirmation runs: with
    more degrees of freedom than the baseline's 3 runs give, it is the one the figure divides by
    (a σ of 3 runs made the same true gain read 1σ in one session and 16σ in another)."""
    pooled = 0.5
    demo.ledger.set_session_noise(demo.session.id, pooled)
    view = _view(demo.repo)
    own = statistics.stdev(BASELINE_VALUES)
    conf = view.confidence
    assert conf.pooled_dof > 2
    assert conf.noise == pooled and conf.noise_source == "pooled"
    assert conf.noise_runs == 3 and conf.baseline_noise == pytest.approx(own)
    assert conf.ratio == pytest.approx(view.summary.improvement / pooled)
    assert f"{math.floor(conf.ratio * 10) / 10:.1f}σ" == conf.label
    # Both floors are there, each called what it is.
    assert view.summary.noise == pooled and conf.pooled_noise == pooled
    assert view.summary.baseline_noise == pytest.approx(own) and view.summary.baseline_runs == 3
    assert (f"σ = 0.5 is the pooled σ the keep/discard rule uses, over every group of repeated "
            f"runs, {conf.pooled_dof} degrees of freedom: better measured than the baseline's "
            f"own σ = {own:.3g} over its 3 runs (2 degrees of freedom)") in conf.explanation
    assert conf.noise_basis == f"pooled σ, {conf.pooled_dof} degrees of freedom"


def test_confidence_divides_by_the_baselines_own_sigma_until_others_are_repeated() -> None:
    # Only the baseline was repeated: the pooled σ is its own, with no more degrees of freedom.
    from autoresearch.views.noise import NoiseFloor

    floor = NoiseFloor(baseline_sigma=0.3, baseline_runs=3, pooled_sigma=0.3, pooled_dof=2,
                       pooled_groups=1)
    conf = confidence(0.9, floor, "score")
    assert conf.noise_source == "baseline" and conf.noise == 0.3 and conf.label == "3.0σ"
    assert conf.noise_basis == "σ of the baseline's 3 runs"
    better = NoiseFloor(baseline_sigma=0.3, baseline_runs=3, pooled_sigma=0.45, pooled_dof=9,
                        pooled_groups=4)
    assert confidence(0.9, better, "score").label == "2.0σ"


def test_confidence_falls_back_to_the_pooled_sigma_after_a_single_baseline_run(
        tmp_path: Path) -> None:
    built = build_session(tmp_path / "repo", baseline_values=[10.0])
    built.ledger.set_session_noise(built.session.id, 0.2)  # measured by confirmation runs
    conf = _view(built.repo).confidence
    assert conf.noise_source == "pooled" and conf.noise == 0.2 and conf.baseline_noise is None
    assert conf.ratio == pytest.approx((10.0 - 8.81) / 0.2)
    assert "The baseline ran once" in conf.explanation and "pooled σ = 0.2" in conf.explanation
    assert "over the baseline's" not in conf.explanation


def test_real_session_confidence_uses_the_pooled_sigma_once_it_is_better_measured(
        noisy_repo: Path) -> None:
    ledger = open_ledger(noisy_repo)
    session = resolve_session(ledger, "n")
    view = build_view(ledger, session)
    base = view.experiments[0]
    assert base.kind == "baseline" and base.run_values == pytest.approx(NOISY_BASELINE)
    own = statistics.stdev(NOISY_BASELINE)
    # The engine's σ is pooled over the confirmation re-runs too: a different number.
    assert session.noise is not None and abs(session.noise - own) > 0.01
    assert any(e.runs > 1 for e in view.experiments[1:])  # there were confirmation runs
    conf = view.confidence
    # More degrees of freedom than the baseline's own two: the pooled σ is the figure's.
    assert conf.noise == pytest.approx(session.noise) and conf.noise_source == "pooled"
    # The session ended with its headline re-measured: the figure is that gain's.
    assert conf.verified_pairs == view.summary.verified_pairs >= 3
    assert conf.improvement == pytest.approx(view.summary.verified_improvement)
    assert conf.improvement is not None
    assert conf.ratio == pytest.approx(conf.improvement / session.noise)
    assert view.summary.noise == pytest.approx(session.noise)
    assert conf.pooled_dof > 2  # more than the baseline's own two degrees of freedom


def test_real_session_view(real_repo: Path) -> None:
    ledger = open_ledger(real_repo)
    view = build_view(ledger, resolve_session(ledger, "t"))
    session = ledger.session("t")
    assert session is not None
    exps = ledger.experiments(session.id)
    assert len(view.experiments) == len(exps) == 8
    measured = [e for e in exps if e.objective is not None]
    assert len(view.chart.points) == len(measured)
    assert view.summary.baseline == pytest.approx(16.0)  # (3 - 7)², deterministic
    # A target declared deterministic: identical baseline repeats are its truth (σ = 0), not
    # hidden noise; no ratio is claimed either way.
    assert view.summary.noise == 0.0
    assert (view.confidence.level, view.confidence.label) == ("unknown", "σ = 0: deterministic")
    json.dumps(view_to_json(view), allow_nan=False)  # strict JSON, no NaN


def test_detail_of_discarded_experiment_has_its_diff(demo_ro: BuiltSession) -> None:
    ledger = open_ledger(demo_ro.repo)
    discarded = next(e for e in demo_ro.experiments if e.status == "discard")
    detail = experiment_detail(ledger, demo_ro.repo, discarded.id)
    assert detail is not None
    assert "diff --git a/model.py b/model.py" in detail.diff and "+HIDDEN = 128" in detail.diff
    assert detail.log_tail.endswith("score: 9.64\n")
    assert detail.fingerprint and detail.fingerprint["python"] == "3.11.2"
    assert "noise threshold" in detail.experiment.decision_reason
    rejected = next(e for e in demo_ro.experiments if e.status == "rejected")
    none = experiment_detail(ledger, demo_ro.repo, rejected.id)
    assert none is not None and none.diff == "" and "never produced a commit" in none.diff_note
    assert experiment_detail(ledger, demo_ro.repo, "nope-0001") is None


def test_errors_are_clear(tmp_path: Path, demo_ro: BuiltSession) -> None:
    with pytest.raises(LedgerNotFoundError, match="no autoresearch ledger"):
        open_ledger(tmp_path)
    with pytest.raises(SessionNotFoundError, match="no session tagged 'zzz'") as info:
        resolve_session(open_ledger(demo_ro.repo), "zzz")
    assert info.value.fix and demo_ro.tag in info.value.fix


def test_short_label() -> None:
    assert short_label("a short one\nwith a second line") == "a short one"
    long = "increase the number of attention heads from eight to sixteen in every layer"
    label = short_label(long)
    assert len(label) <= 48 and label.endswith("…") and long.startswith(label[:-1])


def test_live_only_while_the_lock_holder_runs(demo: BuiltSession) -> None:
    demo.ledger.set_session_status(demo.session.id, "running")
    gone = _view(demo.repo).summary
    assert gone.process_gone and not gone.live
    # The session lock is an flock held by the live process: take it as a session would.
    lock = SessionLock(demo.repo / ".autoresearch" / "sessions" / demo.tag / "lock")
    lock.acquire()
    try:
        live = _view(demo.repo).summary
    finally:
        lock.release()
    assert live.live and not live.process_gone
    assert live.elapsed_s > gone.elapsed_s - 1  # the clock runs to now while live


def test_counts_and_rates_read_the_same_everywhere(demo_ro: BuiltSession) -> None:
    from autoresearch.views.format import fmt_counts, fmt_experiments, fmt_rate

    c = _view(demo_ro.repo).summary.counts
    assert fmt_counts(c) == ["5 kept", "2 discarded", "1 crashed", "1 timed out", "1 rejected"]
    assert fmt_experiments(c) == "11 experiments (the baseline + 10 candidates)"
    assert fmt_rate(3.14159) == "3.14 experiments / hour"
    assert fmt_rate(2020.4) == "2,020 experiments / hour"
    assert fmt_rate(50_500) == "842 experiments / min"
    assert fmt_rate(1e6) == "278 experiments / s"
    assert "e+" not in fmt_rate(5.05e4) and fmt_rate(None) == "—"


def _record_headline(built: BuiltSession, improvements: list[float]) -> None:
    """A verified headline for the session's best, recorded as the engine records it:
    (best, baseline) pairs whose differences are `improvements` (the metric is minimized, so
    best = baseline − improvement)."""
    view = _view(built.repo)
    best = next(e for e in view.experiments if e.id == view.summary.best_id)
    pairs = [(10.0 - d, 10.0) for d in improvements]
    headline = Headline(best.id, best.commit_sha or "", built.session.base_commit, pairs,
                        paired_interval(pairs, "minimize"), [])
    built.ledger.add_event(built.session.id, "headline", headline.describe("score"),
                           experiment_id=best.id, data=headline.data())


def test_a_verified_headline_sets_the_confidence_figure(demo: BuiltSession) -> None:
    """The selecting runs flatter the best: once it is re-measured, the σ figure is the
    re-measured gain's, in every view."""
    before = _view(demo.repo).confidence
    sigma = before.noise
    assert sigma is not None and before.noise_source == "pooled"
    assert before.ratio == pytest.approx((10.0 - 8.81) / sigma) and before.verified_pairs == 0
    _record_headline(demo, [0.50, 0.53, 0.47])
    view = _view(demo.repo)
    conf = view.confidence
    assert conf.improvement == pytest.approx(0.5) and conf.ratio == pytest.approx(0.5 / sigma)
    assert conf.verified_pairs == 3
    assert conf.noise_basis == (f"gain re-measured over 3 pairs, pooled σ, {conf.pooled_dof} "
                                "degrees of freedom")
    assert "re-measured at the session's end (3 interleaved pairs" in conf.explanation
    assert view.summary.improvement == pytest.approx(10.0 - 8.81)  # the session's own, unchanged
    assert view_to_json(view)["confidence"]["label"] == conf.label


def test_a_verified_interval_that_covers_zero_is_never_green(demo: BuiltSession) -> None:
    """The morning-headline failure: a best whose re-measured interval covers 0 must not be
    shown as 'green, unlikely to be noise', however large its ratio to one run's σ."""
    _record_headline(demo, [0.9, -0.5, 0.2])
    conf = _view(demo.repo).confidence
    assert conf.ratio is not None and conf.ratio > 2 and conf.label == f"{shown_ratio(conf.ratio):.1f}σ"
    assert conf.level == "yellow"
    assert "Its interval covers 0, so the figure is at most yellow" in conf.explanation
    # Status and the report say the same.
    status = " ".join(run_cli(demo.repo, "status", "--tag", demo.tag).stdout.split())
    assert f"confidence {conf.label} (yellow), gain re-measured over 3 pairs" in status
    out = demo.repo.parent / "rep"
    report = run_cli(demo.repo, "report", "--tag", demo.tag, "--out", str(out))
    assert report.returncode == 0, report.stderr
    assert f"re-measured +0.2, {conf.label})" in " ".join(report.stdout.split())
    assert f"**Confidence:** {conf.label} (yellow) — improvement +0.2 ÷ σ" in (
        out / "report.md").read_text()


def test_identical_pairs_leave_the_figure_on_the_sessions_numbers() -> None:
    floor = NoiseFloor(1.0, 3, 1.0, 2, 1)
    hidden = Interval(0.4, 0.4, 0.4, 3, 0.95)  # every pair the same: hidden noise
    conf = confidence(3.0, floor, "score", hidden)
    assert (conf.label, conf.verified_pairs) == ("3.0σ", 0)
    one_pair = Interval(2.5, -math.inf, math.inf, 1, 0.95)
    conf = confidence(3.0, floor, "score", one_pair)
    assert (conf.label, conf.level, conf.verified_pairs) == ("2.5σ", "yellow", 1)


def test_no_ledger_says_to_init_first_where_there_is_no_config(tmp_path: Path) -> None:
    # `run` fails without autoresearch.toml too: the fix is the first step that works.
    with pytest.raises(LedgerNotFoundError) as bare:
        open_ledger(tmp_path)
    assert "autoresearch init" in str(bare.value.fix)
    (tmp_path / "autoresearch.toml").write_text('scope = ["*.py"]\n')
    with pytest.raises(LedgerNotFoundError) as configured:
        open_ledger(tmp_path)
    assert "run `autoresearch run` here first" in str(configured.value.fix)
    assert "init" not in str(configured.value.fix)


def test_identical_baseline_repeats_keep_sigma_zero_beside_a_pooled_float_error() -> None:
    # deterministic = true, confirmation runs pooled to σ = 5e-16 (float error): the figure read
    # "3030040768679999.5σ (green)". Identical baseline repeats are σ = 0, as declared.
    from autoresearch.views.noise import NoiseFloor

    floor = NoiseFloor(baseline_sigma=0.0, baseline_runs=3, pooled_sigma=5.44e-16, pooled_dof=8,
                       pooled_groups=4)
    assert floor.source == "baseline" and floor.sigma == 0.0
    conf = confidence(1.648, floor, "loss", deterministic=True)
    assert conf.label == "σ = 0: deterministic" and conf.ratio is None


def test_a_verification_that_did_not_bear_the_gain_out_caps_the_colour() -> None:
    # The session's runs say 139σ; the pairs re-measured +0 in every pair (a zero-width
    # interval, left out of the ratio) or worse: never green.
    from autoresearch.policy import Interval
    from autoresearch.views.noise import NoiseFloor

    floor = NoiseFloor(baseline_sigma=0.012, baseline_runs=3, pooled_sigma=0.012, pooled_dof=2,
                       pooled_groups=1)
    assert confidence(1.655, floor, "loss").level == "green"
    zero = Interval(0.0, 0.0, 0.0, 3, 0.95)
    assert confidence(1.655, floor, "loss", zero).level == "yellow"
    worse = Interval(-0.5, -0.5, -0.5, 3, 0.95)
    assert confidence(1.655, floor, "loss", worse).level == "red"
