"""bench/dashboard_payload.py runs against the current Ledger API (it had rotted once: it called
methods the ledger no longer has). A tiny size, through its own command line."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "dashboard_payload.py"


def test_the_dashboard_payload_bench_runs_at_a_tiny_size() -> None:
    proc = subprocess.run([sys.executable, str(BENCH), "--sizes", "25", "--repeat", "2"],
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    row = proc.stdout.splitlines()[-1]
    # experiments, first load (KB, ms), one update (KB, ms)
    assert re.fullmatch(r"\s*25\s+\d+ KB\s+\d+ ms\s+[\d.]+ KB\s+\d+ ms", row), proc.stdout
