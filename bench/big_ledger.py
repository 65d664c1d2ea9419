"""What a user waits for on a big ledger: the views, a resume, the dashboard, each experiment.

A long-lived project reaches several thousand experiments. This builds one session of that size
in a real git repository, the way the loop leaves it, then times what a user touches:

- building: a real session (baseline and 3 candidates, through `Session` and the scheduler, with
  the trivial verify command of bench/overhead.py) is closed, then grown to `--experiments`
  candidates written into the ledger with SQL: each has its own commit (made with one
  `git fast-import`, parked under refs/autoresearch/<tag>/discarded/<id> as the loop parks a
  discarded commit), a long hypothesis and rationale, two runs with metrics and a log file, an
  LLM usage row and an event; every 100th a review with findings. Statuses: mostly discard, some
  crash, timeout and rejected (nothing is kept, so the branch and the incumbent stay where the
  real session left them, and the resume is an ordinary one);
- the CLI, as a user runs it (a subprocess of the installed `autoresearch`): `status`,
  `results`, `results --json`, `show ID`, `report` (markdown, HTML and the plot), `check`;
- resuming: `Session.open()` and the scheduler in-process with bench/overhead.py's counting
  proposer, from constructing the session to the start of the first new experiment (the
  ledger's checks, the shadow copy the ledger watch keeps, checkout_sync, history, refs);
  then the harness overhead per experiment (p50 over `--more` experiments, measured as
  bench/overhead.py measures it) on the big ledger, next to the same on a fresh one;
- the dashboard: `autoresearch dashboard` served on 127.0.0.1 on a free port, then `/`,
  `/api/sessions`, `/api/session` (first load), `/api/session?since=` (an update) and
  `/api/experiment/<id>`; and, in-process, the change check its event stream makes every
  second for each open page (`_Source.marker`);
- the ledger watch's comparison of the session's rows with its private copy, which a check
  makes after another connection committed (`ledger.shadow.differences`);
- the verdict's own cost of one look at 1,000 and 5,000 experiments: the evidence gathered
  from the history and the policy's step on it, sequential (the default) and classic (it uses
  every run of the session as noise evidence, on purpose).

Each figure is the median of `--repeat` (default 3) measurements, in milliseconds.

Run:  python bench/big_ledger.py [--experiments 5000] [--repeat 3] [--more 20] [--keep DIR]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE))

from overhead import CountingProposer, TimedExecutor, make_repo  # noqa: E402
from rich.console import Console  # noqa: E402

from autoresearch import scheduler  # noqa: E402
from autoresearch.config import Config, load_config  # noqa: E402
from autoresearch.display import Display  # noqa: E402
from autoresearch.executor import LocalExecutor  # noqa: E402
from autoresearch.session import Session  # noqa: E402

TAG = "bench"
CLI = str(Path(sys.executable).with_name("autoresearch"))
STATUSES = ["discard"] * 16 + ["crash", "timeout", "rejected"]
WORDS = ["raise", "lower", "the", "learning", "rate", "warmup", "schedule", "cosine", "dropout", "attention", "heads", "width", "depth", "batch", "size", "gradient", "clipping", "weight", "decay", "optimizer", "momentum", "embedding", "tied", "untied", "layer", "norm", "residual", "scaling", "initialisation", "because", "the", "loss", "curve", "suggests", "that"]


def _git(repo: Path, *args: str, stdin: bytes | None = None) -> str:
    return subprocess.run(["git", *args], cwd=repo, input=stdin, capture_output=True,
                          check=True).stdout.decode().strip()


def _prose(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words))


class FreshProposer(CountingProposer):
    """bench/overhead.py's proposer, its changes never repeating across resumes (a repeated
    one is a duplicate, which the session refuses without running it)."""

    offset = 0

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self.i = FreshProposer.offset
        FreshProposer.offset += 100_000


def real_session(repo: Path, experiments: int) -> None:
    """A real session of `experiments` experiments (baseline included), then closed."""
    run_more(repo, experiments)


def run_more(repo: Path, more: int) -> tuple[float, list[float]]:
    """Resume the session for `more` experiments: (ms from constructing the session to the
    first new experiment's start, the harness overhead of each new experiment after the
    first in ms, as bench/overhead.py computes it)."""
    config = load_config(repo / "autoresearch.toml")
    proposer = FreshProposer(config)
    t0 = time.time()
    session = Session(repo, config, TAG, Display(Console(quiet=True)), proposer=proposer)
    executor = TimedExecutor(LocalExecutor(config, session.stop_event, 1))
    session.executor = executor
    session.open()
    gc.freeze()  # as the CLI does once the session is loaded
    before = {e.id for e in session.history.experiments}
    try:
        scheduler.run(session, scheduler.Limits(iterations=len(before) + more))
        ended = time.time()
    finally:
        session.close()
        gc.unfreeze()
    new = sorted((e for e in session.history.experiments if e.id not in before),
                 key=lambda e: e.started_at)
    if not new:
        return 0.0, []
    starts = [e.started_at for e in new] + [ended]
    overheads = []
    for i, exp in enumerate(new):
        command = sum(executor.command_s.get(r.log_path or "", 0.0)
                      for r in session.history.runs.get(exp.id, []))
        interval = starts[i + 1] - starts[i]
        overheads.append((interval - proposer.spent_s.get(exp.id, 0.0) - command) * 1e3)
    return (new[0].started_at - t0) * 1e3, overheads[1:]


def _commits(repo: Path, base: str, ids: list[str]) -> list[str]:
    """One commit per id on top of `base` (target.py changed), parked under the session's
    discarded refs, made by one `git fast-import`; returns their shas."""
    if not ids:
        return []
    stream = []
    for mark, exp_id in enumerate(ids, start=1):
        body = f"X = {exp_id}\n".encode()
        msg = f"try {exp_id}\n\nExperiment-Id: {exp_id}\n".encode()
        stream.append(
            f"commit refs/autoresearch/{TAG}/discarded/{exp_id}\nmark :{mark}\n"
            f"committer Bench <bench@example.invalid> 1700000000 +0000\n"
            f"data {len(msg)}\n".encode() + msg
            + f"from {base}\nM 100644 inline target.py\ndata {len(body)}\n".encode() + body
            + b"\n")
    marks = repo / ".git" / "bench-marks"
    _git(repo, "fast-import", "--quiet", f"--export-marks={marks}", stdin=b"".join(stream))
    by_mark = dict(line.split() for line in marks.read_text().splitlines())
    marks.unlink()
    return [by_mark[f":{i}"] for i in range(1, len(ids) + 1)]


def grow(repo: Path, candidates: int, seed: int = 0) -> None:
    """Add `candidates` experiments to the session, as the loop would have recorded them."""
    rng = random.Random(seed)
    db = repo / ".autoresearch" / "ledger.db"
    conn = sqlite3.connect(db, isolation_level=None)
    conn.row_factory = sqlite3.Row
    sid, base = conn.execute("SELECT id, base_commit FROM sessions WHERE tag = ?",
                             (TAG,)).fetchone()
    template = dict(conn.execute(
        "SELECT * FROM experiments WHERE session_id = ? AND kind = 'candidate' ORDER BY seq DESC"
        " LIMIT 1", (sid,)).fetchone())
    run_template = dict(conn.execute("SELECT * FROM runs WHERE experiment_id = ? LIMIT 1",
                                     (template["id"],)).fetchone())
    (last,) = conn.execute("SELECT MAX(seq) FROM experiments WHERE session_id = ?",
                           (sid,)).fetchone()
    seqs = list(range(last + 1, last + 1 + candidates))
    ids = [f"{TAG}-{s:04d}" for s in seqs]
    shas = _commits(repo, base, ids)
    logs = repo / ".autoresearch" / "logs" / TAG
    logs.mkdir(parents=True, exist_ok=True)
    t = time.time() - 60.0 * candidates
    conn.execute("BEGIN")
    for seq, exp_id, sha in zip(seqs, ids, shas, strict=True):
        status = rng.choice(STATUSES)
        t += 60.0
        runs = [1.0 + rng.gauss(0, 0.01) for _ in range(2)]
        value = statistics.fmean(runs)  # the objective is the mean of its runs
        row = dict(template, id=exp_id, seq=seq, status=status,
                   hypothesis=f"{exp_id}: " + _prose(rng, 60),
                   rationale=_prose(rng, 120), commit_sha=sha,
                   tree_sha=_git_tree_placeholder(sha),
                   objective=value if status == "discard" else None,
                   delta=value - 1.0 if status == "discard" else None,
                   decision_reason=("not better than the incumbent by the noise threshold"
                                    if status == "discard" else f"the run ended: {status}"),
                   started_at=t, finished_at=t + 50.0, cost_usd=0.01)
        row.pop("touched", None)
        cols = ",".join(row)
        conn.execute(f"INSERT INTO experiments ({cols}) VALUES ({','.join('?' * len(row))})",
                     list(row.values()))
        if status != "rejected":
            for idx in range(2):
                log = logs / f"{exp_id}-{idx}.log"
                log.write_text(f"epoch 1\nepoch 2\nscore: {runs[idx]}\n")
                run = dict(run_template, experiment_id=exp_id, idx=idx, commit_sha=sha,
                           status="ok" if status == "discard" else status,
                           exit_code=0 if status == "discard" else 1, log_path=str(log),
                           started_at=t + idx, finished_at=t + idx + 1)
                run.pop("id")
                cur = conn.execute(
                    f"INSERT INTO runs ({','.join(run)}) VALUES ({','.join('?' * len(run))})",
                    list(run.values()))
                if status == "discard":
                    conn.executemany("INSERT INTO metrics (run_id, name, value) VALUES (?,?,?)",
                                     [(cur.lastrowid, "score", runs[idx]),
                                      (cur.lastrowid, "peak_memory_mb", 900.0)])
        conn.execute("INSERT INTO usage (experiment_id, session_id, provider, model, purpose,"
                     " input_tokens, output_tokens, cost_usd, at) VALUES (?,?,?,?,?,?,?,?,?)",
                     (exp_id, sid, "anthropic", "claude-test", "propose", 4000, 600, 0.01, t))
        conn.execute("INSERT INTO events (session_id, experiment_id, at, kind, message)"
                     " VALUES (?,?,?,?,?)", (sid, exp_id, t + 50, "experiment_finished",
                                             f"{exp_id} {status}"))
        if seq % 100 == 0:
            _review(conn, sid, exp_id, base, sha, t, rng)
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def _git_tree_placeholder(sha: str) -> str:
    # The tree sha is only shown, never resolved, by the views; one per commit is enough.
    return sha[::-1]


def _review(conn: sqlite3.Connection, sid: int, exp_id: str, base: str, sha: str, t: float,
            rng: random.Random) -> None:
    cur = conn.execute(
        "INSERT INTO reviews (subject_key, subject, kind, base_commit, head_commit, session_id,"
        " experiment_id, started_at, duration_s, yellow, reviewers_json, notes_json)"
        " VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
        (f"experiment:{exp_id}", f"experiment {exp_id}", "gate", base, sha, sid, exp_id, t,
         12.0, 2, "[]", "[]"))
    for idx in range(2):
        conn.execute(
            "INSERT INTO review_findings VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (cur.lastrowid, idx, f"fp-{exp_id}-{idx}", "yellow", "target.py", 1, 1,
             "correctness", "logic", "minor", "a finding title", _prose(rng, 40),
             _prose(rng, 20), 0.7, "[]", 1, 0))


def median_ms(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def cli(repo: Path, *args: str) -> Callable[[], object]:
    def call() -> None:
        done = subprocess.run([CLI, *args, "--repo", str(repo)], capture_output=True,
                              env={**os.environ, "COLUMNS": "120"})
        # `check` exits 2 here: the default proposer (tune) finds no knob in this repository
        if done.returncode not in ((0, 2) if args[0] == "check" else (0,)):
            raise SystemExit(f"autoresearch {' '.join(args)} failed:\n{done.stderr.decode()}")
    return call


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def dashboard(repo: Path, repeat: int, exp_id: str) -> dict[str, float]:
    port = _free_port()
    proc = subprocess.Popen([CLI, "dashboard", "--repo", str(repo), "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(url + "/api/health", timeout=5).read()
                break
            except OSError:
                time.sleep(0.1)

        def get(path: str) -> Callable[[], bytes]:
            return lambda: urllib.request.urlopen(url + path, timeout=120).read()

        stamp = json.loads(get("/api/session")())["stamp"]
        from autoresearch.dashboard.app import _Source

        source = _Source(repo, None)  # what the event stream asks every second, per open page
        try:
            source.marker(None)  # opens (and checks) the ledger, once per server
            poll = median_ms(lambda: source.marker(None), repeat)
        finally:
            source.close()
        return {
            "dashboard change check (each second, in-process)": poll,
            "dashboard GET /": median_ms(get("/"), repeat),
            "dashboard /api/sessions": median_ms(get("/api/sessions"), repeat),
            "dashboard /api/session (first load)": median_ms(get("/api/session"), repeat),
            "dashboard /api/session?since= (update)": median_ms(
                get(f"/api/session?since={stamp}"), repeat),
            f"dashboard /api/experiment/{exp_id}": median_ms(
                get(f"/api/experiment/{exp_id}"), repeat),
        }
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def verdict_step(repo: Path, repeat: int, upto: int) -> dict[str, float]:
    """One look of the verdict in a session of `upto` experiments: the evidence gathered from
    the history (`judge.gather`: every other commit's repeated runs are noise evidence) and the
    policy's step on it, for the default (sequential) policy and the classic one."""
    from autoresearch.config import DecisionConfig
    from autoresearch.history import History
    from autoresearch.ledger import Ledger
    from autoresearch.policy import Evidence, policy_for

    ledger = Ledger(repo / ".autoresearch" / "ledger.db", readonly=True)
    try:
        row = ledger.session(TAG)
        assert row is not None
        history = History(load_config(repo / "autoresearch.toml"), ledger, row)
        history.load()
        keep = {e.id for e in history.experiments[:upto]}
        history.experiments = history.experiments[:upto]
        runs = [r for exp_id, rs in history.runs.items() if exp_id in keep for r in rs]
        history.load = lambda: None  # type: ignore[method-assign]
        history.runs, history._observed = {}, {}  # noqa: SLF001 - rebuilt from the cut runs
        for run in runs:
            history.add_run(run)
        cand = next(e for e in reversed(history.experiments)
                    if len(history.observations(e.commit_sha or "")) >= 2)
        base = row.base_commit

        def look(policy_name: str) -> object:
            evidence = Evidence(
                candidate=history.observations(cand.commit_sha or ""),
                incumbent=history.observations(base),
                other_groups=history.noise_groups({cand.commit_sha or "", base}),
                lines_added=1, lines_removed=1, reference=())
            decision = DecisionConfig(policy=policy_name)  # type: ignore[arg-type]
            return policy_for(decision, "minimize").step(evidence)

        return {f"verdict, one look, {upto:,}-experiment session ({name})":
                median_ms(lambda name=name: look(name), repeat)  # type: ignore[misc]
                for name in ("sequential", "classic")}
    finally:
        ledger.close()


def watch_compare(repo: Path, repeat: int) -> dict[str, float]:
    """What the ledger watch pays at a check after another connection committed (another session
    of the repository, `autoresearch review`): the session's rows against its private copy."""
    from autoresearch.ledger import shadow

    with tempfile.TemporaryDirectory(prefix="ar-watch-") as tmp:
        copy = Path(tmp) / "ledger.db"
        shutil.copyfile(repo / ".autoresearch" / "ledger.db", copy)
        conn = sqlite3.connect(copy, isolation_level=None)
        try:
            (sid,) = conn.execute("SELECT id FROM sessions WHERE tag = ?", (TAG,)).fetchone()
            shadow.install(conn, sid)
            return {"ledger watch: compare after another writer": median_ms(
                lambda: shadow.differences(conn, sid), repeat)}
        finally:
            conn.close()


def measure(repo: Path, repeat: int, more: int, experiments: int) -> dict[str, float]:
    out: dict[str, float] = {}
    exp_id = f"{TAG}-0100" if experiments >= 100 else f"{TAG}-0002"
    for label, args in [("status", ["status"]), ("results", ["results"]),
                        ("results --json", ["results", "--json"]),
                        (f"show {exp_id}", ["show", exp_id]), ("report", ["report"]),
                        ("check", ["check"])]:
        out[label] = median_ms(cli(repo, *args), repeat)
        print(f"  {label:<45} {out[label]:>9.0f} ms", flush=True)
    for label, value in dashboard(repo, repeat, exp_id).items():
        out[label] = value
        print(f"  {label:<45} {value:>9.0f} ms", flush=True)
    firsts, p50s = [], []
    for _ in range(repeat):
        first, overheads = run_more(repo, more)
        firsts.append(first)
        p50s.append(statistics.median(overheads))
    out["resume: to the first new experiment"] = statistics.median(firsts)
    out["overhead per experiment (p50)"] = statistics.median(p50s)
    for label in ("resume: to the first new experiment", "overhead per experiment (p50)"):
        print(f"  {label:<45} {out[label]:>9.0f} ms", flush=True)
    for label, value in watch_compare(repo, repeat).items():
        out[label] = value
        print(f"  {label:<45} {value:>9.0f} ms", flush=True)
    for upto in [n for n in (1000, 5000) if n <= experiments]:
        for label, value in verdict_step(repo, repeat, upto).items():
            out[label] = value
            print(f"  {label:<45} {value:>9.1f} ms", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--experiments", type=int, default=5000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--more", type=int, default=20,
                    help="experiments each resume runs (overhead p50 over them)")
    ap.add_argument("--keep", type=Path, help="build the repository here and leave it")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="ar-big-") as tmp:
        where = args.keep or Path(tmp)
        where.mkdir(parents=True, exist_ok=True)
        repo = make_repo(where)
        t = time.perf_counter()
        real_session(repo, 4)
        grow(repo, args.experiments)
        print(f"built {args.experiments:,} experiments in {time.perf_counter() - t:.0f} s "
              f"({repo}); load average {os.getloadavg()[0]:.2f}", flush=True)
        measure(repo, args.repeat, args.more, args.experiments)


if __name__ == "__main__":
    main()
