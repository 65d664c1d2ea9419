"""A toy research target whose truth and noise are known, and a proposer that knows the truth.

Used by bench/verdict_cli.py to measure the verdict through the real CLI. The repository it makes:

- `knobs.py` (the scope): lines `name = number`. Every `e_*` knob adds its value, in σ, to the
  true improvement; a `noise_*` knob multiplies the noise (the largest one counts); any other knob
  changes nothing the metric can see.
- `score.py` (protected, the verify command): prints `score: <value>` with
  value = 1 − σ·(Σ e_*) + σ·noise·N(0, 1) − σ·drift·(runs so far), so lower is better. σ, the drift
  per run and a deterministic mode come from the environment (TOY_SIGMA, TOY_DRIFT,
  TOY_DETERMINISTIC=1: every version of knobs.py gives one fixed value, as a fixed seed would).
  The noise is seeded from AUTORESEARCH_SEED when the harness gives one (a repeat with the same
  seed and the same code gives the same value), else from a run counter kept in TOY_STATE, a
  directory outside the repository; TOY_SALT (the benchmark session's seed) is mixed in, so two
  sessions of the benchmark draw different noise although the harness gives both the same seeds.

`ToyProposer` (`[proposer] name = "toy_target:ToyProposer"`, with bench/ on PYTHONPATH) proposes
changes of known effect and says so in the hypothesis (`[null]`, `[real 2σ]`, `[noisy]`,
`[deletion]`, `[luck]`), so the harness can score every verdict. Options: `mode` (null, mixed,
effects, noisy, deletion, zero), `effect` (σ), `share` (mixed: the share of real changes), `seed`.

The module also makes every benchmark's throwaway repository: `commit_files` writes files and
commits them with a fixed identity, `git` runs git the same way.
"""

from __future__ import annotations

import os
import random
import subprocess
import textwrap
from pathlib import Path
from typing import Any

from autoresearch.proposers.base import Proposal, ProposalContext, Proposer

SCORE_PY = textwrap.dedent(
    '''
    # The toy's evaluation (protected): a known truth plus noise of known size.
    import hashlib, os, random, time
    from pathlib import Path

    text = Path("knobs.py").read_text()
    knobs = {}
    for line in text.splitlines():
        name, sep, value = line.partition("=")
        if sep and name.strip().isidentifier():
            knobs[name.strip()] = float(value)
    effect = sum(v for k, v in knobs.items() if k.startswith("e_"))
    noise = max([1.0] + [v for k, v in knobs.items() if k.startswith("noise_")])
    sigma = float(os.environ.get("TOY_SIGMA", "0.01"))
    drift = float(os.environ.get("TOY_DRIFT", "0"))
    counter = Path(os.environ["TOY_STATE"]) / "runs"
    count = int(counter.read_text()) + 1 if counter.exists() else 1
    # Replaced whole, never rewritten in place: with several workers another run may read it
    # at any moment (a half-written file, read as "", crashed one).
    staged = counter.with_name(f"runs.{os.getpid()}")
    staged.write_text(str(count))
    os.replace(staged, counter)
    # TOY_SALT: each benchmark session its own noise (the harness's seeds repeat across sessions).
    digest = hashlib.sha256((os.environ.get("TOY_SALT", "") + text).encode()).hexdigest()
    if os.environ.get("TOY_DETERMINISTIC") == "1":
        rng = random.Random(digest)
    elif os.environ.get("AUTORESEARCH_SEED"):
        rng = random.Random(f"{os.environ['AUTORESEARCH_SEED']}:{digest}")
    else:
        rng = random.Random(f"{count}:{os.getpid()}:{time.time_ns()}")
    value = 1.0 - sigma * effect + sigma * noise * rng.gauss(0.0, 1.0) - sigma * drift * count
    print(f"score: {value:.12f}")
    '''
)

CONFIG = textwrap.dedent(
    """
    scope = ["knobs.py"]
    protected = ["score.py"]
    [verify]
    command = "{{python}} score.py"
    budget_seconds = 20
    timeout_seconds = 60
    [metric]
    name = "score"
    direction = "minimize"
    [decision]
    repeats = 3
    {decision}
    [proposer]
    name = "toy_target:ToyProposer"
    mode = "{mode}"
    effect = {effect}
    share = {share}
    seed = {seed}
    """
)

DELETABLE = 30  # deletion mode: knobs worth 1σ each, one removed per proposal


def knobs_file(mode: str) -> str:
    lines = ["# Knobs of the toy target (see bench/toy_target.py).", "base = 0"]
    if mode == "deletion":
        lines += [f"e_g{i} = 1.0" for i in range(DELETABLE)]
    return "\n".join(lines) + "\n"


def config_file(mode: str, effect: float, share: float, seed: int, decision: str = "") -> str:
    return CONFIG.format(mode=mode, effect=effect, share=share, seed=seed, decision=decision)


class ToyProposer(Proposer):
    """Proposes changes whose true effect it knows, one knob at a time."""

    name = "toy"
    known_options = frozenset({"mode", "effect", "share", "seed"})

    def __init__(self, config: Any, options: Any = None) -> None:
        super().__init__(config, options)
        self.mode = str(self.options.get("mode", "null"))
        if self.mode not in ("null", "mixed", "effects", "noisy", "deletion", "zero"):
            raise ValueError(f"unknown toy mode {self.mode!r}")
        self.effect = float(self.options.get("effect", 2.0))
        self.share = float(self.options.get("share", 0.2))
        self.rng = random.Random(int(self.options.get("seed", 0)))

    def propose(self, ctx: ProposalContext) -> Proposal | None:
        text = ctx.read("knobs.py")
        tag = f"k{len(ctx.history)}_{self.rng.randrange(10**9)}"
        if self.mode == "deletion":
            lines = text.splitlines()
            deletable = [i for i, line in enumerate(lines) if line.startswith("e_g")]
            if not deletable:
                return None
            del lines[self.rng.choice(deletable)]
            return Proposal("[deletion] remove a knob worth 1σ", {"knobs.py": "\n".join(lines)
                                                                   + "\n"})
        if self.mode == "zero":
            luck = self.rng.choice((-0.5, 0.5))
            return self._add(text, f"e_{tag} = {luck}", f"[luck {luck:+g}σ] a change the seed "
                             "decides")
        if self.mode == "noisy" and len(ctx.history) % 3 == 0:
            return self._add(text, f"noise_{tag} = 3.0", "[noisy] triples the noise, nothing else")
        real = self.mode == "effects" or (self.mode == "mixed" and self.rng.random() < self.share)
        if real:
            return self._add(text, f"e_{tag} = {self.effect}",
                             f"[real {self.effect:g}σ] a true improvement")
        return self._add(text, f"n_{tag} = 1", "[null] a change the metric cannot see")

    @staticmethod
    def _add(text: str, line: str, hypothesis: str) -> Proposal:
        return Proposal(hypothesis, {"knobs.py": text + line + "\n"})


def make_repo(path: Path, mode: str, *, effect: float = 2.0, share: float = 0.2,
              seed: int = 0, decision: str = "") -> Path:
    """A git repository at `path` holding the toy's files in one commit."""
    return commit_files(path, {
        "knobs.py": knobs_file(mode), "score.py": SCORE_PY,
        "autoresearch.toml": config_file(mode, effect, share, seed, decision),
        ".gitignore": ".autoresearch/\n"}, message="toy target")


GIT_IDENTITY = {"GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@localhost",
                "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@localhost"}


def git(cwd: Path, *args: str) -> str:
    """Run git in `cwd` with the benchmark's identity (a throwaway repository needs no user
    configuration); its stdout, stripped."""
    return subprocess.run(["git", *args], cwd=cwd, env={**os.environ, **GIT_IDENTITY},
                          check=True, capture_output=True, text=True).stdout.strip()


def commit_files(repo: Path, files: dict[str, str], message: str = "init") -> Path:
    """Write `files` (relative path -> text) into `repo`, created if need be, and commit them
    as the first commit of a new repository on `main`."""
    repo.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", message)
    return repo
