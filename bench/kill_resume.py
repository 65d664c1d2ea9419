"""kill -9 during a parallel session, again and again: every experiment is accounted for once.

The real CLI runs a session with `--workers 2` on a throwaway repository (a toy target with two
knobs in two files, the offline `tune` proposer, a verify command of ~0.5 s); the orchestrator is
killed with SIGKILL `--kills` times at random moments (after a random number of recorded runs),
and resumed with the same command each time; a last run completes the session. Then it checks
what "nothing lost, nothing duplicated" means:

  - the experiments are numbered 1..n without a gap, none is left proposed or running;
  - exactly `--experiments` of them count (interrupted ones do not, and were run again);
  - no two counted experiments ran the same files (a tree is never measured twice as two
    experiments), and no run was recorded twice (one log per run);
  - the branch is the ledger's incumbent; every commit that was made and not kept has its ref
    under refs/autoresearch/<tag>/discarded/; no process of the session survives;
  - every slot's worktree is clean, and holds a commit of the session.

Run:  python bench/kill_resume.py [--kills 10] [--experiments 16] [--seed 1] [--ray-address A]
Prints each kill (after how many runs, what was open) and the checks; exits 1 if one fails.
With --ray-address the runs happen on that Ray cluster's actors (`--executor ray`): a run that
outlives its killed orchestrator there is one whose working directory is an actor's clone.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from toy_target import commit_files, git

SCORE = textwrap.dedent(
    """
    import time, x, y
    time.sleep(0.5)
    print(f"score: {(x.X - 7) ** 2 + (y.Y - 3) ** 2}")
    """
)
CONFIG = textwrap.dedent(
    """
    scope = ["x.py", "y.py"]
    protected = ["score.py"]
    [verify]
    command = "{python} score.py"
    budget_seconds = 10
    [metric]
    name = "score"
    direction = "minimize"
    [decision]
    repeats = 2
    [proposer]
    name = "tune"
    seed = 3
    """
)


def make_repo(root: Path) -> Path:
    return commit_files(root / "repo", {
        "x.py": "X = 3.0  # knob: float(0, 10)\n", "y.py": "Y = 0.0  # knob: float(0, 10)\n",
        "score.py": SCORE, "autoresearch.toml": CONFIG, ".gitignore": ".autoresearch/\n"})


def query(repo: Path, sql: str) -> list[tuple[object, ...]]:
    db = repo / ".autoresearch" / "ledger.db"
    if not db.exists():
        return []
    try:
        with sqlite3.connect(db, timeout=10) as conn:
            return conn.execute(sql).fetchall()
    except sqlite3.OperationalError:
        return []


def runs(repo: Path) -> int:
    found = query(repo, "SELECT COUNT(*) FROM runs")
    return int(str(found[0][0])) if found else 0


def command(repo: Path, experiments: int, ray_address: str | None = None) -> list[str]:
    ray = ["--executor", "ray", "--ray-address", ray_address] if ray_address else []
    return [sys.executable, "-m", "autoresearch", "run", "--repo", str(repo), "--tag", "k",
            "-n", str(experiments), "--workers", "2", *ray]


def check(repo: Path, experiments: int) -> list[str]:
    """Every broken promise, one line each (empty: all held)."""
    problems = []
    exps = query(repo, "SELECT seq, status, tree_sha, commit_sha, id FROM experiments ORDER BY seq")
    seqs = [int(str(e[0])) for e in exps]
    if seqs != list(range(1, len(seqs) + 1)):
        problems.append(f"experiment numbers have gaps: {seqs}")
    open_ = [e[4] for e in exps if e[1] in ("proposed", "running")]
    if open_:
        problems.append(f"left open: {open_}")
    counted = [e for e in exps if e[1] != "interrupted"]
    if len(counted) != experiments:
        problems.append(f"{len(counted)} experiments count, not {experiments}")
    trees = [e[2] for e in counted if e[2] and e[1] != "rejected"]
    if len(trees) != len(set(trees)):
        problems.append("two counted experiments ran the same files")
    (dupes,) = query(repo, "SELECT COUNT(*) - COUNT(DISTINCT log_path) FROM runs")[0]
    if dupes:
        problems.append(f"{dupes} run(s) recorded twice")
    kept = query(repo, "SELECT commit_sha FROM experiments WHERE status = 'keep' "
                 "ORDER BY finished_at DESC, seq DESC LIMIT 1")
    if not kept or git(repo, "rev-parse", "autoresearch/k") != kept[0][0]:
        problems.append("the branch is not the ledger's incumbent")
    refs = git(repo, "for-each-ref", "--format=%(refname) %(objectname)",
               "refs/autoresearch/k/discarded/")
    parked = dict(line.split() for line in refs.splitlines())
    for e in exps:
        made = int(str(e[0])) > 1 and e[1] != "keep" and e[3]
        if made and parked.get(f"refs/autoresearch/k/discarded/{e[4]}") != e[3]:
            problems.append(f"{e[4]} ({e[1]}) has no ref for its commit")
    for slot in (repo / ".autoresearch" / "worktrees" / "k").iterdir():
        if git(slot, "status", "--porcelain"):
            problems.append(f"{slot.name} is not clean")
    # The orchestrator's watchdog reads EOF when it exits, scans for its owner's processes once,
    # then exits too: give it a few seconds, then anything still there has outlived the session.
    deadline = time.monotonic() + 5.0
    while True:
        leftovers = [pid for pid in _pids() if _cwd(pid).startswith(str(repo))
                     or "/autoresearch-ray-" in _cwd(pid)]  # a run on a Ray actor
        if not leftovers or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    if leftovers:
        problems.append(f"processes survived: {[(pid, _cmdline(pid)) for pid in leftovers]}")
    return problems


def _pids() -> list[int]:
    return [int(d.name) for d in Path("/proc").iterdir() if d.name.isdigit()]


def _cwd(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return ""


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return "(gone)"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("--experiments", type=int, default=16)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--ray-address", default=None, help="run on this Ray cluster")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    print(f"load average {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory(prefix="ar-kill-") as tmp:
        repo = make_repo(Path(tmp))
        kills = 0
        while kills < args.kills:
            before = runs(repo)
            proc = subprocess.Popen(command(repo, args.experiments, args.ray_address), cwd=repo,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            target = before + rng.randint(1, 4)
            while runs(repo) < target and proc.poll() is None:
                time.sleep(0.02)
            time.sleep(rng.uniform(0.0, 0.4))  # mid-run, mid-proposal, mid-verdict: anywhere
            if proc.poll() is not None:
                print(f"the session finished before kill {kills + 1}: stopping the kills there")
                break
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            kills += 1
            opened = query(repo, "SELECT id, status FROM experiments WHERE status IN "
                           "('proposed', 'running')")
            print(f"kill {kills}: after {runs(repo)} runs; open then: "
                  + (", ".join(f"{e[0]} {e[1]}" for e in opened) or "none"))
        final = subprocess.run(command(repo, args.experiments, args.ray_address), cwd=repo,
                               capture_output=True,
                               text=True, check=False)
        if final.returncode != 0:
            print(final.stdout + final.stderr)
            return 1
        statuses = [str(e[0]) for e in query(repo, "SELECT status FROM experiments")]
        print(f"{kills} kills; {len(statuses)} experiments recorded, "
              f"{statuses.count('interrupted')} interrupted and run again; "
              f"{runs(repo)} runs")
        problems = check(repo, args.experiments)
        for p in problems:
            print("FAILED:", p)
        if not problems:
            print("every experiment accounted for once: numbering, counts, trees, runs, refs, "
                  "branch, slots, processes all check out")
        return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
