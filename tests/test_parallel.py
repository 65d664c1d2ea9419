"""Several trials in flight (`--workers N`): each in its own worktree slot, runs overlapping,
independent wins stacking, a stale win replayed onto the new incumbent or dropped, and kill -9
with two slots losing and duplicating nothing.

Real CLI, real git, real subprocesses. The toy target has two independent knobs in two files
(x.py, y.py), so two changes can both be kept; its score is deterministic, and each file may
ask the evaluation to sleep, which sets the order in which parallel runs finish.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.conftest import cli_env, edit_config, git, make_repo, run_cli, use_script

SCORE = textwrap.dedent(
    """
    import time
    import x, y
    time.sleep(getattr(x, "SLEEP", 0) + getattr(y, "SLEEP", 0))
    print(f"score: {(x.X - 7) ** 2 + (y.Y - 3) ** 2}")
    """
)
CONFIG = textwrap.dedent(
    """
    scope = ["x.py", "y.py"]
    protected = ["score.py"]
    [verify]
    command = "{python} score.py"
    budget_seconds = 5
    timeout_seconds = 20
    [metric]
    name = "score"
    direction = "minimize"
    [decision]
    repeats = 2
    deterministic = true  # the score is exact: identical repeats are the truth
    """
)


@pytest.fixture
def two_knobs(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", {"x.py": "X = 3.0\n", "y.py": "Y = 0.0\n",
                                         "score.py": SCORE, "autoresearch.toml": CONFIG})


def rows(repo: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(repo / ".autoresearch" / "ledger.db", timeout=10) as conn:
        return conn.execute(sql).fetchall()


def experiments(repo: Path) -> list[tuple[object, ...]]:
    return rows(repo, "SELECT seq, status, hypothesis, attempts, worker, decision_reason "
                "FROM experiments ORDER BY seq")


def test_independent_wins_stack_and_runs_overlap(two_knobs: Path) -> None:
    # Slot 1 keeps X first; slot 2's Y change, slower, won against the baseline: it is replayed
    # onto the new incumbent, measured again and kept on top of it.
    # (X's run lasts 1 s, so slot 2's run starts before it ends even on a loaded machine.)
    use_script(two_knobs, [
        {"hypothesis": "X to 5", "edits": {"x.py": "X = 5.0\nSLEEP = 1.0\n"}},
        {"hypothesis": "Y to 3", "edits": {"y.py": "Y = 3.0\nSLEEP = 2.5\n"}},
    ])
    result = run_cli(two_knobs, "run", "--tag", "t", "--iterations", "3", "--workers", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 workers" in result.stdout
    exps = experiments(two_knobs)
    assert [(e[1], e[2]) for e in exps] == [("keep", "baseline"), ("keep", "X to 5"),
                                            ("keep", "Y to 3")]
    assert {e[4] for e in exps[1:]} == {"slot-1", "slot-2"}
    assert exps[2][3] == 2 and "replayed onto t-0002" in str(exps[2][5])
    # Both changes are on the branch, one after the other; the stale commit is parked as -a1.
    branch = "autoresearch/t"
    assert git(two_knobs, "log", "--format=%s", f"{branch}~2..{branch}").splitlines() == [
        "Y to 3", "X to 5"]
    assert git(two_knobs, "show", f"{branch}:x.py").startswith("X = 5.0")
    assert git(two_knobs, "show", f"{branch}:y.py").startswith("Y = 3.0")
    assert git(two_knobs, "rev-parse", "refs/autoresearch/t/discarded/t-0003-a1")
    # The two candidates' first runs overlapped in time: they ran in parallel.
    first = {exp: (start, start + dur) for exp, start, dur in rows(
        two_knobs, "SELECT experiment_id, MIN(started_at), duration_s FROM runs "
        "WHERE experiment_id IN ('t-0002', 't-0003') GROUP BY experiment_id")}
    (a0, a1), (b0, b1) = first["t-0002"], first["t-0003"]
    assert a0 < b1 and b0 < a1, first
    # The headline's 3 pairs went over both slots at once; each run has its own log and number.
    headline = rows(two_knobs, "SELECT role, idx, log_path FROM runs WHERE role LIKE 'headline%'")
    assert len(headline) == 6 and len({r[2] for r in headline}) == 6
    assert sorted(r[1] for r in headline if r[0] == "headline") == [0, 1, 2]
    # The slots are side by side under the tag's directory, never nested, and clean.
    slots = two_knobs / ".autoresearch" / "worktrees" / "t"
    assert sorted(p.name for p in slots.iterdir()) == ["slot-1", "slot-2"]
    assert not (slots / ".git").exists()
    for slot in ("slot-1", "slot-2"):
        assert git(slots / slot, "status", "--porcelain") == ""


def with_guard(repo: Path, guard: str) -> None:
    """A guard command, `python guard.py` (protected), run on every would-be keep."""
    (repo / "guard.py").write_text(guard)
    config = repo / "autoresearch.toml"
    config.write_text(config.read_text().replace('protected = ["score.py"]',
                                                 'protected = ["score.py", "guard.py"]')
                      + '[[guards]]\ncommand = "{python} guard.py"\n')
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "a guard")


def test_two_slots_running_the_same_guard_at_once_do_not_stop_each_other(
        two_knobs: Path) -> None:
    # Each guard run is a run of its own: when one slot's ended, the harness killed every
    # process of "its" run id, which the other slot's guard shared (exit -15, a win discarded).
    with_guard(two_knobs, "import time\ntime.sleep(3)\n")
    use_script(two_knobs, [
        {"hypothesis": "X to 5", "edits": {"x.py": "X = 5.0\nSLEEP = 0.2\n"}},
        {"hypothesis": "Y to 3", "edits": {"y.py": "Y = 3.0\nSLEEP = 0.4\n"}},
    ])
    result = run_cli(two_knobs, "run", "--tag", "t", "--iterations", "3", "--workers", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    exps = experiments(two_knobs)
    assert [e[1] for e in exps] == ["keep", "keep", "keep"], exps
    assert git(two_knobs, "show", "autoresearch/t:x.py").startswith("X = 5.0")
    assert git(two_knobs, "show", "autoresearch/t:y.py").startswith("Y = 3.0")


def test_a_win_whose_guard_outlasts_a_siblings_keep_is_replayed_not_kept_on_its_old_base(
        two_knobs: Path) -> None:
    # X is decided first, and its guard takes 6 s; Y is kept meanwhile. Kept when its guard
    # passed, X's commit (on the baseline) became the branch, and Y's change was on no branch.
    with_guard(two_knobs, "import time, x\ntime.sleep(6 if x.X == 5.0 else 0)\n")
    use_script(two_knobs, [
        {"hypothesis": "X to 5", "edits": {"x.py": "X = 5.0\nSLEEP = 0.3\n"}},
        {"hypothesis": "Y to 3", "edits": {"y.py": "Y = 3.0\nSLEEP = 1.5\n"}},
    ])
    result = run_cli(two_knobs, "run", "--tag", "t", "--iterations", "3", "--workers", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    exps = {e[2]: e for e in experiments(two_knobs)}
    assert exps["X to 5"][1] == "keep" and exps["Y to 3"][1] == "keep", exps
    assert "replayed onto" in str(exps["X to 5"][5]), exps["X to 5"]
    branch = "autoresearch/t"
    assert git(two_knobs, "log", "--format=%s", f"{branch}~2..{branch}").splitlines() == [
        "X to 5", "Y to 3"]
    assert git(two_knobs, "show", f"{branch}:x.py").startswith("X = 5.0")
    assert git(two_knobs, "show", f"{branch}:y.py").startswith("Y = 3.0")


def test_a_stale_win_that_conflicts_is_dropped_with_the_reason(two_knobs: Path) -> None:
    use_script(two_knobs, [
        {"hypothesis": "X to 5", "edits": {"x.py": "X = 5.0\n"}},
        {"hypothesis": "X to 6, slowly", "edits": {"x.py": "X = 6.0\nSLEEP = 1.5\n"}},
    ])
    result = run_cli(two_knobs, "run", "--tag", "t", "--iterations", "3", "--workers", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    exps = experiments(two_knobs)
    assert [e[1] for e in exps] == ["keep", "keep", "discard"]
    reason = str(exps[2][5])
    assert "improved" in reason and "the incumbent moved to t-0002" in reason
    assert "conflicts with that keep" in reason
    assert git(two_knobs, "show", "autoresearch/t:x.py") == "X = 5.0"
    assert git(two_knobs, "show", "refs/autoresearch/t/discarded/t-0003:x.py").startswith(
        "X = 6.0")
    # Dropped for the conflict, not for want of a measurement: its objective is shown (it was
    # empty, "—", in status, show and results.tsv, beside two successful runs).
    ((objective,),) = rows(two_knobs, "SELECT objective FROM experiments WHERE seq = 3")
    measured = [float(str(v)) for (v,) in rows(
        two_knobs, "SELECT m.value FROM runs r JOIN metrics m ON m.run_id = r.id AND m.name = "
        "'score' WHERE r.experiment_id = 't-0003' AND r.role = 'candidate' AND r.status = 'ok'")]
    assert measured and objective == pytest.approx(sum(measured) / len(measured))


def test_changing_the_number_of_workers_converts_the_slots(two_knobs: Path) -> None:
    # The two experiments of the parallel run change different files: both are kept. The runs'
    # thread count is set: under "auto" the free cores are shared by the workers, and a resume
    # whose runs get another count stops (they would not be comparable).
    edit_config(two_knobs, "[decision]", "[run]\nthreads = 1\n[decision]")
    use_script(two_knobs, [{"hypothesis": f"{f.upper()} to {v}", "edits": {f"{f}.py": f"{f.upper()} = {v}\n"}}
                           for f, v in (("x", 4.0), ("x", 5.0), ("y", 1.0), ("y", 2.0))])
    slots = two_knobs / ".autoresearch" / "worktrees" / "t"
    assert run_cli(two_knobs, "run", "--tag", "t", "-n", "2").returncode == 0
    assert (slots / ".git").is_file()  # one worker: the tag's directory is the worktree
    assert run_cli(two_knobs, "run", "--tag", "t", "-n", "4", "-w", "2").returncode == 0
    assert sorted(p.name for p in slots.iterdir()) == ["slot-1", "slot-2"]
    assert run_cli(two_knobs, "run", "--tag", "t", "-n", "5", "-w", "3").returncode == 0
    assert sorted(p.name for p in slots.iterdir()) == ["slot-1", "slot-2", "slot-3"]
    # Fewer workers: the slot beyond them goes (it stayed, a checkout, until finalize).
    assert run_cli(two_knobs, "run", "--tag", "t", "-n", "5", "-w", "2").returncode == 0
    assert sorted(p.name for p in slots.iterdir()) == ["slot-1", "slot-2"]
    assert "slot-3" not in git(two_knobs, "worktree", "list", "--porcelain")
    assert run_cli(two_knobs, "run", "--tag", "t", "-n", "5").returncode == 0
    assert (slots / ".git").is_file() and not (slots / "slot-1").exists()
    worktrees = git(two_knobs, "worktree", "list", "--porcelain")
    assert "slot-1" not in worktrees and "slot-2" not in worktrees
    assert [e[1] for e in experiments(two_knobs)].count("keep") == 5


def start(repo: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "autoresearch", "run", "--repo", str(repo), *args],
        cwd=repo, env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        text=True, stdin=subprocess.DEVNULL)


def wait_for_runs(repo: Path, at_least: int, timeout: float = 60) -> None:
    """Until `at_least` runs are recorded (or the session is over)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if rows(repo, "SELECT COUNT(*) FROM runs")[0][0] >= at_least:  # type: ignore[operator]
                return
        except sqlite3.OperationalError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"fewer than {at_least} runs after {timeout} s")


@pytest.mark.slow
def test_kill_9_with_two_slots_loses_and_duplicates_nothing(two_knobs: Path) -> None:
    items = [{"hypothesis": f"X to {3 + i / 4}, Y to {i / 4}",
              "edits": {"x.py": f"X = {3 + i / 4}\nSLEEP = 0.4\n", "y.py": f"Y = {i / 4}\n"}}
             for i in range(1, 13)]
    script = use_script(two_knobs, items)
    total = 10
    for kill in range(3):
        proc = start(two_knobs, "--tag", "t", "-n", str(total), "-w", "2")
        recorded = rows(two_knobs, "SELECT COUNT(*) FROM runs")[0][0] if kill else 0
        wait_for_runs(two_knobs, int(str(recorded)) + 3)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    result = run_cli(two_knobs, "run", "--tag", "t", "-n", str(total), "-w", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    exps = experiments(two_knobs)
    assert [e[0] for e in exps] == list(range(1, len(exps) + 1))
    decided = [e for e in exps if e[1] != "interrupted"]
    assert len(decided) == total and not [e for e in exps if e[1] in ("proposed", "running")]
    assert_each_item_decided_once(two_knobs, script, total - 1)
    # Every run belongs to one experiment once; git agrees with the ledger.
    (dupes,) = rows(two_knobs, "SELECT COUNT(*) - COUNT(DISTINCT log_path) FROM runs")[0]
    assert dupes == 0
    kept = rows(two_knobs, "SELECT commit_sha FROM experiments WHERE status = 'keep' "
                "ORDER BY finished_at DESC, seq DESC LIMIT 1")[0][0]
    assert git(two_knobs, "rev-parse", "autoresearch/t") == kept
    parked = rows(two_knobs, "SELECT id, commit_sha FROM experiments WHERE seq > 1 AND "
                  "status != 'keep' AND commit_sha IS NOT NULL")
    for exp_id, sha in parked:  # every commit that was made and not kept stays inspectable
        assert git(two_knobs, "rev-parse", f"refs/autoresearch/t/discarded/{exp_id}") == sha
    assert not (two_knobs / ".autoresearch/sessions/t/lock").exists()


def assert_each_item_decided_once(repo: Path, script: Path, count: int) -> None:
    """What kill -9 with N slots must leave, checked against the scripted proposer's own record
    of which experiment it gave which item (kept beside its script, written before it answers):
    every item it gave went to an experiment the ledger has, recorded with that item's
    hypothesis; an item whose experiment a kill interrupted was proposed again to a later one;
    the first `count` items were each decided exactly once, and no other item was.

    Not in script order: the slots' experiments end in any order (one waits for the incumbent's
    control run, the machine is busy), and an item a kill interrupts is proposed again after
    those decided before the kill (test_an_item_interrupted_after_a_later_one_was_decided_...).
    """
    items = [str(item["hypothesis"]) for item in json.loads(script.read_text())]
    given: dict[str, int] = json.loads(script.with_suffix(".assigned.json").read_text())
    ledger = {str(exp_id): (int(str(seq)), str(status), str(hypothesis or ""))
              for exp_id, seq, status, hypothesis in rows(
                  repo, "SELECT id, seq, status, hypothesis FROM experiments "
                  "WHERE kind = 'candidate'")}
    unrecorded = sorted(set(given) - set(ledger))
    assert not unrecorded, f"proposals the ledger has no experiment for: {unrecorded}"
    for exp_id, (_, status, hypothesis) in ledger.items():
        if exp_id not in given:  # killed before the proposer gave it an item: none consumed
            assert (status, hypothesis) == ("interrupted", ""), (exp_id, status, hypothesis)
        elif hypothesis:  # empty only when killed between the proposer's answer and its record
            assert hypothesis == items[given[exp_id]], (exp_id, hypothesis)
        else:
            assert status == "interrupted", (exp_id, status)
    decided = [(seq, given[exp_id]) for exp_id, (seq, status, _) in ledger.items()
               if status != "interrupted"]
    outcomes = sorted(items[item] for _, item in decided)
    assert outcomes == sorted(items[:count]), (
        f"never decided: {sorted(set(items[:count]) - set(outcomes))}; decided twice: "
        f"{sorted({o for o in outcomes if outcomes.count(o) > 1})}; beyond the first {count}: "
        f"{sorted(set(outcomes) - set(items[:count]))}")
    for exp_id, (seq, status, _) in sorted(ledger.items()):
        if status == "interrupted" and exp_id in given:
            again = [later for later, item in decided if item == given[exp_id] and later > seq]
            assert again, f"{exp_id} was interrupted and its item never proposed again"


@pytest.mark.slow
def test_an_item_interrupted_after_a_later_one_was_decided_is_proposed_again_and_decided_once(
        two_knobs: Path, tmp_path: Path) -> None:
    # The window the loop above hits at random, made certain: the first item's run is held
    # (its x.py names a file the evaluation waits on) while the other slot decides the second
    # item and starts the third; then kill -9. The first item must be proposed again after the
    # resume and decided once, after the second: the order the items are decided in is the
    # order the slots finished them, not the script's.
    hold = tmp_path / "hold"
    (two_knobs / "score.py").write_text("import os, time\nimport x\n"
                                        "while os.path.exists(getattr(x, 'HOLD', '')):\n"
                                        "    time.sleep(0.05)\n" + SCORE)
    edit_config(two_knobs, "timeout_seconds = 20", "timeout_seconds = 120")  # a held run waits
    items = [{"hypothesis": f"X to {3 + i / 4}, Y to {i / 4}",
              "edits": {"x.py": f"X = {3 + i / 4}\n" + (f"HOLD = {str(hold)!r}\n" if i == 1
                                                          else ""),
                        "y.py": f"Y = {i / 4}\n"}}
             for i in range(1, 8)]
    script = use_script(two_knobs, items)
    hold.touch()
    proc = start(two_knobs, "--tag", "t", "-n", "5", "-w", "2")
    try:
        deadline = time.time() + 90
        while (time.time() < deadline and proc.poll() is None
               and not decided_and_started(two_knobs, items)):
            time.sleep(0.05)
        assert decided_and_started(two_knobs, items), (
            f"the second item was not decided beside the held first one (the session's exit "
            f"code: {proc.poll()})")
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    first = items[0]["hypothesis"]
    assert [e[1] for e in experiments(two_knobs) if e[2] == first] == ["running"]
    hold.unlink()
    result = run_cli(two_knobs, "run", "--tag", "t", "-n", "5", "-w", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    decided = [e[2] for e in experiments(two_knobs)[1:] if e[1] != "interrupted"]
    assert decided.index(items[1]["hypothesis"]) < decided.index(first), decided
    assert_each_item_decided_once(two_knobs, script, 4)


def decided_and_started(repo: Path, items: list[dict[str, object]]) -> bool:
    """The second item is decided and the third proposed, while the first is still held."""
    try:
        status = {e[2]: e[1] for e in experiments(repo)}
    except sqlite3.OperationalError:  # the session has not created its ledger yet
        return False
    return (status.get(items[1]["hypothesis"]) in ("keep", "discard")
            and items[2]["hypothesis"] in status
            and status.get(items[0]["hypothesis"]) == "running")


def test_a_second_ctrl_c_while_stopping_still_records_why_each_trial_ended(
        two_knobs: Path, tmp_path: Path) -> None:
    # Ctrl-C twice in quick succession: the second lands while the first is ending the slots'
    # runs (each run here ignores SIGTERM, so ending it takes the 2 s grace). The stop must go
    # on to its end, not be cut short: a cut-short stop left the trials to be closed by the
    # garbage collector, recorded as "the harness stopped on an error: GeneratorExit()".
    started = tmp_path / "started"
    started.mkdir()
    slow = (f"import os, signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            f"open(os.path.join({str(started)!r}, str(os.getpid())), 'w').close(); "
            "time.sleep(30)\n")
    use_script(two_knobs, [{"hypothesis": f"X to {v}", "edits": {"x.py": f"X = {v}\n{slow}"}}
                           for v in (4.0, 5.0, 6.0)])
    # The baseline with two workers too: under "auto" they share the free cores, and a resume
    # whose runs would get another thread count is refused.
    assert run_cli(two_knobs, "run", "--tag", "t", "-n", "1", "-w", "2").returncode == 0
    proc = start(two_knobs, "--tag", "t", "-n", "3", "-w", "2")
    deadline = time.time() + 60
    while len(list(started.iterdir())) < 2 and time.time() < deadline:
        time.sleep(0.05)
    assert len(list(started.iterdir())) == 2, "the two slots' runs did not start"
    proc.send_signal(signal.SIGINT)
    time.sleep(0.5)  # the first stop is now waiting for the runs to end
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 130
    ended = [(e[1], e[5]) for e in experiments(two_knobs)[1:]]
    assert ended == [("interrupted", "interrupted by Ctrl-C")] * 2, ended


def test_slots_that_collide_on_a_fixed_port_pause_with_the_crash_log_and_the_hint(
        two_knobs: Path) -> None:
    # A verify command that binds a fixed port passes alone (the baseline runs alone) and fails
    # when two slots run it at once. Each crash must say where it ran and why; the pause must
    # show the crashed run's log (the other slot's trial, ended by the pause, is recorded after
    # it and ran nothing that failed) and say what overlapping slots can do to a command.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # A candidate's run that gets the port holds it until the pause ends it (whichever slot
    # gets it first: the order does not depend on the machine's load).
    (two_knobs / "score.py").write_text(textwrap.dedent(f"""
        import socket, time
        import x, y
        server = socket.socket()
        server.bind(("127.0.0.1", {port}))
        deadline = time.time() + 30
        while getattr(y, "HOLD", False) and time.time() < deadline:
            time.sleep(0.05)
        print(f"score: {{(x.X - 7) ** 2 + (y.Y - 3) ** 2}}")
        """))
    use_script(two_knobs, [{"hypothesis": f"Y to {v}", "edits": {"y.py": f"Y = {v}\nHOLD = True\n"}}
                           for v in (1.0, 2.0, 2.5, 4.0, 5.0)])
    edit_config(two_knobs, "deterministic = true", "deterministic = true\n"
                "max_consecutive_crashes = 3\nmax_repair_attempts = 0")
    git(two_knobs, "commit", "-qam", "fixed port; pause after 3 crashes")
    result = run_cli(two_knobs, "run", "--tag", "t", "-n", "8", "-w", "2")
    assert result.returncode == 5, result.stdout + result.stderr
    out = " ".join(result.stdout.split())
    assert "paused after 3 consecutive crashes" in out
    assert "With 2 workers the slots' runs overlap" in out
    assert "derive them from AUTORESEARCH_SLOT" in out
    # Each crash says, as it happens, where it ran and the last line its command printed.
    assert out.count("exit code 1 in slot-") == 3, out
    assert re.search(r"exit code 1 in slot-\d: OSError: \[Errno 98\] Address already in use", out)
    # The pause shows the crashed run's log, its traceback included.
    assert "last " in out and "in <module> server.bind" in out, out
    # The slot whose run held the port was ended by the pause, after the third crash.
    assert sorted(e[1] for e in experiments(two_knobs)[1:]) == ["crash"] * 3 + ["interrupted"]


def test_every_run_knows_its_slot_so_a_port_can_be_one_per_slot(
        two_knobs: Path, tmp_path: Path) -> None:
    # AUTORESEARCH_SLOT (1…N) is in every run's environment: the fixed port of the test above,
    # taken as base + slot, no longer collides; each run holds its port until the other slot's
    # run holds its own too, so the two are known to have overlapped.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        base = probe.getsockname()[1]
    seen = tmp_path / "seen"
    seen.mkdir()
    (two_knobs / "score.py").write_text(textwrap.dedent(f"""
        import os, socket, time
        import x, y
        slot = int(os.environ["AUTORESEARCH_SLOT"])
        server = socket.socket()
        server.bind(("127.0.0.1", {base} + slot))
        here = os.path.basename(os.getcwd())
        open(os.path.join({str(seen)!r}, f"{{here}} {{slot}} {{os.getpid()}}"), "w").close()
        deadline = time.time() + 10
        while getattr(y, "HOLD", False) and time.time() < deadline and len(
                {{n.split()[1] for n in os.listdir({str(seen)!r})}}) < 2:
            time.sleep(0.05)
        print(f"score: {{(x.X - 7) ** 2 + (y.Y - 3) ** 2}}")
        """))
    use_script(two_knobs, [{"hypothesis": f"Y to {v}", "edits": {"y.py": f"Y = {v}\nHOLD = True\n"}}
                           for v in (1.0, 2.0)])  # (committed with score.py)
    result = run_cli(two_knobs, "run", "--tag", "t", "-n", "3", "-w", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "crash" not in [e[1] for e in experiments(two_knobs)]
    runs = [name.split()[:2] for name in os.listdir(seen)]
    assert {slot for _, slot in runs} == {"1", "2"}
    assert all(here == f"slot-{slot}" for here, slot in runs), runs  # the slot it ran in
