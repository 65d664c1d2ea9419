"""fingerprint: what a measurement's environment was, and whether two are comparable."""

from __future__ import annotations

import os
import platform
import stat
from pathlib import Path

import pytest

from autoresearch import fingerprint
from autoresearch.fingerprint import (
    COMPARABLE_FIELDS,
    comparable_key,
    describe_difference,
    environment_fingerprint,
)


def test_fingerprint_contents() -> None:
    fp = environment_fingerprint()
    assert fp["cpu_count"] >= 1 and isinstance(fp["cpu_model"], str) and fp["cpu_model"]
    assert fp["os_system"] == platform.system()
    assert fp["machine"] == platform.machine()
    assert fp["python_version"] == platform.python_version()
    assert fp["packages"]["autoresearch"]  # installed in the dev venv
    assert "hostname" in fp
    assert set(COMPARABLE_FIELDS) - {"evaluation"} <= set(fp)  # with a command only
    assert "hostname" not in COMPARABLE_FIELDS


def test_missing_packages_are_omitted() -> None:
    fp = environment_fingerprint(("pytest", "surely-not-installed-pkg-xyz"))
    assert list(fp["packages"]) == ["pytest"]


def test_cached_and_callers_cannot_corrupt_the_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    environment_fingerprint()

    def not_again(*_: object) -> None:
        raise AssertionError("the machine was described again: not cached")

    # Cached means not looked at again (rather than "fast": a loaded machine can stall any call
    # for longer than the look takes).
    for name in ("_cpu_model", "_cpu_count", "_gpus", "_package_versions"):
        monkeypatch.setattr(fingerprint, name, not_again)
    fp = environment_fingerprint()
    fp["packages"]["torch"] = "tampered"
    fp["cpu_count"] = -1
    again = environment_fingerprint()
    assert again["cpu_count"] != -1 and again["packages"].get("torch") != "tampered"


def test_gpu_from_nvidia_smi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "nvidia-smi"
    fake.write_text(
        "#!/bin/sh\necho 'NVIDIA H100 80GB HBM3, 81559 MiB'\necho 'NVIDIA H100 80GB HBM3, 81559 MiB'\n"
    )
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    assert fingerprint._gpus() == ["NVIDIA H100 80GB HBM3, 81559 MiB"] * 2
    fake.write_text("#!/bin/sh\nexit 9\n")  # driver not loaded
    assert fingerprint._gpus() is None
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert fingerprint._gpus() is None


def test_comparable_key_ignores_hostname_and_commit() -> None:
    fp = environment_fingerprint()
    key = comparable_key(fp)
    assert len(key) == 16 and key == comparable_key(dict(fp))
    assert comparable_key({**fp, "hostname": "elsewhere", "commit": "abc"}) == key
    assert comparable_key({**fp, "cpu_count": fp["cpu_count"] + 1}) != key
    packages = {**fp["packages"], "torch": "0.0.1"}
    assert comparable_key({**fp, "packages": packages}) != key
    # Key order in the packages mapping must not matter.
    reordered = dict(reversed(list(fp["packages"].items())))
    assert comparable_key({**fp, "packages": reordered}) == key


def test_describe_difference() -> None:
    a = {
        "cpu_count": 2,
        "gpu": None,
        "packages": {"torch": "2.3.0", "numpy": "2.0"},
        "hostname": "a",
    }
    b = {"cpu_count": 8, "gpu": ["H100, 80 GiB"], "packages": {"torch": "2.4.0"}, "hostname": "b"}
    assert describe_difference(a, b) == [
        "cpu_count: 2 -> 8",
        "gpu: (none) -> H100, 80 GiB",
        "packages.numpy: 2.0 -> (none)",
        "packages.torch: 2.3.0 -> 2.4.0",
    ]
    assert describe_difference(a, a) == []
    # An interpreter variable is said to be one (it read as a field of the config).
    shell = {"evaluation": {"program": "/v/bin/python", "PYENV_VERSION": "3.11"}}
    assert describe_difference(shell, {"evaluation": {"program": "/v/bin/python"}}) == [
        "evaluation.PYENV_VERSION (an environment variable of the shell that started "
        "autoresearch): 3.11 -> (none)"]


def test_the_evaluation_interpreter_is_the_commands_program_on_the_runs_path(
        tmp_path: Path) -> None:
    """`cd DIR &&`, `env`, `exec` and NAME=value words are skipped; PATH set in the command
    is the one used; a program nobody can resolve leaves only the variables."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    tool = bin_dir / "mytool"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    env = {"PATH": "/nonexistent", "PYTHONPATH": "/p"}
    found = fingerprint.evaluation_environment(
        f"cd sub && A=1 env PATH={bin_dir}:$PATH exec mytool --x", env)
    assert found == {"PYTHONPATH": "/p", "program": str(tool.resolve())}
    assert fingerprint.evaluation_environment("./run.sh", env) == {"PYTHONPATH": "/p"}
    assert fingerprint.evaluation_environment("source x && y", {"PATH": "/nonexistent"}) is None
    fp = environment_fingerprint()
    # A fingerprint without the evaluation's part keeps the key it had.
    assert comparable_key(fp) == comparable_key({**fp, "evaluation": None})
    assert comparable_key({**fp, "evaluation": found}) != comparable_key(fp)
