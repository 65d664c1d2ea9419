"""A project autoresearch has never seen, from `init` to a finished session.

Like a small public GPT repository: its data is prepared by a script and git-ignored, its
training script prints `step 200: train loss 2.50, val loss 2.52` and seeds its own RNG. The
user follows only what the README and the tool's own messages say: run the script once into a
log, `init --from-log`, `check` (which names the line to add for the ignored data), mark a knob
as the README shows, `check` again, `run`, `status`.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import git, make_repo, run_cli

PREPARE = textwrap.dedent(
    """
    # Downloads and tokenizes the corpus (here: makes it), writing train.bin, val.bin, meta.pkl.
    import os, pickle, random
    here = os.path.dirname(os.path.abspath(__file__))
    rng = random.Random(0)
    for name, size in (("train.bin", 20000), ("val.bin", 2000)):
        with open(os.path.join(here, name), "wb") as f:
            f.write(bytes(rng.randrange(65) for _ in range(size)))
    with open(os.path.join(here, "meta.pkl"), "wb") as f:
        pickle.dump({"vocab_size": 65}, f)
    """
)

TRAIN = textwrap.dedent(
    """
    # Someone else's training script: its own log format, its own seed, data from data/.
    import os, pickle, random
    data_dir = os.path.join("data", "shakespeare_char")
    with open(os.path.join(data_dir, "meta.pkl"), "rb") as f:
        vocab_size = pickle.load(f)["vocab_size"]
    train = open(os.path.join(data_dir, "train.bin"), "rb").read()
    val = open(os.path.join(data_dir, "val.bin"), "rb").read()

    learning_rate = 0.9
    max_iters = 200
    random.seed(1337)

    def loss_at(step):
        gap = (learning_rate - 0.25) ** 2
        return 2.1 + 3.0 * gap + (max_iters - step) / max_iters + random.gauss(0, 0.002)

    print(f"found vocab_size = {vocab_size} (inside {data_dir}/meta.pkl)")
    for step in range(0, max_iters + 1, 100):
        train_loss = loss_at(step) - 0.02
        print(f"step {step}: train loss {train_loss:.4f}, val loss {loss_at(step):.4f}")
        print(f"iter {step}: loss {train_loss:.4f}, time 110.42ms, mfu 3.38%")
    """
)


def third_party_repo(tmp_path: Path) -> Path:
    repo = make_repo(tmp_path / "nanogpt", {
        "train.py": TRAIN,
        "data/shakespeare_char/prepare.py": PREPARE,
        "data/shakespeare_char/readme.md": "python data/shakespeare_char/prepare.py\n",
        ".gitignore": "*.bin\n*.pkl\n__pycache__/\n*.log\n",
    })
    # The project's own setup step, run in the user's checkout: data nobody commits.
    subprocess.run([sys.executable, "data/shakespeare_char/prepare.py"], cwd=repo, check=True)
    assert (repo / "data/shakespeare_char/train.bin").exists()
    assert git(repo, "status", "--porcelain") == ""
    return repo


def under_table(config: str, table: str, line: str) -> str:
    """`line` added right below `[table]`, as a user pastes what they were told."""
    return config.replace(f"[{table}]\n", f"[{table}]\n{line}\n", 1)


@pytest.mark.slow
def test_a_third_party_project_from_init_to_a_finished_session(tmp_path: Path) -> None:
    repo = third_party_repo(tmp_path)
    wide = {"COLUMNS": "200"}

    # README: save one run's output, and let init read the metric from it.
    with open(repo / "run.log", "w") as log:
        subprocess.run([sys.executable, "train.py"], cwd=repo, stdout=log,
                       stderr=subprocess.STDOUT, check=True)
    init = run_cli(repo, "init", "--from-log", "run.log", "--metric", "val_loss",
                   "--command", "{python} train.py", "--scope", "train.py", "--budget", "10",
                   "--commit", env=wide)
    assert init.returncode == 0, init.stdout + init.stderr
    assert "objective val_loss = 3.3" in init.stdout  # 2.1 + 3·0.65² at step 200

    # check: the worktree lacks the ignored data; it says which line to add (and that tune
    # has no knob yet, with the marker the README documents).
    check = run_cli(repo, "check", env=wide)
    assert check.returncode == 2, check.stdout + check.stderr
    assert "FileNotFoundError" in check.stdout
    assert "found no knobs to tune" in check.stdout
    share = re.search(r"^    (share = \[.*\])$", check.stdout, re.MULTILINE)
    assert share is not None, check.stdout
    assert share.group(1) == 'share = ["data/shakespeare_char"]'
    config = (repo / "autoresearch.toml").read_text()
    (repo / "autoresearch.toml").write_text(under_table(config, "verify", share.group(1)))
    train = (repo / "train.py").read_text()
    (repo / "train.py").write_text(train.replace(
        "learning_rate = 0.9\n", "learning_rate = 0.9  # knob: float(0.05, 1.0)\n"))
    git(repo, "commit", "-qam", "autoresearch: share the prepared data, mark a knob")

    ready = run_cli(repo, "check", env=wide)
    assert ready.returncode == 0, ready.stdout + ready.stderr
    assert "3 shared file(s) linked from your checkout" in ready.stdout
    assert "step 200: train loss" in ready.stdout  # the line the objective was read from
    assert "ready" in ready.stdout

    run = run_cli(repo, "run", "-n", "8", "--tag", "first", env=wide)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "stopped: reached 8 experiments" in run.stdout
    assert "keep" in run.stdout  # learning_rate 0.9 is far from the best (0.25): tune finds better
    status = run_cli(repo, "status", env=wide)
    assert status.returncode == 0, status.stdout + status.stderr
    assert "first" in status.stdout and "finished" in status.stdout
    # The user's checkout and its data are as they were.
    assert git(repo, "status", "--porcelain") == ""
    assert (repo / "data/shakespeare_char/train.bin").stat().st_size == 20000
