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
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from autoresearch.errors import ConfigError

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

WHERE = "autoresearch.toml → [proposer]"

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

    def fix_hint(self, status: int | None = None) -> str:
        """How to fix a fatal error; a 404 is about the model (or the URL), not the key."""
        if status == 404:
            return (
                f"set [proposer] model to a model this endpoint serves (now model = "
                f"{self.model!r}), and check base_url (now {self.base_url!r}; an OpenAI-compatible "
                "server's usually ends in /v1)"
            )
        return (
            f"check {self.api_key_env} in the environment, and model/base_url in [proposer] "
            f"(now model = {self.model!r}, base_url = {self.base_url!r})"
        )

    @classmethod
    def from_options(cls, options: Mapping[str, Any], env: Mapping[str, str]) -> ProviderSettings:
        raw_provider = str(options.get("provider") or "").strip().lower()
        base_url = options.get("base_url")
        if base_url is not None and not isinstance(base_url, str):
            raise ConfigError("base_url must be a string", where=f"{WHERE} base_url")
        label = raw_provider or ""
        key_env = options.get("api_key_env")
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
            base_url = base_url or env.get("ANTHROPIC_BASE_URL") or None
        else:
            key_env = key_env or "OPENAI_API_KEY"
            base_url = base_url or env.get("OPENAI_BASE_URL") or None
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
        extra = options.get("extra_body") or {}
        if not isinstance(extra, Mapping):
            raise ConfigError("extra_body must be a table", where=f"{WHERE} extra_body")
        try:
            temperature = options.get("temperature")
            return cls(
                provider=provider,
                model=str(model),
                base_url=base_url,
                api_key=api_key,
                api_key_env=str(key_env),
                label=label,
                temperature=None if temperature is None else float(temperature),
                max_tokens=int(options.get("max_tokens", 8192)),
                timeout_seconds=float(options.get("timeout_seconds", 300.0)),
                max_retries=int(options.get("max_retries", 5)),
                retry_base_seconds=float(options.get("retry_base_seconds", 2.0)),
                retry_max_seconds=float(options.get("retry_max_seconds", 60.0)),
                outage_retry_after=(
                    None if options.get("outage_retry_after") is None
                    else float(options["outage_retry_after"])
                ),
                max_tokens_field=str(options.get("max_tokens_field", field_default)),
                prompt_caching=bool(options.get("prompt_caching", True)),
                extra_body=dict(extra),
                api_key_set=api_key_set,
            )
        except (TypeError, ValueError) as exc:
            raise ConfigError(
                f"invalid [proposer] option: {exc}",
                where=WHERE,
                fix="numbers for temperature, max_tokens, timeout_seconds, max_retries",
            ) from None
