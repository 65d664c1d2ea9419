"""`finalize` names the branch of a group of knob changes (tune's) for the knobs it sets and the
values it leaves them at, end to end through the CLI; the naming's edge cases below it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from autoresearch.finalize.groups import group_branch, group_slug, is_group_branch
from tests.conftest import git, make_repo, run_cli, use_script
from tests.views.test_finalize_verify import CONFIG, SCORE_PY

# a.py holds the score's signal A beside two knobs with names of several words; b.py holds B
# beside knobs whose names and values together are too long for one branch name.
A_PY = "A = {a}\nLEARNING_RATE = {lr}\nDEPTH = {depth}\n"
B_PY = ("B = {b}\nATTENTION_DROPOUT_PROBABILITY = {p}\nWEIGHT_DECAY_COEFFICIENT = {wd}\n")


def _a(a: float, lr: float, depth: int) -> dict[str, str]:
    return {"a.py": A_PY.format(a=a, lr=lr, depth=depth)}


def test_a_tune_sessions_branches_name_each_knob_once_with_the_value_it_ends_at(
        tmp_path: Path) -> None:
    """Three kept tune changes of a.py move LEARNING_RATE twice: its branch names it once, at its
    last value, and DEPTH at its own ("learning-rate-0.03+a-3.0+depth-4", not
    "tune-learning-rate+tune-learning-rate+…"). b.py's knobs with their values would not fit in
    a branch name: it names the knobs alone."""
    repo = make_repo(tmp_path / "repo", {
        **_a(0.0, 0.01, 3), "b.py": B_PY.format(b=0.0, p=0.1, wd=0.01),
        "score.py": SCORE_PY, "autoresearch.toml": CONFIG})
    use_script(repo, [
        {"hypothesis": "tune: LEARNING_RATE 0.01 → 0.02, A 0.0 → 1.0",
         "edits": _a(1.0, 0.02, 3)},
        {"hypothesis": "tune: DEPTH 3 → 4, A 1.0 → 2.0", "edits": _a(2.0, 0.02, 4)},
        {"hypothesis": "tune: LEARNING_RATE 0.02 → 0.03, A 2.0 → 3.0",
         "edits": _a(3.0, 0.03, 4)},
        {"hypothesis": "tune: B 0.0 → 0.5, ATTENTION_DROPOUT_PROBABILITY 0.1 → 0.15, "
                       "WEIGHT_DECAY_COEFFICIENT 0.01 → 0.001",
         "edits": {"b.py": B_PY.format(b=0.5, p=0.15, wd=0.001)}}])
    session = run_cli(repo, "run", "--tag", "t", "-n", "5")
    assert session.returncode == 0, session.stdout + session.stderr
    proc = run_cli(repo, "finalize", "--tag", "t")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    branches = git(repo, "for-each-ref", "--format=%(refname:short)",
                   "refs/heads/autoresearch-final/").split()
    assert branches == [
        "autoresearch-final/t/01-learning-rate-0.03+a-3.0+depth-4",
        "autoresearch-final/t/02-b+attention-dropout-probability+weight-decay-coefficient",
    ], branches
    assert all(is_group_branch("autoresearch-final/t/", b) for b in branches)
    # The branch holds what its name says: the last values of its knobs.
    assert git(repo, "show", f"{branches[0]}:a.py") == A_PY.format(a=3.0, lr=0.03,
                                                                   depth=4).rstrip("\n")


@pytest.mark.parametrize(("titles", "name"), [
    (["tune: LEARNING_RATE 0.01 → 0.02"], "learning-rate-0.02"),
    (["tune: LEARNING_RATE 0.01 → 0.02", "tune: LEARNING_RATE 0.02 → 0.01"], "learning-rate-0.01"),
    # A knob the title leaves at its value (a replay's) names nothing.
    (["tune: B 0.0 -> 0.5, A 1.0 → 1.0"], "b-0.5"),
    # A sign is a word, not a separator; a quoted choice is its text; ".5" reads as 0.5.
    (["tune: BIAS 0.1 → -0.5, OPT 'adam' → 'adamw', EPS 1e-3 → 1e-05, W 1 → .5"],
     "bias-minus-0.5+opt-adamw+eps-1e-05+w-0.5"),
    # A value holding ", " is one value; a knob named with its file (two files have an LR).
    (['tune: train.py:LR 1 → 2, NAME "a" → "b, c"'], "train-py-lr-2+name-b-c"),
    # Too many knobs for their names: the first ones, then how many more.
    ([f"tune: KNOB_NUMBER_{i} 1 → 2" for i in range(12)],
     "knob-number-0+knob-number-1+knob-number-2+9-more"),
    # Not tune's: the words of each title, each part once.
    (["raise LEARNING_RATE to 0.02", "cosine schedule", "raise LEARNING_RATE to 0.02"],
     "raise-learning-rate-0-02+cosine-schedule"),
    (["tune: no knob left to change"], "tune-no-knob-left-to-change"),
])
def test_a_group_is_named_for_what_it_sets(titles: list[str], name: str) -> None:
    assert group_slug(titles) == name


@pytest.mark.parametrize("value", ["x.lock", "1.", "..5", "-", "a" * 80 + ".lock", "'.lock'",
                                   "1..2", "@{u}", "a b\tc", "~^:?*[\\"])
def test_every_knob_value_makes_a_name_git_accepts_and_is_bounded(value: str) -> None:
    """A branch name from any value is a valid git ref name no longer than the limit."""
    name = group_slug(["tune: OTHER_KNOB 0 → 1", f"tune: KNOB 0 → {value}"])
    assert len(name) <= 60 and is_group_branch("p/", group_branch("p/", 1, name)), name
    check = subprocess.run(["git", "check-ref-format", f"refs/heads/p/01-{name}"],
                           capture_output=True, text=True)
    assert check.returncode == 0, (value, name)
