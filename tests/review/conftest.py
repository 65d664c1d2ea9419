"""Fixtures for the review tests: real git repositories built commit by commit."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from autoresearch.review.change import Change, from_range
from autoresearch.review.context import ReviewSettings
from autoresearch.review.model import Review
from autoresearch.review.pipeline import run_review
from tests.conftest import git
from tests.llm.conftest import llm_options as proposer_llm_options
from tests.llm.fake_server import FakeModelServer


@dataclass
class Repo:
    path: Path

    def write(self, name: str, text: str) -> None:
        target = self.path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(textwrap.dedent(text))

    def commit(self, message: str, **files: str) -> str:
        for name, text in files.items():
            self.write(name.replace("__", "/"), text)
        git(self.path, "add", "-A")
        git(self.path, "commit", "-qm", message)
        return git(self.path, "rev-parse", "HEAD")

    def git(self, *args: str) -> str:
        return git(self.path, *args)

    def branch(self, name: str) -> None:
        git(self.path, "checkout", "-qb", name)

    def change(self, base: str | None = None, head: str | None = None) -> Change:
        return from_range(self.path, base, head)


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    path = tmp_path / "repo"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    return Repo(path)


def offline(**overrides: Any) -> ReviewSettings:
    return ReviewSettings(llm=None, llm_note="offline", **overrides)


def review_offline(change: Change, **overrides: Any) -> Review:
    return run_review(change, offline(**overrides))


def llm_options(server: FakeModelServer, provider: str = "anthropic", **extra: Any) -> dict[str, Any]:
    """The llm tests' options for the fake server, with one retry rather than two."""
    return proposer_llm_options(server, provider, **{"max_retries": 1, **extra})
