"""The README's promises name the tests and benchmarks that back them: each one named exists.

A renamed or deleted test would otherwise leave a promise pointing at nothing.
"""

from __future__ import annotations

import re
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[1]
README = (CHECKOUT / "README.md").read_text(encoding="utf-8")


def defined_tests() -> set[str]:
    pattern = re.compile(r"^\s*(?:async )?def (test_\w+)", re.M)
    return {name for path in (CHECKOUT / "tests").rglob("*.py")
            for name in pattern.findall(path.read_text(encoding="utf-8"))}


def test_every_test_the_readme_names_exists() -> None:
    tests = defined_tests()
    missing = []
    for path, name in re.findall(r"`(tests/[\w/.-]+?)(?:::(\w+))?`", README):
        file = CHECKOUT / path
        if not file.exists():
            missing.append(path)
        elif name and not re.search(rf"def {name}\b", file.read_text(encoding="utf-8")):
            missing.append(f"{path}::{name}")
    # Bare names (`test_…`, or `…_suffix` continuing the test named just before) live in tests/.
    for name in re.findall(r"`(test_\w+)`", README):
        if name not in tests:
            missing.append(name)
    for suffix in re.findall(r"`…(_\w+)`", README):
        if not any(t.endswith(suffix) for t in tests):
            missing.append(f"…{suffix}")
    assert not missing, f"the README names tests that do not exist: {missing}"
    assert len(re.findall(r"`tests/", README)) >= 10  # the promises do name their tests


def test_every_benchmark_the_readme_names_exists() -> None:
    named = set(re.findall(r"`(?:python )?(bench/[\w/.-]+\.py)", README))
    assert named, "the README names no benchmark"
    assert not [b for b in named if not (CHECKOUT / b).exists()]
