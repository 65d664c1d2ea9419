"""Everything a reviewer may read during one review, computed once and shared by all of them.

Reviewers run in parallel threads, so the shared pieces that cost something (the head files
written out for the analyzers, the git history of the touched files, the REVIEW.md rules, the
model client) are built on first use under a lock.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from autoresearch.review.budget import REVIEW_MAX_USD, Budget, CapSource
from autoresearch.review.change import Change
from autoresearch.review.diff import ChangedFile
from autoresearch.review.history import History
from autoresearch.review.protected import DEFAULT_PROTECTED, withheld_files
from autoresearch.review.rules import RulesFile, collect_rules

if TYPE_CHECKING:
    from autoresearch.proposers.llm.providers import Provider
    from autoresearch.review.llm_setup import LLMSetup


@dataclass(frozen=True)
class ReviewSettings:
    """One review's resolved settings (from `[review]` and the command line)."""

    reviewers: tuple[str, ...] | None = None  # named reviewers; None: the scale rule chooses
    llm: LLMSetup | None = None
    llm_note: str = ""
    max_usd: float | None = 1.0
    max_usd_source: CapSource = REVIEW_MAX_USD  # the setting max_usd comes from
    inline_cap: int = 10
    history_commits: int = 500
    tool_timeout_s: float = 300.0
    parallel: int = 4
    # Globs of the files whose content no model prompt may carry (protected.py).
    protected: tuple[str, ...] = DEFAULT_PROTECTED


class Workspace:
    """Head-revision files written to a temporary directory, for analyzers that read files."""

    def __init__(self, change: Change) -> None:
        self._change = change
        self._lock = threading.Lock()
        self._dir: Path | None = None
        self._written: set[str] = set()

    def materialize(self, paths: Iterable[str]) -> Path:
        """Write the given head files (those that exist) and return the directory holding them."""
        with self._lock:
            if self._dir is None:
                self._dir = Path(tempfile.mkdtemp(prefix="autoresearch-review-"))
            wanted = [p for p in dict.fromkeys(paths) if p not in self._written and _safe(p)]
            source = self._change.source
            source.prefetch(head=wanted)
            for path in wanted:
                text = source.head_text(path)
                self._written.add(path)
                if text is None:
                    continue
                target = self._dir / path
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(text, encoding="utf-8")
            return self._dir

    def close(self) -> None:
        with self._lock:
            if self._dir is not None:
                shutil.rmtree(self._dir, ignore_errors=True)
                self._dir = None
                self._written.clear()


def _safe(path: str) -> bool:
    """A repository-relative path that stays inside the workspace."""
    parts = PurePosixPath(path).parts
    return bool(parts) and not PurePosixPath(path).is_absolute() and ".." not in parts


class ReviewContext:
    def __init__(self, change: Change, settings: ReviewSettings, budget: Budget) -> None:
        self.change = change
        self.settings = settings
        self.budget = budget
        self.workspace = Workspace(change)
        self._lock = threading.Lock()
        self._history: History | None = None
        self._rules: list[RulesFile] | None = None
        self._providers: dict[str, Provider] = {}
        # Changed files no prompt may carry (path -> why): protected, or renamed from one.
        self.withheld = withheld_files(change.files, settings.protected)

    @property
    def model_files(self) -> list[ChangedFile]:
        """The reviewable files a model may be shown (the protected ones left out)."""
        return [f for f in self.change.reviewable if f.path not in self.withheld]

    @property
    def history(self) -> History:
        with self._lock:
            if self._history is None:
                paths = sorted({p for f in self.change.files
                                for p in (f.old_path, f.path) if p})
                self._history = History(self.change.root, self.change.source.base_rev, paths,
                                        self.settings.history_commits)
            return self._history

    @property
    def rules(self) -> list[RulesFile]:
        with self._lock:
            if self._rules is None:
                self._rules = collect_rules(self.change.source,
                                            [f.path for f in self.change.reviewable])
            return self._rules

    def provider(self, model: str | None = None) -> Provider:
        """The client for the review's model (or another model of the same endpoint)."""
        from autoresearch.proposers.llm.providers import make_provider

        setup = self.settings.llm
        assert setup is not None, "LLM reviewers need an LLM setup"
        name = model or setup.settings.model
        with self._lock:
            if name not in self._providers:
                self._providers[name] = make_provider(
                    replace(setup.settings, model=name), setup.prices)
            return self._providers[name]

    def close(self) -> None:
        self.workspace.close()
        with self._lock:
            for provider in self._providers.values():
                provider.close()
            self._providers.clear()
