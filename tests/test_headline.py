"""The session's headline is verified: best vs baseline re-measured in interleaved pairs at the
end, recorded with a confidence interval, never measured twice for the same trees; seeds differ
per repeat so a deterministic target's noise is measured, not hidden."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from autoresearch.headline import Headline
from autoresearch.policy import Interval, paired_interval
from tests.conftest import edit_config, git, run_cli, use_script


def rows(repo: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(repo / ".autoresearch" / "ledger.db") as conn:
        return conn.execute(sql).fetchall()


def headlines(repo: Path) -> list[dict[str, object]]:
    return [json.loads(str(r[0])) for r in rows(
        repo, "SELECT data_json FROM events WHERE kind = 'headline' ORDER BY id")]


def noisy(repo: Path) -> None:
    edit_config(repo, '[verify]\n', '[verify]\nenv = { NOISE = "0.05" }\n')
    git(repo, "commit", "-qam", "noisy toy")


def test_the_headline_is_re_measured_in_interleaved_pairs_with_an_interval(
        toy_repo: Path) -> None:
    noisy(toy_repo)
    use_script(toy_repo, [{"hypothesis": "X to 6", "edits": {"target.py": "X = 6.0\n"}},
                          {"hypothesis": "X to 1", "edits": {"target.py": "X = 1.0\n"}}])
    result = run_cli(toy_repo, "run", "--tag", "t", "-n", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    out = " ".join(result.stdout.split())
    assert "headline re-measured over 3 interleaved pairs: best vs baseline improves score" in out
    (hl,) = headlines(toy_repo)
    assert hl["best"] == "t-0002" and len(hl["pairs"]) == 3  # type: ignore[arg-type]
    # (X - 7)² went from 16 to 1: a gain of 15 whose interval is clear of 0.
    assert 14 < float(hl["estimate"]) < 16 and 0 < float(hl["low"]) < float(hl["high"])  # type: ignore[arg-type]
    # The runs come in back-to-back pairs whose order alternates (baseline first, then best
    # first: a linear drift cancels over two pairs), and belong to the best's experiment.
    runs = rows(toy_repo, "SELECT role, commit_sha FROM runs WHERE experiment_id = 't-0002' "
                "AND role LIKE 'headline%' ORDER BY id")
    assert [r[0] for r in runs] == ["headline-baseline", "headline", "headline",
                                    "headline-baseline", "headline-baseline", "headline"]
    base = git(toy_repo, "rev-parse", "autoresearch/t~1")
    assert {r[1] for r in runs if r[0] == "headline-baseline"} == {base}
    # status and the report say it.
    status = " ".join(run_cli(toy_repo, "status", "--tag", "t").stdout.split())
    assert "verified headline re-measured over 3 interleaved pairs" in status
    report = run_cli(toy_repo, "report", "--tag", "t", "--out", str(toy_repo.parent / "rep"))
    assert report.returncode == 0, report.stderr
    # Its summary line gives the session's own numbers, then the re-measured ones.
    assert "verified: headline re-measured over 3 interleaved pairs" in " ".join(
        report.stdout.split())
    markdown = (toy_repo.parent / "rep" / "report.md").read_text()
    assert "**Verified:** headline re-measured over 3 interleaved pairs" in markdown
    # A resumed session whose best did not change does not measure the same trees again.
    again = run_cli(toy_repo, "run", "--tag", "t", "-n", "3")
    assert again.returncode == 0, again.stdout + again.stderr
    assert [r[0] for r in rows(toy_repo, "SELECT status FROM experiments ORDER BY seq")] == [
        "keep", "keep", "discard"]
    assert len(headlines(toy_repo)) == 1
    (count,) = rows(toy_repo, "SELECT COUNT(*) FROM runs WHERE role LIKE 'headline%'")[0]
    assert count == 6


def test_nothing_kept_or_pairs_off_means_no_headline(toy_repo: Path) -> None:
    use_script(toy_repo, [{"hypothesis": "X to 1", "edits": {"target.py": "X = 1.0\n"}},
                          {"hypothesis": "X to 6", "edits": {"target.py": "X = 6.0\n"}}])
    assert run_cli(toy_repo, "run", "--tag", "t", "-n", "2").returncode == 0
    assert headlines(toy_repo) == []  # only a discard: the baseline is still the best
    edit_config(toy_repo, "repeats = 2", "repeats = 2\nheadline_pairs = 0")
    git(toy_repo, "commit", "-qam", "headline off")
    result = run_cli(toy_repo, "run", "--tag", "t", "-n", "3")
    assert result.returncode == 0, result.stdout + result.stderr
    assert rows(toy_repo, "SELECT status FROM experiments WHERE seq = 3")[0][0] == "keep"
    assert headlines(toy_repo) == []
    assert "not yet" not in run_cli(toy_repo, "status", "--tag", "t").stdout  # off by choice


def test_every_repeat_has_its_own_seed_and_kth_runs_share_theirs(toy_repo: Path) -> None:
    # A seeded deterministic target: the score depends on AUTORESEARCH_SEED only through noise.
    score = (toy_repo / "score.py").read_text().replace(
        'noise = float(os.environ.get("NOISE", "0"))',
        'random.seed(int(os.environ["AUTORESEARCH_SEED"])); noise = 0.05')
    (toy_repo / "score.py").write_text(score)
    git(toy_repo, "commit", "-qam", "seeded noise")
    use_script(toy_repo, [{"hypothesis": "X to 6", "edits": {"target.py": "X = 6.0\n"}}])
    assert run_cli(toy_repo, "run", "--tag", "t", "-n", "2").returncode == 0
    values = rows(toy_repo, "SELECT r.commit_sha, m.value FROM runs r JOIN metrics m "
                  "ON m.run_id = r.id AND m.name = 'score' ORDER BY r.id")
    base = [float(str(v)) for c, v in values if c == values[0][0]]
    best = [float(str(v)) for c, v in values if c != values[0][0]]
    assert len(set(base)) == len(base) >= 3  # the baseline's repeats differ: noise measured
    noise = rows(toy_repo, "SELECT noise FROM sessions")[0][0]
    assert noise is not None and float(str(noise)) > 0
    # The candidate's first run shares the baseline's first seed: they differ by the change
    # alone, (6 - 7)² - (3 - 7)² = -15, to the last digit.
    assert abs((best[0] - base[0]) - (-15.0)) < 1e-9


def test_pairs_whose_shared_seed_cancels_the_noise_are_not_called_identical_runs() -> None:
    # Noise drawn from the run's seed and added to the score, with each pair's two runs sharing
    # their seed: every pair differs by 15 but for float rounding. It was shown as "[+15, +15]
    # at 95%" (an interval of rounding error), or, where the rounding happened to agree, as "the
    # runs were identical ... give each run its own seed" though each run had its own.
    pairs = [(1.0 + n, 16.0 + n) for n in (0.0123456, -0.0371, 0.0449)]
    shared = Headline(best_id="t-0002", best_commit="b", baseline_commit="a", pairs=pairs,
                      interval=paired_interval(pairs, "minimize"), failures=[])
    said = shared.describe("score")
    assert ("best vs baseline +15 score in every pair; the runs varied, but each pair's two runs "
            "shared a seed and the noise it drew cancelled in their difference, so the pairs "
            "cannot show how far the gain would move under noise that does not cancel") in said, said
    assert "identical" not in said and "[+15, +15]" not in said
    assert shared.data()["low"] == shared.data()["high"] == shared.data()["estimate"]
    # Runs that were the same every time: a fixed seed hides the noise, and the fix is said.
    same = [(1.0, 16.0)] * 3
    fixed = Headline(best_id="t-0002", best_commit="b", baseline_commit="a", pairs=same,
                     interval=paired_interval(same, "minimize"), failures=[])
    assert ("the runs were identical, so the noise is hidden, not zero (make the target draw "
            "its randomness from the seed each run is given: {seed}") in fixed.describe("score")


def test_finalize_verify_reuses_the_recorded_runs_of_the_same_trees(toy_repo: Path) -> None:
    noisy(toy_repo)
    use_script(toy_repo, [{"hypothesis": "X to 6", "edits": {"target.py": "X = 6.0\n"}}])
    assert run_cli(toy_repo, "run", "--tag", "t", "-n", "2").returncode == 0
    (before,) = rows(toy_repo, "SELECT COUNT(*) FROM runs")[0]
    # --repeats 2: at least 2 pairs are wanted; all 3 the headline measured are used.
    result = run_cli(toy_repo, "finalize", "--tag", "t", "--verify", "--repeats", "2",
                     env={"COLUMNS": "200"})  # each table row on one line
    assert result.returncode == 0, result.stdout + result.stderr
    out = " ".join(result.stdout.split())
    # One branch, whose tree is the session's tip: base and tip were measured at the end of the
    # session (the headline), so nothing is run again.
    assert "base: reusing the headline's 3 run(s) of the base" in out
    assert "all changes (autoresearch/t): reusing the headline's 3 interleaved pair(s)" in out
    assert "3 reused (headline)" in out and "fresh" not in out
    assert not (toy_repo / ".autoresearch" / "finalize" / "t" / "logs").exists()
    assert rows(toy_repo, "SELECT COUNT(*) FROM runs")[0][0] == before
    # The verify command measures something else now (another budget): the headline's runs do
    # not stand beside runs made under it, so everything is measured afresh.
    edit_config(toy_repo, "budget_seconds = 5", "budget_seconds = 6")
    git(toy_repo, "commit", "-qam", "another budget")
    again = run_cli(toy_repo, "finalize", "--tag", "t", "--verify", "--repeats", "2",
                    "--force", env={"COLUMNS": "200"})
    said = " ".join(again.stdout.split())
    assert again.returncode == 0, again.stdout + again.stderr
    assert "reused (headline)" not in said and "2 fresh" in said


def test_report_verify_re_measures_a_headline_the_session_did_not(toy_repo: Path) -> None:
    noisy(toy_repo)
    config = (toy_repo / "autoresearch.toml").read_text()
    (toy_repo / "autoresearch.toml").write_text(
        config.replace("repeats = 2", "repeats = 2\nheadline_pairs = 0"))
    git(toy_repo, "commit", "-qam", "no headline at the end")
    use_script(toy_repo, [{"hypothesis": "X to 6", "edits": {"target.py": "X = 6.0\n"}}])
    assert run_cli(toy_repo, "run", "--tag", "t", "-n", "2").returncode == 0
    assert headlines(toy_repo) == []
    out = toy_repo.parent / "rep"
    plain = " ".join(run_cli(toy_repo, "report", "--tag", "t", "--out", str(out)).stdout.split())
    assert "not verified: best vs baseline was not re-measured" in plain
    assert "autoresearch report --verify" in plain
    off = run_cli(toy_repo, "report", "--tag", "t", "--verify", "--out", str(out))
    assert off.returncode == 0 and "headline_pairs = 0 turns it off" in off.stdout
    (toy_repo / "autoresearch.toml").write_text(config)
    git(toy_repo, "commit", "-qam", "headline on")
    on = run_cli(toy_repo, "report", "--tag", "t", "--verify", "--out", str(out))
    assert on.returncode == 0, on.stdout + on.stderr
    assert "headline re-measured over 3 interleaved pairs" in " ".join(on.stdout.split())
    (hl,) = headlines(toy_repo)
    assert hl["best"] == "t-0002"
    assert "**Verified:** headline re-measured" in (out / "report.md").read_text()
    again = run_cli(toy_repo, "report", "--tag", "t", "--verify", "--out", str(out))
    assert "the headline of t-0002 is verified already" in " ".join(again.stdout.split())
    assert len(headlines(toy_repo)) == 1
    # The session is left as it was: finished, not running.
    assert rows(toy_repo, "SELECT status FROM sessions")[0][0] == "finished"


def test_a_verification_that_failed_is_measured_again_and_says_it_failed(toy_repo: Path,
                                                                         tmp_path: Path) -> None:
    # The evaluation breaks while a flag file exists (outside the repository, named in the
    # environment autoresearch is started with: a machine-side fault, not a change).
    score = (toy_repo / "score.py").read_text()
    (toy_repo / "score.py").write_text(
        "import os, sys\nif os.path.exists(os.environ.get('BREAK_FLAG', '/nonexistent')):\n"
        "    sys.exit(3)\n" + score)
    config = (toy_repo / "autoresearch.toml").read_text()
    (toy_repo / "autoresearch.toml").write_text(
        config.replace("repeats = 2", "repeats = 2\nheadline_pairs = 0"))
    git(toy_repo, "commit", "-qam", "a flag breaks the evaluation; no headline at the end")
    use_script(toy_repo, [{"hypothesis": "X to 6", "edits": {"target.py": "X = 6.0\n"}}])
    assert run_cli(toy_repo, "run", "--tag", "t", "-n", "2").returncode == 0
    (toy_repo / "autoresearch.toml").write_text(config)
    git(toy_repo, "commit", "-qam", "headline on")
    flag = tmp_path / "broken"
    flag.touch()
    out = str(toy_repo.parent / "rep")
    broken = run_cli(toy_repo, "report", "--tag", "t", "--verify", "--out", out,
                     env={"BREAK_FLAG": str(flag)})
    said = " ".join(broken.stdout.split())
    assert broken.returncode == 1, broken.stdout + broken.stderr  # asked to verify: it could not
    assert "headline not verified" in said and "wrote" in said  # the report is written anyway
    flag.unlink()
    fixed = run_cli(toy_repo, "report", "--tag", "t", "--verify", "--out", out,
                    env={"BREAK_FLAG": str(flag)})
    said = " ".join(fixed.stdout.split())
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert "headline re-measured over" in said and "verified already" not in said
    assert "not verified" not in said  # just verified: not said to be unverified after it
    assert [h["low"] is not None for h in headlines(toy_repo)] == [False, True]


def test_a_headline_cut_short_by_a_failed_run_says_so_beside_its_interval() -> None:
    cut = Headline(best_id="t-0002", best_commit="b", baseline_commit="a",
                   pairs=[(1.0, 2.0), (1.1, 2.0)], interval=Interval(0.95, 0.3, 1.6, 2, 0.95),
                   failures=["a headline run crashed: exit 3"])
    said = cut.describe("score")
    assert "over 2 interleaved pairs" in said
    assert "stopped after 2 pairs: a headline run crashed: exit 3" in said


def test_a_best_that_re_measures_worse_than_the_baseline_is_said_not_to_reproduce(
        toy_repo: Path, tmp_path: Path) -> None:
    # The kept measurement was a fluke (here: the first run of the change prints 0; with several
    # workers, another slot's result read from a shared path does the same). The headline
    # re-measures the best worse than the baseline: it must say the keep did not reproduce,
    # not stand beside "improvement +16" as one more line.
    lucky = tmp_path / "lucky"
    (toy_repo / "score.py").write_text(
        "import os, target\n"
        f"lucky = {str(lucky)!r}\n"
        "if getattr(target, 'FLUKE', False) and not os.path.exists(lucky):\n"
        "    open(lucky, 'w').close()\n"
        "    print('score: 0')\n"
        "else:\n"
        "    print(f'score: {(target.X - 7) ** 2}')\n")
    edit_config(toy_repo, "repeats = 2", "repeats = 1")
    use_script(toy_repo, [{"hypothesis": "X to 0, lucky", "edits": {
        "target.py": "X = 0.0\nFLUKE = True\n"}}])
    result = run_cli(toy_repo, "run", "--tag", "t", "-n", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    assert [r[0] for r in rows(toy_repo, "SELECT status FROM experiments ORDER BY seq")] == [
        "keep", "keep"]
    (hl,) = headlines(toy_repo)
    assert float(hl["estimate"]) == -33  # type: ignore[arg-type]  # 49 against 16
    for said in (result.stdout, run_cli(toy_repo, "status", "--tag", "t").stdout):
        assert ("worse than the baseline when re-measured: the measurement it was kept on did "
                "not reproduce") in " ".join(said.split())


def slow_steps(first: float, n: int, sleep: int = 1) -> list[dict[str, object]]:
    """A keep (X to `first`), then n worse proposals; every run sleeps `sleep` s."""
    return [{"hypothesis": f"X to {x}", "edits": {"target.py": f"X = {x}\nSLEEP = {sleep}\n"}}
            for x in [first, *[0.5 * i for i in range(n)]]]


def test_a_time_limit_keeps_room_for_the_headline_and_ends_by_it(toy_repo: Path) -> None:
    # `--until` is when the session is done: no experiment starts that would leave too little
    # time for the verification of the best, which then ends within the limit too.
    (toy_repo / "target.py").write_text("X = 3.0\nSLEEP = 1\n")
    edit_config(toy_repo, "repeats = 2", "repeats = 2\nheadline_pairs = 3")
    git(toy_repo, "commit", "-qam", "slow runs, 3 headline pairs")
    use_script(toy_repo, slow_steps(6.0, 30))
    result = run_cli(toy_repo, "run", "--tag", "t", "--until", "25s")
    assert result.returncode == 0, result.stdout + result.stderr
    said = " ".join(result.stdout.split())
    assert "the time limit would be exceeded by another experiment and the headline's " \
           "verification" in said, said
    (hl,) = headlines(toy_repo)
    # Room was kept for the 3 pairs at the runs' recent pace; on a loaded machine the pairs' own
    # runs can be slower, and the verification is then trimmed to what still ends in time (seen
    # once in CI beside the demo: 2 pairs). Below 2 it would be skipped: the next test.
    assert 2 <= len(hl["pairs"]) <= 3  # type: ignore[arg-type]
    ((first, last),) = rows(toy_repo, "SELECT MIN(started_at), MAX(finished_at) FROM runs")
    assert float(last) - float(first) < 25 + 4, f"ended {float(last) - float(first):.1f} s in"  # type: ignore[arg-type]


def test_a_time_limit_with_no_room_left_leaves_the_headline_to_report_verify(
        toy_repo: Path) -> None:
    # Runs of ~2 s: the baseline's two and the keep's one leave ~5 s of a 12 s limit, where two
    # pairs (8 s) do not fit: the verification is skipped, said, and `report --verify` does it.
    (toy_repo / "target.py").write_text("X = 3.0\nSLEEP = 2\n")
    edit_config(toy_repo, "repeats = 2", "repeats = 2\nheadline_pairs = 8")
    git(toy_repo, "commit", "-qam", "slow runs, 8 headline pairs")
    use_script(toy_repo, slow_steps(6.0, 5, sleep=2))
    result = run_cli(toy_repo, "run", "--tag", "t", "--until", "12s")
    assert result.returncode == 0, result.stdout + result.stderr
    said = " ".join(result.stdout.split())
    assert "is not verified: the time limit leaves no room for its 8 pairs of runs" in said, said
    assert "report --verify" in said and headlines(toy_repo) == []
    assert rows(toy_repo, "SELECT COUNT(*) FROM runs WHERE role LIKE 'headline%'") == [(0,)]
    assert rows(toy_repo, "SELECT COUNT(*) FROM events WHERE kind = 'headline-skipped'") == [(1,)]
    status = " ".join(run_cli(toy_repo, "status", "--tag", "t").stdout.split())
    assert "verified not yet: `autoresearch report --verify` re-measures best vs baseline" in status


def test_a_spending_limit_that_prices_machine_time_caps_the_headline_too(
        toy_repo: Path) -> None:
    # Runs of 0.5 s and more at $1 a second: the baseline's two runs and the keep's leave at
    # most $1.4 of a $3 budget, where two pairs ($2 and more) do not fit. The cap is kept, not
    # overshot by the verification, which is said and left to `report --verify` (the user's
    # own call).
    (toy_repo / "target.py").write_text("X = 3.0\nSLEEP = 0.5\n")
    config = toy_repo / "autoresearch.toml"
    config.write_text(config.read_text() + "\n[limits]\ncompute_usd_per_hour = 3600.0\n"
                      "max_usd = 3.0\n")
    git(toy_repo, "commit", "-qam", "priced machine time")
    use_script(toy_repo, [{"hypothesis": "X to 6", "edits": {"target.py": "X = 6.0\nSLEEP = 0.5\n"}}])
    result = run_cli(toy_repo, "run", "--tag", "t", "-n", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    said = " ".join(result.stdout.split())
    assert rows(toy_repo, "SELECT status FROM experiments ORDER BY seq") == [("keep",), ("keep",)]
    assert "is not verified: the spending limit leaves no room for its" in said, said
    assert rows(toy_repo, "SELECT COUNT(*) FROM runs WHERE role LIKE 'headline%'") == [(0,)]
    report = run_cli(toy_repo, "report", "--tag", "t", "--verify",
                     "--out", str(toy_repo.parent / "rep"))
    assert report.returncode == 0, report.stdout + report.stderr
    assert len(headlines(toy_repo)) == 1  # asked for, it is measured


def test_each_headline_pair_shares_a_seed_no_selection_run_had(toy_repo: Path) -> None:
    # The pair differs by the change alone (one seed for both runs), and the best is not
    # re-measured on the seeds it was selected on.
    score = (toy_repo / "score.py").read_text() + \
        'print(f"seedv: {int(os.environ[\'AUTORESEARCH_SEED\'])}")\n'
    (toy_repo / "score.py").write_text(score)
    edit_config(toy_repo, 'record = ["mem_mb"]', 'record = ["mem_mb", "seedv"]')
    edit_config(toy_repo, "repeats = 2", "repeats = 2\nheadline_pairs = 3")
    git(toy_repo, "commit", "-qam", "print the seed, 3 headline pairs")
    use_script(toy_repo, [{"hypothesis": "X to 6", "edits": {"target.py": "X = 6.0\n"}}])
    result = run_cli(toy_repo, "run", "--tag", "t", "-n", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    seeds = rows(toy_repo, "SELECT r.role, m.value FROM runs r JOIN metrics m ON m.run_id = r.id "
                 "AND m.name = 'seedv' ORDER BY r.id")
    headline = [int(float(str(v))) for role, v in seeds if str(role).startswith("headline")]
    selection = {int(float(str(v))) for role, v in seeds if not str(role).startswith("headline")}
    pairs = [headline[i:i + 2] for i in range(0, len(headline), 2)]
    assert len(pairs) == 3 and all(len(set(p)) == 1 for p in pairs), seeds
    assert len({p[0] for p in pairs}) == 3, seeds  # a seed of its own for each pair
    assert not set(headline) & selection, seeds


def test_report_verify_with_the_headline_turned_off_names_the_setting(toy_repo: Path) -> None:
    # "[decision]" was read as rich markup and dropped: "nothing to re-measure:  headline_pairs
    # = 0 turns it off".
    edit_config(toy_repo, "[decision]", "[decision]\nheadline_pairs = 0")
    use_script(toy_repo, [{"hypothesis": "X to 6", "edits": {"target.py": "X = 6.0\n"}}])
    assert run_cli(toy_repo, "run", "--tag", "t", "-n", "2").returncode == 0
    result = run_cli(toy_repo, "report", "--verify", "--tag", "t", env={"COLUMNS": "200"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "nothing to re-measure: [decision] headline_pairs = 0 turns it off" in result.stdout
