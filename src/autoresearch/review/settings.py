"""The review's settings for the command line: `[review]` of autoresearch.toml, then the flags.

Only the `[review]` table (and the `[proposer]` options, which LLM reviewers may share) is read,
so a repository that uses `autoresearch review` alone needs no other section, and nothing else
in the file can stop a review.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from autoresearch.config import CONFIG_NAME, ProposerConfig, ReviewConfig
from autoresearch.errors import ConfigError
from autoresearch.review.budget import REVIEW_MAX_USD, CapSource
from autoresearch.review.context import ReviewSettings
from autoresearch.review.llm_setup import resolve_llm
from autoresearch.review.protected import DEFAULT_PROTECTED


def load_review_config(root: Path) -> tuple[ReviewConfig, ProposerConfig]:
    path = root / CONFIG_NAME
    if not path.is_file():
        return ReviewConfig(), ProposerConfig()
    try:
        data: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{CONFIG_NAME} is not valid TOML: {exc}", where=str(path),
                          fix="fix the syntax at the line and column given") from None
    try:
        review = ReviewConfig.model_validate(data.get("review", {}))
        proposer = ProposerConfig.model_validate(data.get("proposer", {}))
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(x) for x in first["loc"])
        raise ConfigError(f"invalid [review] in {CONFIG_NAME}: {field}: "
                          f"{str(first['msg']).removeprefix('Value error, ')}",
                          where=f"{path} → review.{field}",
                          fix="see the [review] keys in docs/review.md") from None
    return review, proposer


def cli_settings(config: ReviewConfig, proposer: ProposerConfig, *,
                 reviewers: list[str] | None, offline: bool, require_llm: bool,
                 max_usd: float | None, inline_cap: int | None,
                 env: Mapping[str, str] | None = None,
                 protected: Sequence[str] = ()) -> ReviewSettings:
    """The settings of one command-line review; `protected`: the research config's protected
    globs, withheld from the model on top of the defaults (protected.py)."""
    llm: bool | dict[str, Any] | None = config.llm
    if offline:
        llm = False
    elif require_llm and llm in (None, False):
        llm = True
    llm_setup, note = resolve_llm(llm, proposer.name, proposer.options,
                                  os.environ if env is None else env, when_unset="auto")
    return ReviewSettings(
        reviewers=tuple(reviewers) if reviewers else (
            tuple(config.reviewers) if config.reviewers else None),
        llm=llm_setup, llm_note=note,
        max_usd=config.max_usd if max_usd is None else max_usd,
        max_usd_source=REVIEW_MAX_USD if max_usd is None else CapSource("--max-usd"),
        inline_cap=config.inline_cap if inline_cap is None else inline_cap,
        history_commits=config.history_commits, tool_timeout_s=config.tool_timeout_seconds,
        protected=(*DEFAULT_PROTECTED, *protected))
