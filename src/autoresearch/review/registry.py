"""Reviewers by name, through the `autoresearch.reviewers` entry-point group.

The built-ins register there (pyproject.toml) exactly as a plugin would:

    [project.entry-points."autoresearch.reviewers"]
    mine = "my_package.review:MyReviewer"     # a Reviewer or LLMReviewer subclass
"""

from __future__ import annotations

import difflib
from importlib.metadata import entry_points

from autoresearch.errors import ConfigError
from autoresearch.review.reviewers.base import Reviewer

GROUP = "autoresearch.reviewers"
# The order reviewers are listed and planned in: offline first (cheap, certain), then the angles.
BUILTIN_ORDER = ("ruff", "bandit", "mypy", "history", "logic", "security", "regression", "rules")


def load_reviewers() -> dict[str, Reviewer]:
    """Every registered reviewer, instantiated, built-ins first in their order."""
    found: dict[str, Reviewer] = {}
    for ep in entry_points(group=GROUP):
        try:
            cls = ep.load()
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not take the rest down
            raise ConfigError(f"the reviewer plugin {ep.name!r} ({ep.value}) cannot be loaded: "
                              f"{exc}", where=f"entry point {GROUP}",
                              fix="reinstall or uninstall the package that provides it") from None
        if not (isinstance(cls, type) and issubclass(cls, Reviewer)):
            raise ConfigError(f"the reviewer plugin {ep.name!r} ({ep.value}) is not a Reviewer",
                              where=f"entry point {GROUP}",
                              fix="subclass autoresearch.review.reviewers.base.Reviewer")
        found[ep.name] = cls()
    order = {name: i for i, name in enumerate(BUILTIN_ORDER)}
    return dict(sorted(found.items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0])))


def select(available: dict[str, Reviewer], names: list[str] | tuple[str, ...],
           where: str) -> list[Reviewer]:
    chosen: list[Reviewer] = []
    for name in names:
        if name not in available:
            near = difflib.get_close_matches(name, list(available), n=1)
            raise ConfigError(
                f"unknown reviewer {name!r}", where=where,
                fix=(f"did you mean {near[0]!r}? " if near else "")
                + f"the reviewers are: {', '.join(available)}")
        chosen.append(available[name])
    return chosen
