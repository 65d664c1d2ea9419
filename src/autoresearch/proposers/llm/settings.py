"""The `[proposer]` options of the `llm` proposer, resolved against the environment.

Keys come from the environment only (never from autoresearch.toml, which is committed). The
provider is taken from `provider`, else guessed from what is configured: a `base_url`, then the
first of ANTHROPIC_API_KEY / ANTHROPIC_BASE_URL, OPENAI_API_KEY / OPENAI_BASE_URL and
OPENROUTER_API_KEY found in the environment (`detect_from_env`, which `proposer = "auto"` uses
too, so the message it prints names the variable that decides).

    provider = "anthropic" | "openai"          the two wire protocols
             | "ollama" | "vllm" | "llamacpp" | "lmstudio" | "openrouter"
                                               OpenAI-compatible, with their usual base URL

`temperature` is sent only when it is set: current models (Claude Sonnet 5 and later, GPT-6 at
any reasoning effort but none) reject a non-default temperature with HTTP 400.

Every option is checked here, when the config is loaded (`check`, and `run` before anything is
recorded): a value of the wrong type or out of range is a ConfigError (exit 2) naming the option,
what it holds, what it may hold and how to write it. A value the session would otherwise
misread is the reason: a base_url without http:// that the SDK can never connect to (the session
pausing for ever), a prompt_caching = "false" read as true, a max_retries of -1 that makes no call
at all. The numbers, flags and typed options are declared with their types and ranges in a
pydantic model (option_values.ProviderOptionValues), as the config's own tables are (config_sections.py), and
the error is worded from the declaration.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

from autoresearch.errors import ConfigError
from autoresearch.proposers.llm.option_values import (
    WHERE,
    ProviderOptionValues,
    shown_value,
    validated,
)

# Current models confirmed on the providers' model pages on 2026-12-02.
DEFAULT_MODELS = {"anthropic": "claude-sonnet-5-5", "openai": "gpt-6.2-sol"}

# OpenAI-compatible servers: (default base URL, environment variable holding the key or None).
COMPATIBLE: dict[str, tuple[str, str | None]] = {
    "ollama": ("http://localhost:11434/v1", None),
    "vllm": ("http://localhost:8000/v1", None),
    "llamacpp": ("http://localhost:8080/v1", None),
    "lmstudio": ("http://localhost:1234/v1", None),
    "openrouter": ("https://openrouter.ai/api/v1", "OPENROUTER_API_KEY"),
}


# The environment variables that configure a model API, in the order they are tried, with the
# provider each one selects.
ENV_PROVIDERS: tuple[tuple[str, str], ...] = (
    ("ANTHROPIC_API_KEY", "anthropic"),
    ("ANTHROPIC_BASE_URL", "anthropic"),
    ("OPENAI_API_KEY", "openai"),
    ("OPENAI_BASE_URL", "openai"),
    ("OPENROUTER_API_KEY", "openrouter"),
)


def detect_from_env(env: Mapping[str, str]) -> tuple[str, str] | None:
    """(variable, provider) for the first model API the environment configures, or None."""
    for var, provider in ENV_PROVIDERS:
        if env.get(var):
            return var, provider
    return None


# --- checking the options' values ------------------------------------------------------------

# An environment variable's name, as a shell's `export NAME=...` takes it.
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# How API keys begin: Anthropic's and OpenAI's (and OpenRouter's sk-or-), Groq's, xAI's, Hugging
# Face's, Google's. A variable is never named so.
_KEY_PREFIXES = ("sk-", "sk_", "gsk_", "xai-", "hf_", "AIza")
# A request field's name: max_tokens_field is written into the JSON body under it.
_FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Fields every request already carries: a token limit written over them would break the request.
_REQUEST_FIELDS = frozenset({"model", "messages", "system", "stream"})


def looks_like_key(value: str) -> bool:
    """Whether an api_key_env value is an API key pasted where the variable's name belongs: it
    begins like a key, or it is long (32+ characters) with no underscore, as a key is and a
    variable's name hardly ever is (ANTHROPIC_API_KEY, MY_OPENROUTER_KEY)."""
    text = value.strip()
    return text.startswith(_KEY_PREFIXES) or (len(text) >= 32 and "_" not in text)


def checked_base_url(value: str, where: str, write: str) -> str:
    """A base URL the SDKs can connect to: http:// or https://, a host, a numeric port. Without
    a scheme the SDK fails every call as a "connection error", which the session would take for
    an outage and wait on for ever. `write` is how the fix writes a URL ({url}: a TOML line or
    an `export`)."""
    text = value.strip()
    parts = urlsplit(text)
    if parts.scheme in ("http", "https") and parts.hostname:
        try:
            parts.port  # noqa: B018 - it raises ValueError for a port that is not a number
        except ValueError:
            raise ConfigError(f"base_url {value!r} has a port that is not a number from 0 to "
                              "65535", where=where,
                              fix=write.format(url="http://HOST:PORT/v1") + " (PORT a number "
                              "from 0 to 65535)") from None
        return text
    if (typo := re.match(r"(?i)(https?):/*(?!/)", text)) and "://" not in text:
        # `http:/host:8000/v1`, `http:host`: the scheme is there, a slash or two are not.
        problem = "its scheme is not followed by //"
        fix = (write.format(url=f"{typo[1].lower()}://{text[typo.end():]}")
               + " (the form is http://HOST:PORT/v1, or https://...)")
    elif "://" not in text:
        problem = "it has no http:// or https:// in front"
        fix = (write.format(url="http://" + text.lstrip("/"))
               + " (the form is http://HOST:PORT/v1, or https://...)")
    else:
        problem = ("it names no host" if parts.scheme in ("http", "https") else
                   f"its scheme is {parts.scheme!r}, not http or https")
        fix = write.format(url="http://HOST:PORT/v1") + " (or https://...)"
    raise ConfigError(f"base_url {value!r} is not a URL the API can be reached at: {problem}",
                      where=where, fix=fix)


def checked_key_env(value: object) -> str:
    """The name of the variable that holds the key; never the key itself, which is refused
    without being printed (the error lands in terminals, logs and CI output)."""
    where = f"{WHERE} api_key_env"
    if not isinstance(value, str):
        raise ConfigError(f"[proposer] api_key_env = {shown_value(value)}: expected the name of an "
                          "environment variable", where=where,
                          fix='write api_key_env = "NAME" (e.g. "OPENROUTER_API_KEY")')
    name = value.strip()
    if looks_like_key(name):
        raise ConfigError(
            f"[proposer] api_key_env holds what looks like an API key ({len(name)} characters, "
            "not shown), not the name of an environment variable",
            where=where,
            fix='keys are read from the environment only: export the key under a name (export '
                'MY_API_KEY=...), write that name (api_key_env = "MY_API_KEY"), and remove the key '
                "from autoresearch.toml (and from git's history, if it was committed)",
        )
    if not _ENV_NAME.fullmatch(name):
        raise ConfigError(
            f"[proposer] api_key_env = {json.dumps(value)} is not an environment variable's name "
            "(letters, digits and _, not starting with a digit)",
            where=where, fix='write the variable\'s name, e.g. api_key_env = "OPENROUTER_API_KEY"')
    return name


def checked_tokens_field(value: object) -> str:
    """The request field the token limit goes in (max_tokens_field)."""
    where = f"{WHERE} max_tokens_field"
    example = 'e.g. max_tokens_field = "max_tokens", or "n_predict" for an older llama.cpp server'
    if not isinstance(value, str) or not _FIELD_NAME.fullmatch(value):
        raise ConfigError(f"[proposer] max_tokens_field = {shown_value(value)}: expected the name of "
                          "the request field that carries the reply's token limit (letters, "
                          "digits and _)", where=where, fix=f"write the field's name ({example}), "
                          "or remove the line for the default")
    if value in _REQUEST_FIELDS:
        raise ConfigError(f"[proposer] max_tokens_field = {json.dumps(value)} names a field every "
                          "request already carries", where=where,
                          fix=f"write the field that carries the token limit ({example})")
    return value


@dataclass(frozen=True)
class ProviderSettings:
    provider: Literal["anthropic", "openai"]
    model: str
    base_url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    api_key_env: str = "ANTHROPIC_API_KEY"
    label: str = "anthropic"
    temperature: float | None = None
    max_tokens: int = 8192
    timeout_seconds: float = 300.0
    max_retries: int = 5
    retry_base_seconds: float = 2.0
    retry_max_seconds: float = 60.0
    outage_retry_after: float | None = None  # None: the session's own pause schedule
    max_tokens_field: str = "max_tokens"
    prompt_caching: bool = True
    extra_body: Mapping[str, Any] = field(default_factory=dict)
    api_key_set: bool = True  # False: the key variable was not set (a local server needs none)

    @property
    def is_metered(self) -> bool:
        """Tokens cost money here (an official API or a paid router), so a missing price matters."""
        return self.is_official or self.label == "openrouter"

    @property
    def is_official(self) -> bool:
        """Talking to Anthropic's or OpenAI's own API (where tokens cost money)."""
        if self.base_url is None:
            return True
        return "api.anthropic.com" in self.base_url or "api.openai.com" in self.base_url

    def describe(self) -> str:
        where = f" at {self.base_url}" if self.base_url else ""
        return f"{self.label} model {self.model}{where}"

    def base_url_advice(self) -> str:
        """What a base URL of this protocol looks like. The Anthropic SDK adds /v1/messages to
        it, so an Anthropic base URL ending in /v1 asks for /v1/v1/messages (a 404); the OpenAI
        SDK adds only /chat/completions, so its base URL usually ends in /v1."""
        if self.provider == "openai":
            return "an OpenAI-compatible server's usually ends in /v1"
        if (self.base_url or "").rstrip("/").endswith("/v1"):
            return ("an Anthropic base URL must not end in /v1, which the SDK adds itself: "
                    "remove the /v1")
        return "an Anthropic base URL must not end in /v1: the SDK adds /v1/messages itself"

    def fix_hint(self, status: int | None = None) -> str:
        """How to fix a fatal error; a 404 is about the model (or the URL), not the key."""
        if status == 404:
            return (
                f"set [proposer] model to a model this endpoint serves (now model = "
                f"{self.model!r}), and check base_url (now {self.base_url!r}; "
                f"{self.base_url_advice()})"
            )
        return (
            f"check {self.api_key_env} in the environment, and model/base_url in [proposer] "
            f"(now model = {self.model!r}, base_url = {self.base_url!r})"
        )

    @classmethod
    def from_options(cls, options: Mapping[str, Any], env: Mapping[str, str]) -> ProviderSettings:
        values = validated(ProviderOptionValues, options)
        raw_provider = str(options.get("provider") or "").strip().lower()
        base_url = values.base_url
        if base_url:
            base_url = checked_base_url(base_url, f"{WHERE} base_url", 'write base_url = "{url}"')
        label = raw_provider or ""
        key_env = options.get("api_key_env")
        if key_env is not None:
            key_env = checked_key_env(key_env)
        if raw_provider in ("anthropic", "claude"):
            provider: Literal["anthropic", "openai"] = "anthropic"
            label = "anthropic"
        elif raw_provider in ("openai", "openai-compatible"):
            provider = "openai"
            label = "openai"
        elif raw_provider in COMPATIBLE:
            provider = "openai"
            default_url, default_key_env = COMPATIBLE[raw_provider]
            base_url = base_url or default_url
            key_env = key_env or default_key_env
        elif raw_provider:
            raise ConfigError(
                f"unknown LLM provider {raw_provider!r}",
                where=f"{WHERE} provider",
                fix="use anthropic, openai, ollama, vllm, llamacpp, lmstudio or openrouter",
            )
        elif base_url:
            provider = "anthropic" if "anthropic" in base_url else "openai"
            label = provider
        elif (found := detect_from_env(env)) is not None:
            label = found[1]
            if label == "openrouter":
                provider = "openai"
                default_url, default_key_env = COMPATIBLE["openrouter"]
                base_url = default_url
                key_env = key_env or default_key_env
            else:
                provider = "anthropic" if label == "anthropic" else "openai"
        else:
            raise ConfigError(
                "the llm proposer has no model API configured",
                where=WHERE,
                fix="export ANTHROPIC_API_KEY, OPENAI_API_KEY or OPENROUTER_API_KEY, or set "
                "provider/base_url in [proposer] (e.g. provider = \"ollama\", model = \"qwen3:8b\")",
            )
        if provider == "anthropic":
            key_env = key_env or "ANTHROPIC_API_KEY"
            base_url = base_url or _env_url(env, "ANTHROPIC_BASE_URL")
        else:
            key_env = key_env or "OPENAI_API_KEY"
            base_url = base_url or _env_url(env, "OPENAI_BASE_URL")
        if label == "openai" and base_url and "api.openai.com" not in base_url:
            label = "openai-compatible"
        api_key = env.get(str(key_env)) if key_env else None
        api_key_set = bool(api_key)
        official = base_url is None or "api.anthropic.com" in base_url or "api.openai.com" in base_url
        if not api_key:
            if official:
                raise ConfigError(
                    f"{key_env} is not set",
                    where="the environment",
                    fix=f"export {key_env}=... (keys are read from the environment only)",
                )
            api_key = "not-needed"  # local servers ignore it, but the SDKs insist on one
        model = options.get("model")
        if not model:
            if not official:
                if provider == "anthropic":
                    kind, example = "Anthropic-compatible", DEFAULT_MODELS["anthropic"]
                else:
                    kind = "OpenAI-compatible"
                    example = "anthropic/claude-sonnet-5.5" if label == "openrouter" else "qwen3:8b"
                raise ConfigError(
                    f"no model named for the {kind} server at {base_url}",
                    where=f"{WHERE} model",
                    fix=f'name the model the server serves, e.g. model = "{example}"',
                )
            model = DEFAULT_MODELS[provider]
        field_default = "max_completion_tokens" if provider == "openai" and official else "max_tokens"
        if provider == "anthropic":
            refuse_a_token_field_for_anthropic(options, env)
        return cls(
            provider=provider,
            model=str(model),
            base_url=base_url,
            api_key=api_key,
            api_key_env=str(key_env),
            label=label,
            temperature=values.temperature,
            max_tokens=values.max_tokens,
            timeout_seconds=values.timeout_seconds,
            max_retries=values.max_retries,
            retry_base_seconds=values.retry_base_seconds,
            retry_max_seconds=values.retry_max_seconds,
            outage_retry_after=values.outage_retry_after,
            max_tokens_field=checked_tokens_field(options.get("max_tokens_field",
                                                              field_default)),
            prompt_caching=values.prompt_caching,
            extra_body=dict(values.extra_body),
            api_key_set=api_key_set,
        )


def refuse_a_token_field_for_anthropic(options: Mapping[str, Any],
                                       env: Mapping[str, str]) -> None:
    """Anthropic's Messages API takes the reply's limit in one field, max_tokens, which the SDK
    requires: another max_tokens_field would be sent nowhere, and the limit the user thought
    they moved (an older proxy's n_predict, say) would stay in max_tokens without a word."""
    written = options.get("max_tokens_field")
    if written is None or written == "max_tokens":
        return
    raw = str(options.get("provider") or "").strip()
    found = detect_from_env(env)
    why = (f' (provider = "{raw}")' if raw else
           ' (its base_url contains "anthropic")' if options.get("base_url") else
           f" ({found[0]} is set in the environment)" if found is not None else "")
    raise ConfigError(
        f"[proposer] max_tokens_field = {shown_value(written)} cannot be used with the anthropic "
        f"provider{why}: Anthropic's Messages API takes the reply's token limit in max_tokens "
        "only",
        where=f"{WHERE} max_tokens_field",
        fix="remove the max_tokens_field line (set the limit with max_tokens = N); if the "
            "server speaks OpenAI's protocol instead, set provider = \"openai\"",
    )


def _env_url(env: Mapping[str, str], var: str) -> str | None:
    """The base URL an environment variable sets (checked like base_url), or None."""
    value = env.get(var)
    if not value:
        return None
    return checked_base_url(value, f"the environment → {var}", f"export {var}={{url}}")
