"""The `[proposer]` options each built-in proposer understands, so a typo is an error.

`[proposer]` passes every key but `name` to the proposer, so a misspelt option (`temprature`)
would otherwise be silently ignored and the run would use the default. The sets live here, apart
from the proposers, so checking them imports neither Optuna nor an SDK. Under `proposer = "auto"`
one file may serve both the offline sampler and an LLM (whichever the environment picks), so the
options of both are accepted there. The config loader checks the built-ins' options; the registry
checks a plugin's against its `known_options` (a plugin that declares none is not checked).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Any

from autoresearch.errors import ConfigError

TUNE_OPTIONS = frozenset({"sampler", "seed", "n_startup_trials", "start", "local"})
_COMMON = frozenset({"model", "prices", "context_tokens", "timeout_seconds"})
LLM_OPTIONS = _COMMON | frozenset({
    "provider", "base_url", "api_key_env", "temperature", "max_tokens", "max_tokens_field",
    "max_retries", "retry_base_seconds", "retry_max_seconds", "outage_retry_after",
    "prompt_caching", "extra_body", "max_edit_retries",
})
AGENT_OPTIONS = _COMMON | frozenset({
    "agent", "preset", "command", "executable", "extra_args", "agent_timeout_seconds", "env",
})
AUTO_OPTIONS = TUNE_OPTIONS | LLM_OPTIONS
BUILTIN = {"auto": AUTO_OPTIONS, "tune": TUNE_OPTIONS, "llm": LLM_OPTIONS, "agent": AGENT_OPTIONS}


def check_builtin_options(name: str, options: Mapping[str, Any],
                          source: str = "autoresearch.toml") -> None:
    """At config load, before anything is recorded: the options of a built-in proposer."""
    if name in BUILTIN:
        check_options("auto (tune or llm)" if name == "auto" else name, options, BUILTIN[name],
                      source)


def check_options(proposer: str, options: Mapping[str, Any], known: Iterable[str] | None,
                  source: str = "autoresearch.toml") -> None:
    """Refuse options the proposer does not know, suggesting the nearest known name."""
    if known is None:
        return
    allowed = sorted(set(known))
    for key in options:
        if key in allowed:
            continue
        near = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
        fix = (f"did you mean {near[0]!r}? " if near else "") + (
            f"the {proposer} proposer's options are: {', '.join(allowed)}")
        raise ConfigError(f"unknown [proposer] option {key!r} for the {proposer} proposer",
                          where=f"{source} → proposer.{key}", fix=fix)
