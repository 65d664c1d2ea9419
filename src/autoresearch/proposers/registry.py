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
        return _started(cls, name, config), why
    eps = {ep.name: ep for ep in entry_points(group=GROUP)}
    if name not in eps:
        raise ConfigError(
            f"unknown proposer {name!r}",
            where="autoresearch.toml → proposer.name",
            fix=f"use one of: auto, {', '.join(sorted(eps))} (or install the plugin that provides it)",
        )
    where = f"entry point {name!r} = {eps[name].value!r} (group {GROUP})"
    try:
        cls = eps[name].load()
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - any error in a plugin's module is the plugin's, sys.exit() included
        raise ConfigError(f"cannot load proposer {name!r}: {_said(exc)}", where=where,
                          fix="fix or reinstall the plugin that provides it, or choose another "
                              "proposer in autoresearch.toml → proposer.name") from None
    if not (isinstance(cls, type) and issubclass(cls, Proposer)):
        raise ConfigError(f"entry point {name!r} ({eps[name].value}) is not a Proposer subclass",
                          where=f"entry-point group {GROUP}")
    if name in BUILTIN:
        return cls(config, config.proposer.options), why
    check_options(name, config.proposer.options, cls.known_options)
    return _started(cls, name, config), why


def _said(exc: BaseException) -> str:
    """An exception as one line: its type, and for a syntax error the file and line."""
    if isinstance(exc, SyntaxError) and exc.filename:
        return f"SyntaxError: {exc.msg} ({exc.filename}, line {exc.lineno})"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _started(cls: type[Proposer], name: str, config: Config) -> Proposer:
    """A plugin's proposer made from the config: an error in its constructor is the plugin's,
    told as such, not a traceback (one it raises as a ConfigError is told as it wrote it)."""
    try:
        return cls(config, config.proposer.options)
    except ConfigError:
        raise
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - any error in a plugin's constructor
        raise ConfigError(
            f"proposer {name!r} failed to start: {_said(exc)}",
            where=f"{cls.__module__}.{cls.__qualname__}(config, options), from "
                  "autoresearch.toml → proposer.name and the [proposer] options",
            fix="check the options in [proposer] against what the plugin expects, or fix the "
                "plugin",
        ) from None


def _from_import_path(spec: str) -> type[Proposer]:
    """`package.module:ClassName`: a proposer used without packaging it as a plugin."""
    module_name, _, attr = spec.partition(":")
    where = "autoresearch.toml → proposer.name"
    if not module_name or not attr:
        raise ConfigError(f"proposer {spec!r} names no {'module' if not module_name else 'class'}",
                          where=where, fix='write it as "package.module:ClassName"')
    try:
        module = importlib.import_module(module_name)
        cls = getattr(module, attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(
            f"cannot load proposer {spec!r}: {exc}", where=where,
            fix="check the module is importable (PYTHONPATH) and the class name is right",
        ) from None
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - any error while its module runs is the plugin's
        raise ConfigError(f"cannot load proposer {spec!r}: importing {module_name} failed with "
                          f"{_said(exc)}", where=where,
                          fix=f"fix the error in {module_name}, or choose another proposer") from None
    if not (isinstance(cls, type) and issubclass(cls, Proposer)):
        raise ConfigError(f"{spec!r} is not a Proposer subclass", where=where)
    return cls
