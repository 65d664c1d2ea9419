"""What one dashboard update costs at 1,500 and 10,000 experiments: bytes sent and server time.

A synthetic session is written through the Ledger API (each experiment: a hypothesis, two runs
with metrics, a verdict), then the dashboard app answers in-process (Starlette's test client, so
the time is the server's: reading the ledger, composing the view, encoding JSON). Measured:

- first load: `/api/session` with no stamp (the whole session; every update cost this before
  updates sent only what changed);
- update: one more experiment is recorded, then `/api/session?since=<stamp>` (what a live page
  asks after each change).

With --chart, also what the page spends redrawing its chart on each update (`renderChart` on
the chart it already shows, the live-update path), timed in Debian's headless Chromium against
the dashboard served on 127.0.0.1 (needs /usr/bin/chromium and Playwright).

Run:  python bench/dashboard_payload.py [--sizes 1500 10000] [--repeat 7] [--chart]
Prints medians of `--repeat` measurements per size.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from starlette.testclient import TestClient  # noqa: E402

from autoresearch.dashboard.app import create_app  # noqa: E402
from autoresearch.ledger import Ledger, SessionRow  # noqa: E402

STATUSES = ["discard"] * 14 + ["keep", "crash", "rejected", "timeout"]


def record(ledger: Ledger, session: SessionRow, rng: random.Random, value: float) -> float:
    status = rng.choice(STATUSES)
    exp = ledger.create_experiment(session, hypothesis=f"try idea number {rng.random():.6f} on "
                                   "the learning-rate schedule and the warmup length",
                                   proposer="tune", parent_commit="0" * 40, status="running")
    objective = None
    sha = f"{exp.seq:040x}"
    # The order the session loop writes in: the commit, its runs, the judgement, the verdict.
    ledger.record_commit(exp.id, commit_sha=sha, tree_sha=sha, files=["train.py"],
                         lines_added=1, lines_removed=1)
    if status in ("keep", "discard"):
        runs = [value + rng.gauss(0, 0.01) for _ in range(2)]
        for i, v in enumerate(runs):
            ledger.add_run(exp.id, role="candidate", idx=i, commit_sha=sha,
                           status="ok", exit_code=0, duration_s=60.0, log_path=None,
                           fingerprint=None, fingerprint_key=None, started_at=time.time(),
                           metrics={"val_bpb": v, "peak_memory_mb": 900.0})
        objective = statistics.fmean(runs)
    ledger.record_judgement(exp.id, incumbent_objective=value, threshold=0.02,
                            delta=None if objective is None else objective - value)
    ledger.finish_experiment(exp.id, status=status, objective=objective,
                             reason="improvement 0.001 ≤ threshold 0.02", finished_at=time.time())
    return value - 0.0005 if status == "keep" else value


def build(repo: Path, n: int, seed: int = 0) -> tuple[Ledger, SessionRow, random.Random, float]:
    ledger = Ledger(repo / ".autoresearch" / "ledger.db")
    session = ledger.create_session(tag="big", branch="autoresearch/big", base_commit="0" * 40,
                                    worktree=str(repo), metric="val_bpb", direction="minimize",
                                    config={}, proposer="tune")
    rng = random.Random(seed)
    value = 1.45
    for _ in range(n):
        value = record(ledger, session, rng, value)
    ledger.set_session_status(session.id, "finished")
    return ledger, session, rng, value


def measure(n: int, repeat: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp)
        ledger, session, rng, value = build(repo, n)
        client = TestClient(create_app(repo, "big", None), base_url="http://127.0.0.1")
        first_bytes, first_ms, upd_bytes, upd_ms = [], [], [], []
        stamp = 0
        for _ in range(repeat):
            t = time.perf_counter()
            resp = client.get("/api/session")
            first_ms.append(1000 * (time.perf_counter() - t))
            first_bytes.append(len(resp.content))
            stamp = resp.json()["stamp"]
        for _ in range(repeat):
            value = record(ledger, session, rng, value)
            t = time.perf_counter()
            resp = client.get(f"/api/session?since={stamp}")
            upd_ms.append(1000 * (time.perf_counter() - t))
            upd_bytes.append(len(resp.content))
            body = resp.json()
            assert len(body["experiments"]) == 1 and body["count"] > n
            stamp = body["stamp"]
        ledger.close()
    med = statistics.median
    return {"first_kb": med(first_bytes) / 1024, "first_ms": med(first_ms),
            "update_kb": med(upd_bytes) / 1024, "update_ms": med(upd_ms)}


CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]


def chart_redraw_ms(n: int, repeat: int) -> float:
    """Median in-page time of one chart redraw at `n` experiments (the live-update path)."""
    import uvicorn
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp)
        build(repo, n)[0].close()
        app = create_app(repo, "big", None)
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                                               access_log=False, timeout_graceful_shutdown=2))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.02)
        port = server.servers[0].sockets[0].getsockname()[1]
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path="/usr/bin/chromium",
                                            args=CHROMIUM_ARGS)
                page = browser.new_page(bypass_csp=True)  # the page forbids eval()
                page.goto(f"http://127.0.0.1:{port}/")
                page.wait_for_function(f"+document.body.dataset.experiments >= {n}",
                                       timeout=300_000)
                times = page.evaluate("""(repeat) => {
                  const out = [];
                  for (let i = 0; i < repeat; i++) {
                    const t = performance.now();
                    renderChart(state.view.chart);
                    out.push(performance.now() - t);
                  }
                  return out;
                }""", repeat)
                browser.close()
        finally:
            app.state.shutdown.set()
            server.should_exit = True
            thread.join(10)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1500, 10000])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--chart", action="store_true",
                        help="also time the page's chart redraw in headless Chromium")
    args = parser.parse_args()
    print(f"{'experiments':>11}  {'first load':>20}  {'one update':>20}"
          + (f"  {'chart redraw':>12}" if args.chart else ""))
    for n in args.sizes:
        r = measure(n, args.repeat)
        chart = f"  {chart_redraw_ms(n, args.repeat):>9.0f} ms" if args.chart else ""
        print(f"{n:>11,}  {r['first_kb']:>9.0f} KB {r['first_ms']:>6.0f} ms  "
              f"{r['update_kb']:>9.1f} KB {r['update_ms']:>6.0f} ms{chart}", flush=True)


if __name__ == "__main__":
    main()
