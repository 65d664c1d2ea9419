"""The environment a measurement was taken in.

A metric is only comparable to another one taken on the same hardware and software: a
faster CPU or a new torch moves val_bpb under a fixed time budget as much as any idea does.
Every run records this fingerprint; the decision step compares ``comparable_key`` values and
refuses (or flags) comparisons across different environments.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import os
import platform
import shutil
import socket
import subprocess
from collections.abc import Mapping, Sequence
from importlib import metadata
from typing import Any

__all__ = [
    "COMPARABLE_FIELDS",
    "DEFAULT_PACKAGES",
    "comparable_key",
    "describe_difference",
    "environment_fingerprint",
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
)

_NVIDIA_SMI_TIMEOUT_S = 5.0


def environment_fingerprint(packages: Sequence[str] = DEFAULT_PACKAGES) -> dict[str, Any]:
    """Describe this machine and interpreter. Cached per process; returns a fresh copy."""
    return copy.deepcopy(_fingerprint(tuple(packages)))


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


def comparable_key(fp: Mapping[str, Any]) -> str:
    """A short stable hash of the fields that must match for measurements to be compared."""
    subset = {name: fp.get(name) for name in COMPARABLE_FIELDS}
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
        f"{name}.{key}: {_show(left.get(key))} -> {_show(right.get(key))}"
        for key in sorted(set(left) | set(right))
        if left.get(key) != right.get(key)
    ]


def _show(value: Any) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, list | tuple):
        return "; ".join(str(v) for v in value) or "(none)"
    return str(value)
