"""Running git: the one place a git process is started, and the one error a failed call raises.

Every git call the package makes goes through `run_git` (bytes) or `git` (text), with the same
environment and the same hardening (`HARDENED`), so no call can forget either.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from autoresearch import strays
from autoresearch.errors import AutoresearchError
from autoresearch.lifeline import watchdog
from autoresearch.process_tree import OWNER_ENV, owner_token

# Hooks, pagers, prompts and localisation all make git slower or less predictable in a loop; a
# pager or a colour escape would also end up in the output we parse or show. Paths are always
# literal: a file named `*.py` must stage that file, never every match of the glob (what is
# committed must be exactly what the guardrails judged).
_GIT_ENV = {
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_PAGER": "cat",
    "PAGER": "cat",
    "LC_ALL": "C",
    "GIT_OPTIONAL_LOCKS": "0",
    "GIT_LITERAL_PATHSPECS": "1",
    # A `refs/replace/` ref makes git read another object wherever one is named: a run could
    # swap the evaluation's files in every checkout without changing any commit.
    "GIT_NO_REPLACE_OBJECTS": "1",
}
# Every git call the harness makes runs none of the user's or an agent's code and lets nothing
# rewrite the content it checks out, stages or compares: an agent runs as the same user and can
# write `~/.gitconfig` or `.git/config`, and a `post-checkout` hook (or an fsmonitor, a gpg
# program, a filter picked by a planted attributes file) running inside the harness's own
# checkout would make it measure code it never committed (diffs also pass --no-ext-diff and
# --no-textconv). Command-line settings win over every config file, so they hold whatever those
# files say; the rest of the user's configuration (identity, safe.directory, excludes, the
# drivers of filters their committed .gitattributes name, such as git-lfs) still applies, and
# any change an agent or a verify run makes to those files is undone before the harness runs
# git again (gitops/control_files.py).
HARDENED = (
    "-c", "core.hooksPath=/dev/null",  # no hook of any kind, from any config
    "-c", "core.fsmonitor=false",  # an fsmonitor is a command git would run on status/add
    "-c", "core.attributesFile=/dev/null",  # attributes only from the repository itself
    "-c", "commit.gpgSign=false",  # gpg.program would be run by every commit
)
_SHA = re.compile(r"^[0-9a-f]{7,64}$")
# What git runs for these can take minutes on a big repository (a bundle of 500 MB: 30 s of `git
# pack-objects` at 900 MB): before one starts, the orchestrator's watchdog must be running, so
# that a kill -9 of the orchestrator takes git with it (see `run_git`).
_LONG = frozenset({"bundle", "checkout", "clean", "clone", "fetch", "fsck", "gc", "pack-objects",
                   "pack-refs", "prune", "push", "repack", "worktree"})


class GitError(AutoresearchError):
    """A git command failed; the message is git's own."""

    def __init__(self, args: Sequence[str], returncode: int, stderr: str,
                 where: str | None = None) -> None:
        self.returncode = returncode
        self.stderr = stderr
        shown = " ".join(args[:4]) + (" …" if len(args) > 4 else "")
        super().__init__(f"git {shown} failed ({returncode}): {stderr.strip()}", where=where)


def run_git(cwd: Path, *args: str, input_bytes: bytes | None = None,
            env: Mapping[str, str] | None = None,
            unset: Sequence[str] = (),
            timeout: float | None = None) -> subprocess.CompletedProcess[bytes]:
    """The one place a git process is started: `git args` in `cwd`, output as bytes, with
    hooks, fsmonitor, global attributes and signing off (`HARDENED`).

    `timeout` (seconds): git runs in a process group of its own, which is stopped (SIGTERM,
    then SIGKILL) when the time is up or the caller is interrupted (Ctrl-C), and
    `subprocess.TimeoutExpired` is raised. The group, not only git: `git gc` runs `git repack`,
    which runs `git pack-objects`, and a child left running would hold the repository's locks.
    SIGTERM first, so that git removes its lock and temporary files as it goes.

    Nothing git starts outlives this process, whatever kills it: every git process (and what it
    runs in turn: `git bundle create` runs `git pack-objects`, which writes the bundle itself)
    carries this process's owner mark, which the watchdog kills when the process dies, as it
    kills a verify run's processes (lifeline.py); a long command (`_LONG`) first makes sure the
    watchdog runs. Not the parent-death signal: it would reach git alone, never pack-objects."""
    full_env = {k: v for k, v in {**os.environ, **_GIT_ENV, **(env or {}),
                                  OWNER_ENV: owner_token()}.items() if k not in unset}
    if _subcommand(args) in _LONG:
        watchdog().ensure_started()
    command = ["git", *HARDENED, *args]
    if timeout is None:
        done = subprocess.run(command, cwd=cwd, env=full_env, input=input_bytes,
                              capture_output=True, check=False)
        if done.returncode in _GROUP_STOPS:
            # git shares our process group, and a stop sent to the whole group (`timeout 8h
            # autoresearch run`, systemd stopping a unit, `kill -TERM -PGID`) kills it too,
            # often while the session is cleaning up after that same signal: the stop then
            # ended in "git checkout … failed (-15)", exit 1. git removes its locks as it dies,
            # so the call is made once more; the session stops as the signal asked.
            done = subprocess.run(command, cwd=cwd, env=full_env, input=input_bytes,
                                  capture_output=True, check=False)
        return done
    # Outside our session, so registered as ours: the orchestrator's stray sweep and reaper
    # would otherwise take it for an orphan a run left (strays.py).
    proc = strays.spawn_helper(lambda: subprocess.Popen(
        command, cwd=cwd, env=full_env, start_new_session=True,
        stdin=None if input_bytes is None else subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE), lambda p: p.pid)
    try:
        with proc:
            try:
                out, errs = proc.communicate(input_bytes, timeout=timeout)
            except BaseException:
                _stop_group(proc)
                raise
            return subprocess.CompletedProcess(command, proc.returncode, out, errs)
    finally:
        strays.forget(proc.pid, proc)


def _subcommand(args: Sequence[str]) -> str | None:
    """The git command `args` run (`checkout` in `-c core.trustctime=false checkout ...`)."""
    words = iter(args)
    for word in words:
        if word in ("-c", "-C"):
            next(words, None)  # its value
        elif not word.startswith("-"):
            return word
    return None


_TERM_GRACE_S = 5.0
# How a git process dies of a stop signal sent to its whole process group.
_GROUP_STOPS = frozenset({-signal.SIGTERM, -signal.SIGHUP, -signal.SIGINT})


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    """End `proc`'s process group (it leads one: start_new_session), gently first."""
    for sig, grace in ((signal.SIGTERM, _TERM_GRACE_S), (signal.SIGKILL, None)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


def git(cwd: Path, *args: str, check: bool = True, input_text: str | None = None,
        env: Mapping[str, str] | None = None, errors: str = "surrogateescape") -> str:
    """Run git in `cwd` and return its stdout as text (without the trailing newline).

    A file name that is not UTF-8 keeps its bytes as lone surrogates (surrogateescape, as
    os.fsdecode does), so it can still be named, refused and put back; text meant for display
    (diffs) is decoded with errors="replace" instead.
    """
    proc = run_git(cwd, *args, env=env, input_bytes=None if input_text is None
                   else input_text.encode("utf-8", "surrogateescape"))
    if check and proc.returncode != 0:
        raise GitError(list(args), proc.returncode,
                       proc.stderr.decode("utf-8", "replace") or proc.stdout.decode("utf-8", "replace"),
                       where=str(cwd))
    return proc.stdout.decode("utf-8", errors).rstrip("\n")


def decode_names(raw: bytes) -> list[str]:
    """NUL-separated file names as git prints them (surrogateescape: see `git`)."""
    return [p.decode("utf-8", "surrogateescape") for p in raw.split(b"\0") if p]


def git_names(cwd: Path, *args: str) -> list[str]:
    """Run git (its arguments ask for `-z` output) and return the file names it prints."""
    proc = run_git(cwd, *args)
    if proc.returncode != 0:
        raise GitError(list(args), proc.returncode, proc.stderr.decode("utf-8", "replace"),
                       where=str(cwd))
    return decode_names(proc.stdout)


def is_sha(value: str | None) -> bool:
    """A commit id (full or abbreviated): nothing user-controlled is ever read as an option."""
    return bool(value) and _SHA.match(value or "") is not None
