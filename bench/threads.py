"""Why a run's thread count is set, not inherited: a PyTorch workload with 1 vs all threads,
with and without one other busy job on the machine.

    python bench/threads.py [--repeat 3] [--steps 30]

Each measurement runs a fixed amount of training work (forward + backward + AdamW on a small
transformer block, the shape of the GPT template's CPU config) in a fresh process whose
thread count is set the way autoresearch sets it (`resources.thread_env`), and reports the wall
time: medians of `--repeat` runs. "one busy job" is a second process spinning on one core for
the whole measurement, like another user's job on a shared machine. It also prints what
`[run] threads = "auto"` would choose at that moment.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))

from autoresearch.resources import plan_threads, thread_env, usable_cores  # noqa: E402

WORK = """
import time, torch
torch.manual_seed(0)
width, seq, batch = 128, 64, 16
block = torch.nn.TransformerEncoderLayer(width, 4, 4 * width, batch_first=True, dropout=0.0)
head = torch.nn.Linear(width, 256)
params = list(block.parameters()) + list(head.parameters())
opt = torch.optim.AdamW(params, lr=1e-3)
x = torch.randn(batch, seq, width)
y = torch.randint(0, 256, (batch, seq))
for _ in range(3):  # warm-up: allocations, thread pool start
    loss = torch.nn.functional.cross_entropy(head(block(x)).flatten(0, 1), y.flatten())
    loss.backward(); opt.step(); opt.zero_grad()
start = time.perf_counter()
for _ in range({steps}):
    loss = torch.nn.functional.cross_entropy(head(block(x)).flatten(0, 1), y.flatten())
    loss.backward(); opt.step(); opt.zero_grad()
print(time.perf_counter() - start)
"""


def spin() -> None:
    while True:
        pass


def measure(threads: int, steps: int) -> float:
    env = {**os.environ, **thread_env(threads)}
    out = subprocess.run([sys.executable, "-c", WORK.format(steps=steps)], env=env,
                         capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()
    cores = usable_cores()
    counts = sorted({1, cores})
    print(f"{cores} usable cores; load average {os.getloadavg()[0]:.2f}; "
          f"auto would choose: {plan_threads('auto').describe()}")
    print(f"{'other work':<14}" + "".join(f"{f'{n} thread(s)':>16}" for n in counts))
    for busy in (False, True):
        spinner = None
        if busy:
            spinner = multiprocessing.Process(target=spin, daemon=True)
            spinner.start()
            time.sleep(0.5)
        try:
            medians = {}
            for n in counts:
                times = [measure(n, args.steps) for _ in range(args.repeat)]
                medians[n] = statistics.median(times)
        finally:
            if spinner is not None:
                spinner.terminate()
                spinner.join()
        label = "one busy job" if busy else "none added"
        row = "".join(f"{medians[n]:>15.2f}s" for n in counts)
        ratio = medians[cores] / medians[1] if cores > 1 else 1.0
        print(f"{label:<14}{row}   all/1 = {ratio:.2f}x")


if __name__ == "__main__":
    main()
