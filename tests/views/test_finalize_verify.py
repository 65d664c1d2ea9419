"""`finalize --verify` end to end through the CLI: what it measures again, what it reuses, and
what it says when a branch cannot run on its own."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from tests.conftest import cli_env, git, make_repo, run_cli, use_script

# score = 10 + A + B, maximized, with noise, plus whatever the machine's "drift" file (outside
# the repository) says: a machine that is slower today than during the session.
SCORE_PY = textwrap.dedent(
    """
    import os, random, sys, time
    sys.path.insert(0, ".")
    import a, b
    hold = os.environ.get("HOLD_FILE", "")
    if hold and os.path.exists(hold):  # a run that lasts until the test lets it go
        open(hold + ".running", "w").close()
        while os.path.exists(hold):
            time.sleep(0.05)
    flaky = os.environ.get("FLAKY_FILE", "")
    if flaky and a.A != 0 and os.path.exists(flaky):  # a change's run that fails once, by chance
        os.remove(flaky)
        raise SystemExit("a failure by chance")
    drift_file = os.environ.get("DRIFT_FILE", "")
    drift = float(open(drift_file).read()) if os.path.exists(drift_file) else 0.0
    print(f"score: {10 + a.A + b.B + random.gauss(0, 0.02) + drift}")
    """
)
CONFIG = textwrap.dedent(
    """
    scope = ["a.py", "b.py"]
    protected = ["score.py"]
    [verify]
    command = "{python} score.py"
    budget_seconds = 5
    timeout_seconds = 60
    [metric]
    name = "score"
    direction = "maximize"
    [decision]
    repeats = 3
    """
)
WIDE = {"COLUMNS": "220"}  # table rows on one line each


def two_file_repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", {"a.py": "A = 0.0\n", "b.py": "B = 0.0\n",
                                         "score.py": SCORE_PY, "autoresearch.toml": CONFIG})


def effect_rows(stdout: str) -> dict[str, list[str]]:
    """The effect table's rows: first cell (the branch) -> the other cells."""
    table = stdout.split("each change's own effect", 1)[1]
    rows = {}
    for line in table.splitlines():
        cells = [c.strip() for c in re.split(r"[│┃]", line)[1:-1]]
        if len(cells) == 5 and cells[0] and cells[0] != "branch":
            rows[cells[0]] = cells[1:]
    return rows


def test_verify_measures_the_base_again_beside_branches_that_need_fresh_runs(
        tmp_path: Path) -> None:
    """Two branches (A +1, B +0.5), and a machine 1.0 slower today than in the session: each
    branch is compared with the base measured now, round by round, never with the session's old
    baseline runs or a kept candidate's own (lucky) runs. The tip keeps the headline's pairs."""
    repo = two_file_repo(tmp_path)
    use_script(repo, [{"hypothesis": "raise A to 1", "edits": {"a.py": "A = 1.0\n"}},
                      {"hypothesis": "raise B to 0.5", "edits": {"b.py": "B = 0.5\n"}}])
    drift = tmp_path / "drift"
    env = {"DRIFT_FILE": str(drift), **WIDE}
    session = run_cli(repo, "run", "--tag", "t", "-n", "3", env=env)
    assert session.returncode == 0, session.stdout + session.stderr
    drift.write_text("-1.0")
    proc = run_cli(repo, "finalize", "--tag", "t", "--verify", "--repeats", "3", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = effect_rows(proc.stdout)
    a_only, b_only = "autoresearch-final/t/01-raise-a-to-1", "autoresearch-final/t/02-raise-b-to-0-5"
    assert abs(float(rows[a_only][2]) - 1.0) < 0.15, rows
    assert abs(float(rows[b_only][2]) - 0.5) < 0.15, rows
    assert rows["base"][0] == "3 fresh" and float(rows["base"][1]) < 9.2  # today's base
    assert rows[a_only][0] == rows[b_only][0] == "3 fresh"
    tip = rows["all changes (autoresearch/t)"]
    assert tip[0] == "3 reused (headline)" and abs(float(tip[2]) - 1.5) < 0.15, rows
    # The base and the two branches, three rounds: nine runs, each tree once a round.
    logs = sorted(p.name for p in (repo / ".autoresearch" / "finalize" / "t" / "logs").iterdir())
    assert len(logs) == 9 and not any(name.startswith("03-") for name in logs), logs
    said = " ".join(proc.stdout.split())
    assert "noise: σ of the base's 3 fresh run(s)" in said
    assert "reused (headline): the session's best and base re-measured" in said
    assert "finalize/t/worktree" not in git(repo, "worktree", "list")


def test_a_branch_that_needs_an_earlier_one_is_said_to_crash_on_its_own(tmp_path: Path) -> None:
    """Keep 1 adds a helper to b.py, keep 2 uses it in a.py: branch 02 alone crashes. That is
    the branch's doing, not the verify command's: the table is printed, says so, exit 1."""
    repo = two_file_repo(tmp_path)
    use_script(repo, [
        {"hypothesis": "raise B and add helper NEW", "edits": {"b.py": "B = 0.5\nNEW = 1.0\n"}},
        {"hypothesis": "use helper from b in a", "edits": {"a.py": "import b\nA = b.NEW\n"}}])
    session = run_cli(repo, "run", "--tag", "t", "-n", "3", env=WIDE)
    assert session.returncode == 0, session.stdout + session.stderr
    proc = run_cli(repo, "finalize", "--tag", "t", "--verify", "--repeats", "3", env=WIDE)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "--verify stopped" not in proc.stderr and "Traceback" not in proc.stderr
    rows = effect_rows(proc.stdout)
    helper, user = ("autoresearch-final/t/01-raise-b-and-add-helper-new",
                    "autoresearch-final/t/02-use-helper-from-b-in-a")
    assert rows[helper][0] == "3 fresh" and abs(float(rows[helper][2]) - 0.5) < 0.15, rows
    assert rows[user][0] == "0 fresh (2 failed)" and rows[user][2] == "—", rows
    assert rows[user][3] == "crashes on its own (needs an earlier branch?)", rows
    said = " ".join(proc.stdout.split())
    assert f"{user}: crashes on its own (needs an earlier branch?): crash" in said, said
    # Run once more after its first crash, then no more: the base and branch 01 three times,
    # branch 02 twice in the first round.
    logs = sorted(p.name for p in (repo / ".autoresearch" / "finalize" / "t" / "logs").iterdir())
    assert [name.endswith("-0-again.log") or name.endswith("-0.log")
            for name in logs if name.startswith("02-")] == [True, True], logs
    assert len(logs) == 8, logs


def test_a_branch_whose_first_run_fails_by_chance_is_measured_all_the_same(
        tmp_path: Path) -> None:
    """One failed run is not enough to call a branch broken: it is run once more at once, and
    when that run succeeds the branch is measured in every round (its failure still shown)."""
    repo = two_file_repo(tmp_path)
    use_script(repo, [{"hypothesis": "raise A to 1", "edits": {"a.py": "A = 1.0\n"}},
                      {"hypothesis": "raise B to 0.5", "edits": {"b.py": "B = 0.5\n"}}])
    session = run_cli(repo, "run", "--tag", "t", "-n", "3", env=WIDE)
    assert session.returncode == 0, session.stdout + session.stderr
    flaky = tmp_path / "flaky"
    flaky.touch()
    proc = run_cli(repo, "finalize", "--tag", "t", "--verify", "--repeats", "3",
                   env={"FLAKY_FILE": str(flaky), **WIDE})
    assert not flaky.exists()  # the failure happened
    assert proc.returncode == 1, proc.stdout + proc.stderr  # a run failed: the table says which
    assert "--verify stopped" not in proc.stderr and "Traceback" not in proc.stderr
    rows = effect_rows(proc.stdout)
    a_only = "autoresearch-final/t/01-raise-a-to-1"
    assert rows[a_only][0] == "3 fresh (1 failed)", rows
    assert abs(float(rows[a_only][2]) - 1.0) < 0.15, rows
    assert "crashes on its own" not in proc.stdout
    said = " ".join(proc.stdout.split())
    assert "each is run once more" in said, said


def test_a_second_finalize_is_refused_and_a_left_behind_worktree_blocks_no_later_one(
        tmp_path: Path) -> None:
    """Two `finalize --verify` at once would measure in one worktree, each removing the other's:
    the second is refused (exit 4) while the first runs on to its end. A worktree left broken
    there (its HEAD, or its .git link, gone) is removed by the next finalize, not in its way."""
    repo = two_file_repo(tmp_path)
    use_script(repo, [{"hypothesis": "raise A to 1", "edits": {"a.py": "A = 1.0\n"}},
                      {"hypothesis": "raise B to 0.5", "edits": {"b.py": "B = 0.5\n"}}])
    assert run_cli(repo, "run", "--tag", "t", "-n", "3").returncode == 0
    hold = tmp_path / "hold"
    hold.touch()
    first = subprocess.Popen(
        [sys.executable, "-m", "autoresearch", "finalize", "--tag", "t", "--verify",
         "--repeats", "2"], cwd=repo, env=cli_env({"HOLD_FILE": str(hold)}), text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not Path(f"{hold}.running").exists():  # the first one's first run is under way
            assert first.poll() is None and time.monotonic() < deadline, first.communicate()
            time.sleep(0.05)
        second = run_cli(repo, "finalize", "--tag", "t", "--verify", "--repeats", "2")
        assert second.returncode == 4, second.stdout + second.stderr
        said = " ".join(second.stderr.split())
        assert f"another `autoresearch finalize` of session t is running (process {first.pid})" \
            in said, said
        assert "Traceback" not in second.stderr
    finally:
        hold.unlink()
        out, err = first.communicate(timeout=120)
    assert first.returncode == 0, out + err  # the first one was not disturbed
    assert "each change's own effect" in out

    worktree = repo / ".autoresearch" / "finalize" / "t" / "worktree"
    for breakage in ("HEAD", ".git"):
        git(repo, "worktree", "add", "--detach", str(worktree), "main")
        link = (worktree / ".git").read_text().split(":", 1)[1].strip()
        (worktree / ".git" if breakage == ".git" else Path(link) / "HEAD").unlink()
        proc = run_cli(repo, "finalize", "--tag", "t", "--verify", "--repeats", "2")
        assert proc.returncode == 0, breakage + proc.stdout + proc.stderr
        assert "each change's own effect" in proc.stdout
        assert not worktree.exists() and str(worktree) not in git(repo, "worktree", "list")


def test_verify_is_refused_while_the_session_runs_and_plain_finalize_is_not(
        tmp_path: Path) -> None:
    # It measured 10 fresh runs beside a session's two busy slots: each slowed the other, and
    # the best it re-measured was one the session could still replace. report --verify refuses.
    repo = two_file_repo(tmp_path)
    use_script(repo, [{"hypothesis": "raise A to 1", "edits": {"a.py": "A = 1.0\n"}},
                      {"hypothesis": "raise B to 0.5", "edits": {"b.py": "B = 0.5\n"}}])
    assert run_cli(repo, "run", "--tag", "t", "-n", "2", env=WIDE).returncode == 0
    hold = tmp_path / "hold"
    hold.touch()
    session = subprocess.Popen(
        [sys.executable, "-m", "autoresearch", "run", "--repo", str(repo), "--tag", "t", "-n", "3"],
        cwd=repo, env=cli_env({"HOLD_FILE": str(hold)}), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while not Path(f"{hold}.running").exists():  # its next run is under way, held
            assert time.time() < deadline and session.poll() is None, session.stdout
            time.sleep(0.05)
        refused = run_cli(repo, "finalize", "--tag", "t", "--verify")
        said = " ".join(refused.stderr.split())
        assert refused.returncode == 4, refused.stdout + refused.stderr
        assert f"session t is running (process {session.pid}): finalize --verify would " \
               "measure beside its runs" in said, said
        assert "fix: run finalize --verify once the session has stopped" in said
        assert "re-measuring" not in refused.stdout
        plain = run_cli(repo, "finalize", "--tag", "t")
        assert plain.returncode == 0, plain.stdout + plain.stderr
    finally:
        hold.unlink()
        out, _ = session.communicate(timeout=120)
    assert session.returncode == 0, out


# The seeded form of SCORE_PY: each run's noise drawn from its own seed (AUTORESEARCH_SEED),
# as a well-behaved target does. A change moves the score by a fixed amount whatever the seed.
SEEDED_SCORE_PY = textwrap.dedent(
    """
    import os, random, sys
    sys.path.insert(0, ".")
    import a, b
    noise = random.Random(int(os.environ["AUTORESEARCH_SEED"])).gauss(0, 0.02)
    print(f"score: {10 + a.A + b.B + noise}")
    """
)
A_THEN_B = [{"hypothesis": "raise A to 1", "edits": {"a.py": "A = 1.0\n"}},
            {"hypothesis": "raise B to 0.5", "edits": {"b.py": "B = 0.5\n"}}]


def test_verify_removes_the_slots_of_a_finished_parallel_session_as_plain_finalize_does(
        tmp_path: Path) -> None:
    """--verify holds the session's lock while it measures: that flock is this process's own,
    not a running session's, so the slots go as with plain finalize (they were kept, the
    message naming finalize's own pid as the session's)."""
    repo = two_file_repo(tmp_path)
    use_script(repo, A_THEN_B, extra_config="[run]\nthreads = 1\n")
    session = run_cli(repo, "run", "--tag", "t", "-n", "3", "--workers", "2", env=WIDE)
    assert session.returncode == 0, session.stdout + session.stderr
    slots = repo / ".autoresearch" / "worktrees" / "t"
    assert (slots / "slot-1" / ".git").exists() and (slots / "slot-2" / ".git").exists()
    proc = run_cli(repo, "finalize", "--tag", "t", "--verify", "--repeats", "2", env=WIDE)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    said = " ".join(proc.stdout.split())
    assert "removed the session's 2 worktree slot(s) under .autoresearch/worktrees/t" in said, said
    assert "is running" not in said, said
    assert not slots.exists()
    assert ".autoresearch/worktrees" not in git(repo, "worktree", "list")
    # The lock it held is released with the file removed: a run of the session may start.
    assert not (repo / ".autoresearch" / "sessions" / "t" / "lock").exists()


def test_rounds_whose_shared_seed_cancels_say_so_instead_of_hidden_noise(tmp_path: Path) -> None:
    """Each round gives the base and the branches one seed (its noise cancels in their
    difference), and a new seed each round: on a seeded target whose changes add a fixed amount,
    every round's difference is the same though the runs varied. That is said as the headline
    says it of its pairs, not as "σ = 0 (hidden)", which is kept for runs that were identical."""
    repo = make_repo(tmp_path / "repo", {"a.py": "A = 0.0\n", "b.py": "B = 0.0\n",
                                         "score.py": SEEDED_SCORE_PY, "autoresearch.toml": CONFIG})
    use_script(repo, A_THEN_B)
    session = run_cli(repo, "run", "--tag", "t", "-n", "3", env=WIDE)
    assert session.returncode == 0, session.stdout + session.stderr
    proc = run_cli(repo, "finalize", "--tag", "t", "--verify", "--repeats", "3", env=WIDE)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = effect_rows(proc.stdout)
    a_only, b_only = "autoresearch-final/t/01-raise-a-to-1", "autoresearch-final/t/02-raise-b-to-0-5"
    assert rows[a_only][3] == rows[b_only][3] == "no spread (seeds shared)", rows
    said = " ".join(proc.stdout.split())
    assert "σ = 0" not in said, said
    assert (f"{a_only}: +1 in each of its 3 rounds: the runs varied, but each round's base and "
            "branch runs shared a seed and the noise it drew cancelled in their difference, so "
            "the rounds cannot show how far the effect would move under noise that does not cancel; "
            "the effect is exact for these seeds") in said, said
    assert f"{b_only}: +0.5 in each of its 3 rounds: the runs varied" in said, said
    sigma = float(said.split("noise: σ of the base's 3 fresh run(s) = ", 1)[1].split()[0])
    assert sigma > 0.001  # the runs did vary: the table's σ and the note agree


def test_rounds_of_identical_runs_still_call_the_noise_hidden(tmp_path: Path) -> None:
    """A target that ignores its seed gives identical runs in every round: there the noise is
    hidden, not cancelled, and the fix (a per-run seed) is said."""
    fixed = SEEDED_SCORE_PY.replace('int(os.environ["AUTORESEARCH_SEED"])', "7")
    config = CONFIG.replace("repeats = 3", "repeats = 3\ndeterministic = true")
    repo = make_repo(tmp_path / "repo", {"a.py": "A = 0.0\n", "b.py": "B = 0.0\n",
                                         "score.py": fixed, "autoresearch.toml": config})
    use_script(repo, A_THEN_B)
    session = run_cli(repo, "run", "--tag", "t", "-n", "3", env=WIDE)
    assert session.returncode == 0, session.stdout + session.stderr
    proc = run_cli(repo, "finalize", "--tag", "t", "--verify", "--repeats", "2", env=WIDE)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = effect_rows(proc.stdout)
    a_only = "autoresearch-final/t/01-raise-a-to-1"
    assert rows[a_only][3] == "σ = 0 (hidden)", rows
    said = " ".join(proc.stdout.split())
    assert (f"{a_only}: +1 in each of its 2 rounds: the runs were identical, so the noise is "
            "hidden, not zero (make the target draw its randomness from the seed each run is "
            "given: {seed}, or AUTORESEARCH_SEED)") in said
    assert "seeds shared" not in said and "exact for these seeds" not in said, said


def test_a_target_with_the_bases_files_has_no_effect_rather_than_hidden_noise() -> None:
    """A branch whose changes undo each other is the base's tree: measured as the base (its runs
    shared, never run twice), its effect is none by construction, not a zero-spread interval."""
    from autoresearch.finalize.verify import _Arm, _fresh_effect
    from autoresearch.views.cli import _interval_cell

    base = _Arm(0, "base", "b" * 40, values={0: 10.01, 1: 9.98, 2: 10.03})
    effect = _fresh_effect("autoresearch-final/t/01-undo", "c" * 40, base, base, "maximize")
    assert effect.same_as_base and effect.improvement == 0.0 and effect.interval is None
    assert effect.no_spread() is None
    assert _interval_cell(effect) == "— (the base's files)"
