"""The environment a measurement was taken in.

A metric is only comparable to another one taken on the same hardware and software: a
faster CPU or a new torch moves val_bpb under a fixed time budget as much as any idea does.
Every run records this fingerprint; the decision step compares ``comparable_key`` values and
refuses (or flags) comparisons across different environments.

The machine's part describes this process (its CPU, GPU, Python and packages); the evaluation's
part (`evaluation`) describes the interpreter the verify command runs, which need not be ours:
`python3 score.py` runs whichever python3 comes first on PATH (see evaluation_environment).
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import os
import platform
import re
import shlex
import shutil
import socket
import string
import subprocess
import threading
from collections.abc import Mapping, Sequence
from importlib import metadata
from typing import Any

__all__ = [
    "COMPARABLE_FIELDS",
    "DEFAULT_PACKAGES",
    "RUN_THREADS_FIELD",
    "comparable_key",
    "describe_difference",
    "environment_fingerprint",
    "evaluation_environment",
]

DEFAULT_PACKAGES: tuple[str, ...] = (
    "autoresearch",
    "torch",
    "numpy",
    "optuna",
    "scipy",
    "triton",
    "jax",
    "jaxlib",
    "scikit-learn",
)

# Hostname and commit are deliberately absent: two identical machines are comparable, and
# the commit is what is being compared. The kernel release is absent too (it rarely moves
# a metric and changes with every security update).
COMPARABLE_FIELDS: tuple[str, ...] = (
    "cpu_model",
    "cpu_count",
    "gpu",
    "os_system",
    "machine",
    "python_implementation",
    "python_version",
    "packages",
    "evaluation",
)
# Hashed only when present: fingerprints recorded before the evaluation's interpreter was part of
# them (and commands whose program cannot be resolved) keep the key they had.
_OPTIONAL_FIELDS = frozenset({"evaluation"})

# The thread count a run got: recorded with its fingerprint, compared by the session (a
# different machine is not needed to change it), not by comparable_key.
RUN_THREADS_FIELD = "run_threads"

# The variables that choose which interpreter and which packages a Python program gets
# (PYENV_VERSION: which python a pyenv shim on PATH execs).
INTERPRETER_VARIABLES: tuple[str, ...] = ("VIRTUAL_ENV", "PYTHONPATH", "CONDA_PREFIX",
                                          "PYENV_VERSION")
_PYTHON_NAME = re.compile(r"^(python|pypy)[0-9.]*$")
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_PROBE_TIMEOUT_S = 30.0

_NVIDIA_SMI_TIMEOUT_S = 5.0


def environment_fingerprint(packages: Sequence[str] = DEFAULT_PACKAGES, *,
                            command: str | None = None,
                            verify_env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Describe this machine and interpreter, and with `command` (the verify command, `{python}`
    expanded) the interpreter it runs in this process's environment plus `verify_env`. The
    machine's part is cached per process; returns a fresh copy."""
    fp = copy.deepcopy(_fingerprint(tuple(packages)))
    if command is not None:
        evaluation = evaluation_environment(command, {**os.environ, **(verify_env or {})})
        if evaluation:
            fp["evaluation"] = evaluation
    return fp


@functools.cache
def _fingerprint(packages: tuple[str, ...]) -> dict[str, Any]:
    return {
        "cpu_model": _cpu_model(),
        "cpu_count": _cpu_count(),
        "gpu": _gpus(),
        "os_system": platform.system(),
        "os_release": platform.release(),
        "machine": platform.machine(),
        "python_implementation": platform.python_implementation(),
        "python_version": platform.python_version(),
        "packages": _package_versions(packages),
        "hostname": socket.gethostname(),
    }


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                # x86 says "model name"; some ARM kernels only say "Hardware".
                if key.strip() in ("model name", "Hardware") and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _cpu_count() -> int:
    # The affinity mask is what we may actually use (taskset, cgroup cpusets), not the box.
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _gpus() -> list[str] | None:
    # nvidia-smi, not torch: importing torch costs seconds and may initialise CUDA.
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        out = subprocess.run(
            [exe, "--query-gpu=name,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=_NVIDIA_SMI_TIMEOUT_S,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    gpus = [line.strip() for line in out.splitlines() if line.strip()]
    return gpus or None


def _package_versions(packages: Sequence[str]) -> dict[str, str]:
    versions: dict[str, str] = {}
    for name in packages:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def evaluation_environment(command: str, env: Mapping[str, str]) -> dict[str, str] | None:
    """What picks the interpreter and packages the verify command runs, in `env` (the run's
    environment): the variables that choose them (INTERPRETER_VARIABLES) and, when the
    command's program is found, its real path and for a Python its version and prefix (which
    tells one virtualenv from another: they share the base interpreter's real path).

    Covered: a program named on PATH or by an absolute path, after any `cd DIR &&`, `env`,
    `exec` and `NAME=value` words. Not covered, since there is nothing here to resolve: a shell
    builtin or keyword (`source`, `if`), a path relative to the worktree (`./run.sh`,
    `.venv/bin/python`: the worktree's files are the commit's), and what a program starts in
    turn (`bash run.sh`, `uv run ...`): only the variables above then speak for its Python.
    """
    program, env = _command_program(command, env)
    found = {name: env[name] for name in INTERPRETER_VARIABLES if env.get(name)}
    path = _resolve(program, env) if program else None
    if path is not None:
        found["program"] = os.path.realpath(path)
        if _PYTHON_NAME.match(os.path.basename(path)):
            found.update(_python_identity(path, env))
    return found or None


def _command_program(command: str, env: Mapping[str, str]) -> tuple[str | None, dict[str, str]]:
    """The command's program (its first word that runs something) and the environment it is
    looked up in (`env` with the command's own `NAME=value` assignments)."""
    env = dict(env)
    try:
        words = shlex.split(command)
    except ValueError:  # unbalanced quotes: the shell will say so when it runs
        return None, env
    i = 0
    while i < len(words):
        word = words[i]
        if word == "cd":  # `cd DIR && ...` / `cd DIR; ...`: the program comes after
            end = i + 1
            while end < len(words) and words[end] not in ("&&", ";") \
                    and not words[end].endswith(";"):
                end += 1
            if end >= len(words):
                return None, env
            i = end + 1
            continue
        if word in ("env", "exec"):
            i += 1
            continue
        if _ASSIGNMENT.match(word):
            name, _, value = word.partition("=")
            env[name] = string.Template(value).safe_substitute(env)  # `PATH=/x:$PATH`
            i += 1
            continue
        return word, env
    return None, env


def _resolve(program: str, env: Mapping[str, str]) -> str | None:
    """The file `program` runs: looked up on the run's PATH, or an absolute path."""
    if "/" in program:
        return program if os.path.isabs(program) and os.path.isfile(program) else None
    return shutil.which(program, path=env.get("PATH", os.defpath))


# (real path, mtime, size, the interpreter variables) -> the interpreter's identity: probed once
# per process and file, so that a run pays a PATH lookup and a few stat calls for it, and a
# python replaced mid-session is probed again.
_identities: dict[tuple[object, ...], dict[str, str]] = {}
_identities_lock = threading.Lock()
_PROBE = "import sys; print(sys.version.replace(chr(10), ' ')); print(sys.prefix)"


def _python_identity(path: str, env: Mapping[str, str]) -> dict[str, str]:
    """{"python": its sys.version, "prefix": its sys.prefix}; empty when it cannot be run.
    Probed from this process's directory: a pyenv shim reading a `.python-version` in the
    worktree could pick another python there (PYENV_VERSION is covered)."""
    real = os.path.realpath(path)
    try:
        st = os.stat(real)
    except OSError:
        return {}
    key = (real, st.st_mtime_ns, st.st_size, *(env.get(n) for n in INTERPRETER_VARIABLES))
    with _identities_lock:
        if key in _identities:
            return dict(_identities[key])
    try:
        out = subprocess.run([path, "-c", _PROBE], capture_output=True, text=True,
                             timeout=_PROBE_TIMEOUT_S, env=dict(env), check=True,
                             stdin=subprocess.DEVNULL).stdout.splitlines()
        identity = {"python": out[0].strip(), "prefix": out[1].strip()}
    except (OSError, subprocess.SubprocessError, IndexError):
        identity = {}
    with _identities_lock:
        _identities[key] = identity
    return dict(identity)


def comparable_key(fp: Mapping[str, Any]) -> str:
    """A short stable hash of the fields that must match for measurements to be compared."""
    subset = {name: fp.get(name) for name in COMPARABLE_FIELDS
              if name not in _OPTIONAL_FIELDS or fp.get(name) is not None}
    blob = json.dumps(subset, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def describe_difference(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    """Human-readable lines for each comparable field that differs, e.g. "cpu_count: 2 -> 8"."""
    lines: list[str] = []
    for name in COMPARABLE_FIELDS:
        left, right = a.get(name), b.get(name)
        if left == right:
            continue
        if isinstance(left, Mapping) or isinstance(right, Mapping):
            lines.extend(_mapping_difference(name, left or {}, right or {}))
        else:
            lines.append(f"{name}: {_show(left)} -> {_show(right)}")
    return lines


def _mapping_difference(name: str, left: Mapping[str, Any], right: Mapping[str, Any]) -> list[str]:
    return [
        f"{name}.{key}{_as_variable(key)}: {_show(left.get(key))} -> {_show(right.get(key))}"
        for key in sorted(set(left) | set(right))
        if left.get(key) != right.get(key)
    ]


def _as_variable(key: str) -> str:
    """What an interpreter variable is, said ("evaluation.PYENV_VERSION" alone read as a field
    of the config): it comes from the shell that started autoresearch."""
    return (" (an environment variable of the shell that started autoresearch)"
            if key in INTERPRETER_VARIABLES else "")


def _show(value: Any) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, list | tuple):
        return "; ".join(str(v) for v in value) or "(none)"
    return str(value)
