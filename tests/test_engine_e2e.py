"""End to end: the real CLI on real git repositories, with real subprocesses."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from tests.conftest import edit_config, git, run_cli, use_script


def ledger_rows(repo: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(repo / ".autoresearch" / "ledger.db") as conn:
        return conn.execute(sql).fetchall()


def statuses(repo: Path) -> list[str]:
    return [r[0] for r in ledger_rows(repo, "SELECT status FROM experiments ORDER BY seq")]


def test_every_verdict_in_one_session(toy_repo: Path) -> None:
    use_script(toy_repo, [
        {"hypothesis": "move X toward 7", "edits": {"target.py": "X = 6.0\n"}},
        {"hypothesis": "move X away", "edits": {"target.py": "X = 1.0\n"}},
        {"hypothesis": "crash it", "edits": {"target.py": "X = 6.0\nCRASH = True\n"}},
        {"hypothesis": "hang it", "edits": {"target.py": "X = 6.5\nSLEEP = 60\n"}},
        {"hypothesis": "edit the evaluation", "edits": {"score.py": "print('score: 0')\n"}},
        {"hypothesis": "escape the repo", "edits": {"../evil.py": "x = 1\n"}},
        {"hypothesis": "touch a file outside scope", "edits": {"other.py": "x = 1\n"}},
        {"hypothesis": "same as a discarded one", "edits": {"target.py": "X = 1.0\n"}},
        {"error": "the model replied nonsense"},
    ])
    result = run_cli(toy_repo, "run", "--tag", "t", "--iterations", "10")
    assert result.returncode == 0, result.stdout + result.stderr
    # The final summary counts the baseline apart from the changes the ratchet kept.
    assert ("10 experiments (the baseline + 9 candidates): 1 kept, 1 discarded, 1 crashed, "
            "1 timed out, 5 rejected") in " ".join(result.stdout.split())
    assert statuses(toy_repo) == ["keep", "keep", "discard", "crash", "timeout", "rejected",
                                  "rejected", "rejected", "rejected", "rejected"]
    reasons = [r[0] for r in ledger_rows(toy_repo, "SELECT decision_reason FROM experiments "
                                         "ORDER BY seq")]
    assert "protected" in reasons[5] and "score.py" in reasons[5]
    assert "escapes the repository" in reasons[6]
    assert "outside the scope" in reasons[7]
    assert "duplicate of t-0003" in reasons[8]
    assert "nonsense" in reasons[9]
    # The branch holds the baseline and the one keep; the user's checkout never moved.
    log = git(toy_repo, "log", "--format=%s", "autoresearch/t").splitlines()
    assert log[0] == "move X toward 7"
    assert (toy_repo / "target.py").read_text() == "X = 3.0\n"
    assert git(toy_repo, "status", "--porcelain", "--untracked-files=no") == ""
    # Discarded, crashed and timed-out commits stay inspectable; rejected ones were never committed.
    refs = git(toy_repo, "for-each-ref", "--format=%(refname)", "refs/autoresearch/t")
    assert sorted(r.rsplit("/", 1)[1] for r in refs.splitlines()) == ["t-0003", "t-0004", "t-0005"]
    assert "Experiment-Id: t-0003" in git(toy_repo, "log", "-1", "--format=%B",
                                          "refs/autoresearch/t/discarded/t-0003")
    all_subjects = git(toy_repo, "log", "--all", "--format=%s")
    assert "edit the evaluation" not in all_subjects
    # results.tsv: Karpathy's columns first.
    tsv = (toy_repo / ".autoresearch/sessions/t/results.tsv").read_text().splitlines()
    assert tsv[0].split("\t")[:5] == ["commit", "score", "memory_gb", "status", "description"]
    assert len(tsv) == 11
    data = json.loads(run_cli(toy_repo, "results", "--json", "--tag", "t").stdout)
    assert [e["status"] for e in data["experiments"]][:2] == ["keep", "keep"]
    assert data["experiments"][0]["runs"][0]["metrics"]["mem_mb"] == 100
    assert len(data["experiments"][0]["runs"]) == 2  # baseline repeats
    assert data["session"]["usage"]["cost_usd"] > 0
    # Every token kind the ledger holds is shown: 8 proposals reached the guardrails.
    status = run_cli(toy_repo, "status", "--tag", "t")
    assert status.returncode == 0, status.stderr
    shown = " ".join(status.stdout.split())
    assert "80 in / 40 out tokens, 16 cache-read, 24 cache-write" in shown


def test_timeout_kills_grandchild_that_ignores_sigterm(toy_repo: Path, tmp_path: Path) -> None:
    pidfile = tmp_path / "grandchild.pid"
    spawner = (
        "import os, signal, subprocess, sys, time\n"
        "import target\n"
        "if getattr(target, 'HANG', False):\n"
        "    child = subprocess.Popen([sys.executable, '-c', 'import signal, time; "
        "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(300)'])\n"
        # Whole or not at all (written, then renamed): never an empty file if the timeout's
        # SIGTERM lands between its creation and its write.
        f"    open({str(pidfile)!r} + '.part', 'w').write(str(child.pid))\n"
        f"    os.replace({str(pidfile)!r} + '.part', {str(pidfile)!r})\n"
        "    time.sleep(300)\n"
        "print('score:', (target.X - 7) ** 2)\n"
    )
    (toy_repo / "score.py").write_text(spawner)
    git(toy_repo, "commit", "-qam", "spawning scorer")
    use_script(toy_repo, [{"hypothesis": "hang", "edits": {"target.py": "X = 5\nHANG = True\n"}}])
    result = run_cli(toy_repo, "run", "--tag", "t", "--iterations", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    assert statuses(toy_repo) == ["keep", "timeout"]
    pid = int(pidfile.read_text())
    stat = Path(f"/proc/{pid}/stat")
    assert not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] == "Z"


def test_crash_repair_is_an_attempt_of_the_same_experiment(toy_repo: Path) -> None:
    use_script(toy_repo, [{
        "hypothesis": "bold move", "edits": {"target.py": "X = 7.0\nCRASH = True\n"},
        "repairs": [{"edits": {"target.py": "X = 7.0\n"}}],
    }])
    result = run_cli(toy_repo, "run", "--tag", "t", "--iterations", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    assert statuses(toy_repo) == ["keep", "keep"]
    (attempts,) = ledger_rows(toy_repo, "SELECT attempts FROM experiments WHERE seq = 2")[0]
    assert attempts == 2
    runs = ledger_rows(toy_repo, "SELECT attempt, status FROM runs WHERE experiment_id = 't-0002'"
                       " ORDER BY id")
    assert runs[0] == (1, "crash") and runs[1] == (2, "ok")
    assert git(toy_repo, "for-each-ref", "refs/autoresearch/t/discarded/t-0002-a1")


def test_a_refused_repair_leaves_the_crash_it_was_for(toy_repo: Path) -> None:
    # The repairs are a copy of the incumbent and an edit of a protected file: neither runs,
    # and each experiment stays the crash it was (it did run), not "rejected".
    edit_config(toy_repo, "repeats = 2", "repeats = 1")
    use_script(toy_repo, [
        {"hypothesis": "X to 5", "edits": {"target.py": "X = 5.0\n"}},
        {"hypothesis": "X to 6, crashing", "edits": {"target.py": "X = 6.0\nCRASH = True\n"},
         "repairs": [{"edits": {"target.py": "X = 5.0\n"}}]},
        {"hypothesis": "X to 6.5, crashing", "edits": {"target.py": "X = 6.5\nCRASH = True\n"},
         "repairs": [{"edits": {"score.py": "print('score: 0')\n"}}]},
    ])
    result = run_cli(toy_repo, "run", "--tag", "t", "--iterations", "4")
    assert result.returncode == 0, result.stdout + result.stderr
    rows = ledger_rows(toy_repo, "SELECT status, decision_reason FROM experiments ORDER BY seq")
    assert [r[0] for r in rows] == ["keep", "keep", "crash", "crash"]
    assert "its repair was not run: the proposal changes nothing" in rows[2][1]  # = t-0002
    assert "its repair was not run: refused by the guardrails" in rows[3][1]
    assert "exit code" in rows[2][1] and "exit code" in rows[3][1]  # the crash itself


def test_consecutive_crashes_pause_the_session(toy_repo: Path) -> None:
    crash = {"hypothesis": "crash", "edits": {"target.py": "X = 1\nCRASH = True\n"}}
    items = [dict(crash, edits={"target.py": f"X = {i}\nCRASH = True\n"}) for i in range(8)]
    edit_config(toy_repo, "repeats = 2", "repeats = 1\nmax_consecutive_crashes = 3")
    use_script(toy_repo, items)
    result = run_cli(toy_repo, "run", "--tag", "t", "--iterations", "20")
    assert result.returncode == 5
    assert "3 consecutive crashes" in result.stdout
    assert statuses(toy_repo) == ["keep", "crash", "crash", "crash"]


def test_a_resumed_session_remembers_its_crash_streak(toy_repo: Path) -> None:
    items = [{"hypothesis": f"crash {i}", "edits": {"target.py": f"X = {i}\nCRASH = True\n"}}
             for i in range(8)]
    edit_config(toy_repo, "repeats = 2", "repeats = 1\nmax_consecutive_crashes = 3")
    use_script(toy_repo, items)
    first = run_cli(toy_repo, "run", "--tag", "t", "--iterations", "3")
    assert first.returncode == 0, first.stdout + first.stderr
    assert statuses(toy_repo) == ["keep", "crash", "crash"]
    # Two crashes are in the ledger: the third in a row pauses, not the fifth.
    resumed = run_cli(toy_repo, "run", "--tag", "t", "--iterations", "20")
    assert resumed.returncode == 5, resumed.stdout + resumed.stderr
    assert "3 consecutive crashes" in resumed.stdout
    assert statuses(toy_repo) == ["keep", "crash", "crash", "crash"]


def test_a_resumed_session_remembers_its_stuck_and_rejection_streaks(toy_repo: Path) -> None:
    worse = [{"hypothesis": f"worse {i}", "edits": {"target.py": f"X = {i / 10}\n"}}
             for i in range(4)]
    edit_config(toy_repo, "repeats = 2",
                "repeats = 1\nstuck_after = 3\nmax_consecutive_rejections = 3")
    script = use_script(toy_repo, [*worse, *[{"error": "HTTP 400: bad request"}] * 10])
    stuck = script.with_suffix(".stuck")
    first = run_cli(toy_repo, "run", "--tag", "t", "--iterations", "3")
    assert first.returncode == 0, first.stdout + first.stderr
    assert statuses(toy_repo) == ["keep", "discard", "discard"] and not stuck.exists()
    # Two discards are in the ledger: after a third (the first of this run) the proposer is
    # stuck, not after five more.
    second = run_cli(toy_repo, "run", "--tag", "t", "--iterations", "7")
    assert second.returncode == 0, second.stdout + second.stderr
    assert stuck.exists()  # told from the 5th experiment on
    events = ledger_rows(toy_repo, "SELECT experiment_id FROM events WHERE kind = 'stuck'")
    assert events == [("t-0004",)]
    assert statuses(toy_repo)[-2:] == ["rejected", "rejected"]
    # Two rejections in a row are in the ledger: the third pauses.
    third = run_cli(toy_repo, "run", "--tag", "t", "--iterations", "50")
    assert third.returncode == 5, third.stdout + third.stderr
    assert "paused after 3 consecutive rejected experiments" in " ".join(third.stdout.split())
    assert statuses(toy_repo)[-3:] == ["rejected"] * 3 and len(statuses(toy_repo)) == 8


def test_consecutive_rejections_pause_the_session(toy_repo: Path) -> None:
    # A proposer that only ever fails (no knobs, a model answering 400 every time) must not spin.
    edit_config(toy_repo, "repeats = 2", "repeats = 1\nmax_consecutive_rejections = 4")
    use_script(toy_repo, [{"hypothesis": "fine", "edits": {"target.py": "X = 4.0\n"}},
                          {"error": "HTTP 400: bad request"},
                          {"hypothesis": "outside", "edits": {"other.py": "x = 1\n"}},
                          {"error": "HTTP 400: bad request"},
                          {"error": "HTTP 400: bad request"},
                          *[{"error": "HTTP 400: bad request"}] * 20])
    result = run_cli(toy_repo, "run", "--tag", "t", "--iterations", "100")
    assert result.returncode == 5, result.stdout + result.stderr
    out = " ".join(result.stdout.split())
    assert "paused after 4 consecutive rejected experiments" in out
    assert "HTTP 400" in out  # the last reason, so the user sees what to fix
    assert statuses(toy_repo) == ["keep", "keep", "rejected", "rejected", "rejected", "rejected"]
    with sqlite3.connect(toy_repo / ".autoresearch" / "ledger.db") as conn:
        assert conn.execute("SELECT status FROM sessions").fetchone()[0] == "paused"


def test_stuck_flag_after_consecutive_discards(toy_repo: Path) -> None:
    worse = [{"hypothesis": f"worse {i}", "edits": {"target.py": f"X = {i / 10}\n"}}
             for i in range(7)]
    edit_config(toy_repo, "repeats = 2", "repeats = 2\nstuck_after = 3")
    script = use_script(toy_repo, worse)
    result = run_cli(toy_repo, "run", "--tag", "t", "--iterations", "6")
    assert result.returncode == 0, result.stdout + result.stderr
    assert script.with_suffix(".stuck").exists()
    kinds = [r[0] for r in ledger_rows(toy_repo, "SELECT kind FROM events")]
    assert "stuck" in kinds


def test_simplicity_keeps_an_equal_result_with_fewer_lines(toy_repo: Path) -> None:
    (toy_repo / "target.py").write_text("X = 3.0\n# a\n# b\n# c\n")
    git(toy_repo, "commit", "-qam", "comments")
    use_script(toy_repo, [
        {"hypothesis": "delete dead lines", "edits": {"target.py": "X = 3.0\n"}},
        {"hypothesis": "add noise lines", "edits": {"target.py": "X = 3.0\n# x\n# y\n"}},
    ])
    result = run_cli(toy_repo, "run", "--tag", "t", "--iterations", "3")
    assert result.returncode == 0, result.stdout + result.stderr
    assert statuses(toy_repo) == ["keep", "keep", "discard"]
    reason = ledger_rows(toy_repo, "SELECT decision_reason FROM experiments WHERE seq = 2")[0][0]
    assert "simpler" in reason


def test_metric_guard_and_command_guard_block_a_keep(toy_repo: Path) -> None:
    config = (toy_repo / "autoresearch.toml").read_text() + (
        '\n[[guards]]\nmetric = "mem_mb"\nmax_increase = "10%"\n'
        '\n[[guards]]\nname = "no TODO"\ncommand = "! grep -q TODO target.py"\n'
    )
    (toy_repo / "autoresearch.toml").write_text(config)
    use_script(toy_repo, [
        {"hypothesis": "better but fat", "edits": {"target.py": "X = 6.0\nMEM = 200\n"}},
        {"hypothesis": "better but TODO", "edits": {"target.py": "X = 6.0  # TODO\n"}},
        {"hypothesis": "better", "edits": {"target.py": "X = 6.0\nMEM = 105\n"}},
    ])
    result = run_cli(toy_repo, "run", "--tag", "t", "--iterations", "4")
    assert result.returncode == 0, result.stdout + result.stderr
    assert statuses(toy_repo) == ["keep", "discard", "discard", "keep"]
    reasons = [r[0] for r in ledger_rows(toy_repo, "SELECT decision_reason FROM experiments "
                                         "ORDER BY seq")]
    assert "mem_mb" in reasons[1] and "10%" in reasons[1]
    assert "no TODO" in reasons[2]


def test_a_metric_guard_fails_when_some_runs_did_not_print_its_metric(toy_repo: Path,
                                                                     tmp_path: Path) -> None:
    # Its first run prints mem_mb 50 (within the bound), the later ones nothing readable (out
    # of memory, say): judged on the one run that printed it, the bound held and it was kept.
    first = tmp_path / "first-run-done"
    config = (toy_repo / "autoresearch.toml").read_text().replace("deterministic = true", "")
    (toy_repo / "autoresearch.toml").write_text(config + '\n[[guards]]\nmetric = "mem_mb"\n'
                                                'max = 150\n')
    target = ("import os\nX = 6.0\n"
              f"MEM = 'n/a' if os.path.exists({str(first)!r}) else 50\n"
              f"open({str(first)!r}, 'a').close()\n")
    use_script(toy_repo, [{"hypothesis": "better, memory unknown", "edits": {"target.py": target}}])
    result = run_cli(toy_repo, "run", "--tag", "t", "--iterations", "2",
                     env={"NOISE": "0.05"})
    assert result.returncode == 0, result.stdout + result.stderr
    (status, reason), = ledger_rows(toy_repo, "SELECT status, decision_reason FROM experiments "
                                    "WHERE seq = 2")
    assert status == "discard", reason
    assert "mem_mb missing from the output of" in str(reason) and "candidate's" in str(reason)


def test_agent_style_worktree_edits_are_checked(toy_repo: Path) -> None:
    use_script(toy_repo, [
        {"hypothesis": "agent edits scope", "worktree": {"target.py": "X = 6.5\n"}},
        {"hypothesis": "agent edits evaluation", "worktree": {"score.py": "print('score: 0')\n"}},
    ])
    result = run_cli(toy_repo, "run", "--tag", "t", "--iterations", "3")
    assert result.returncode == 0, result.stdout + result.stderr
    assert statuses(toy_repo) == ["keep", "keep", "rejected"]
    wt = toy_repo / ".autoresearch/worktrees/t"
    assert "print(f\"score:" in (wt / "score.py").read_text()


def test_exhausted_proposer_stops_cleanly(toy_repo: Path) -> None:
    use_script(toy_repo, [{"hypothesis": "one", "edits": {"target.py": "X = 6.0\n"}}])
    result = run_cli(toy_repo, "run", "--tag", "t", "--iterations", "10")
    assert result.returncode == 0
    assert "nothing left to try" in result.stdout
    assert statuses(toy_repo) == ["keep", "keep"]


def test_garbage_and_nan_outputs_are_crashes_and_the_loop_goes_on(toy_repo: Path) -> None:
    use_script(toy_repo, [
        {"hypothesis": "garbage", "edits": {"target.py": "X = 6\nGARBAGE = True\n"}},
        {"hypothesis": "nan", "edits": {"target.py": "X = 6\nNAN = True\n"}},
        {"hypothesis": "fine", "edits": {"target.py": "X = 6.5\n"}},
    ])
    result = run_cli(toy_repo, "run", "--tag", "t", "--iterations", "4")
    assert result.returncode == 0, result.stdout + result.stderr
    assert statuses(toy_repo) == ["keep", "crash", "crash", "keep"]
    reasons = [r[0] for r in ledger_rows(toy_repo, "SELECT decision_reason FROM experiments "
                                         "ORDER BY seq")]
    assert "no score in the output" in reasons[1]
    assert "not finite" in reasons[2]


def test_a_protected_glob_in_another_case_fences_the_file_during_runs(toy_repo: Path) -> None:
    # `Data.txt` protects data.txt from edits (case-folded); the run fence's list was
    # case-sensitive, so a run could rewrite it as if it were any other file.
    (toy_repo / "data.txt").write_text("held out\n")
    edit_config(toy_repo, 'protected = ["score.py"]', 'protected = ["score.py", "Data.txt"]')
    git(toy_repo, "add", "-A")
    git(toy_repo, "commit", "-qm", "data, protected in another case")
    tamper = "X = 6.9\nopen('data.txt', 'w').write('rewritten\\n')\n"
    use_script(toy_repo, [{"hypothesis": "rewrite the data at run time",
                           "edits": {"target.py": tamper}}])
    result = run_cli(toy_repo, "run", "--tag", "t", "--iterations", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    assert statuses(toy_repo) == ["keep", "crash"]
    reason = ledger_rows(toy_repo, "SELECT decision_reason FROM experiments WHERE seq = 2")[0][0]
    assert "modified protected files: data.txt" in str(reason), reason


def test_a_candidate_whose_run_alters_a_protected_file_crashes_and_the_loop_goes_on(
        toy_repo: Path) -> None:
    # target.py is imported by the protected score.py: this change rewrites the evaluation.
    tamper = "X = 6.9\nopen('score.py', 'a').write('# hacked\\n')\n"
    use_script(toy_repo, [
        {"hypothesis": "rewrite the evaluation at run time", "edits": {"target.py": tamper}},
        {"hypothesis": "fine", "edits": {"target.py": "X = 6.5\n"}},
    ])
    result = run_cli(toy_repo, "run", "--tag", "t", "--iterations", "3")
    assert result.returncode == 0, result.stdout + result.stderr
    assert statuses(toy_repo) == ["keep", "crash", "keep"]
    reason = ledger_rows(toy_repo, "SELECT decision_reason FROM experiments WHERE seq = 2")[0][0]
    assert "modified protected files: score.py" in str(reason)
    worktree = toy_repo / ".autoresearch" / "worktrees" / "t"
    assert "hacked" not in (worktree / "score.py").read_text()
    assert git(toy_repo, "for-each-ref", "--format=%(refname)", "refs/autoresearch/t") == (
        "refs/autoresearch/t/discarded/t-0002")
