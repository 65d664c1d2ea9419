"""Find proposers by name through the `autoresearch.proposers` entry-point group.

Built-ins register there too (pyproject.toml), so a third-party plugin is installed exactly like
ours: `[project.entry-points."autoresearch.proposers"] mine = "pkg.module:MyProposer"`.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from importlib.metadata import entry_points
from typing import TYPE_CHECKING

from autoresearch.errors import ConfigError
from autoresearch.proposers.base import Proposer
from autoresearch.proposers.llm.settings import COMPATIBLE, ENV_PROVIDERS, detect_from_env
from autoresearch.proposers.options import BUILTIN, check_options

if TYPE_CHECKING:
    from autoresearch.config import Config

GROUP = "autoresearch.proposers"

# Environment variables that mean "an LLM is configured" for proposer = "auto", in the order the
# llm proposer tries them (one list, so the message names the variable that decides).
LLM_ENV_HINTS = tuple(var for var, _ in ENV_PROVIDERS)

_WHAT_IT_CALLS = {
    "ANTHROPIC_API_KEY": "the Anthropic API",
    "ANTHROPIC_BASE_URL": "the Anthropic-compatible server it names",
    "OPENAI_API_KEY": "the OpenAI API (or the server OPENAI_BASE_URL names)",
    "OPENAI_BASE_URL": "the OpenAI-compatible server it names",
    "OPENROUTER_API_KEY": f"OpenRouter (OpenAI-compatible, {COMPATIBLE['openrouter'][0]})",
}


def available() -> dict[str, str]:
    """Registered proposer names and the object each points at."""
    return {ep.name: ep.value for ep in entry_points(group=GROUP)}


def resolve_auto(config: Config, env: Mapping[str, str] | None = None) -> tuple[str, str]:
    """The proposer `auto` stands for, and why: an LLM when one is configured, else `tune`."""
    env = os.environ if env is None else env
    options = config.proposer.options
    if options.get("base_url") or options.get("provider"):
        return "llm", "an LLM endpoint is configured in [proposer]"
    found = detect_from_env(env)
    if found is not None:
        var = found[0]
        return "llm", f"{var} is set: the llm proposer calls {_WHAT_IT_CALLS[var]}"
    return "tune", (
        "no LLM is configured (none of " + ", ".join(LLM_ENV_HINTS) + " is set, and [proposer] "
        "names no provider or base_url), so the offline sampler runs"
    )


def load_proposer(config: Config, env: Mapping[str, str] | None = None) -> tuple[Proposer, str]:
    """Instantiate the configured proposer; returns it with a sentence saying why it was chosen."""
    name = config.proposer.name
    why = f'[proposer] name = "{name}"'
    if name == "auto":
        # The built-ins' options were checked when the config was loaded (proposers/options.py);
        # under auto, those of both tune and llm are accepted, whatever the shell picks.
        name, why = resolve_auto(config, env)
        why = f"proposer auto → {name}: {why}"
    if ":" in name:
        cls = _from_import_path(name)
        check_options(name, config.proposer.options, cls.known_options)
        return cls(config, config.proposer.options), why
    eps = {ep.name: ep for ep in entry_points(group=GROUP)}
    if name not in eps:
        raise ConfigError(
            f"unknown proposer {name!r}",
            where="autoresearch.toml → proposer.name",
            fix=f"use one of: auto, {', '.join(sorted(eps))} (or install the plugin that provides it)",
        )
    cls = eps[name].load()
    if not (isinstance(cls, type) and issubclass(cls, Proposer)):
        raise ConfigError(
            f"entry point {name!r} ({eps[name].value}) is not a Proposer subclass",
            where=f"entry-point group {GROUP}",
        )
    if name not in BUILTIN:
        check_options(name, config.proposer.options, cls.known_options)
    return cls(config, config.proposer.options), why


def _from_import_path(spec: str) -> type[Proposer]:
    """`package.module:ClassName`: a proposer used without packaging it as a plugin."""
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
        cls = getattr(module, attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(
            f"cannot load proposer {spec!r}: {exc}",
            where="autoresearch.toml → proposer.name",
            fix="check the module is importable (PYTHONPATH) and the class name is right",
        ) from None
    if not (isinstance(cls, type) and issubclass(cls, Proposer)):
        raise ConfigError(f"{spec!r} is not a Proposer subclass",
                          where="autoresearch.toml → proposer.name")
    return cls
