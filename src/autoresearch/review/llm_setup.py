"""Which model the LLM reviewers call, resolved the way the llm proposer resolves its own.

The options are the `[proposer]` options of the llm proposer (provider, model, base_url,
api_key_env, prices, max_tokens, ...), read from `[review] llm = { ... }`, else from `[proposer]`
when the proposer is `llm`, else from the environment alone (ANTHROPIC_API_KEY, OPENAI_API_KEY,
... as `detect_from_env` orders them). Keys come from the environment only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from autoresearch.errors import ConfigError
from autoresearch.proposers.llm.option_values import checked_number
from autoresearch.proposers.llm.prices import PriceTable
from autoresearch.proposers.llm.proposer import MIN_CONTEXT_TOKENS
from autoresearch.proposers.llm.settings import ProviderSettings, detect_from_env
from autoresearch.proposers.options import LLM_OPTIONS, check_options

# A reviewer's reply is a list of findings, not a rewritten file: a smaller default output cap.
DEFAULT_MAX_TOKENS = 4096
DEFAULT_CONTEXT_TOKENS = 60_000
REVIEW_ONLY_OPTIONS = frozenset({"verify_model"})
VERIFY_MODEL_FIX = ('write it as a string (verify_model = "claude-haiku-4-5"), or remove it to '
                    "verify with the reviewers' model")


def check_llm_options(options: Mapping[str, Any]) -> None:
    """Refuse a misspelt `[review] llm` option (same names as the llm proposer's)."""
    try:
        check_options("llm", options, LLM_OPTIONS | REVIEW_ONLY_OPTIONS)
    except ConfigError as exc:
        # check_options speaks of [proposer]; the option lives in [review] llm here.
        raise ValueError(f"llm option: {exc.what.replace('[proposer] ', '')} ({exc.fix})") from None


def verify_model_problem(value: object) -> str | None:
    """Why `verify_model` is not a model name (None when it is one, or unset). A number would
    be sent as the model "3", which no API serves: refused here, before any call."""
    if value is None or (isinstance(value, str) and value.strip()):
        return None
    got = f"the blank string {value!r}" if isinstance(value, str) else (
        f"{value!r} ({type(value).__name__})")
    return f"verify_model must be a model name in quotes, got {got}"


@dataclass(frozen=True)
class LLMSetup:
    settings: ProviderSettings
    prices: PriceTable
    context_tokens: int
    verify_model: str | None  # a cheaper model for the verification pass (default: the same)

    @property
    def describe(self) -> str:
        return self.settings.describe()

    @property
    def models(self) -> list[str]:
        """The models the review may call: the reviewers', then the verifier's if another."""
        main = self.settings.model
        return [main] + ([self.verify_model] if self.verify_model not in (None, main) else [])

    def unpriced(self, models: Iterable[str]) -> list[str]:
        """A warning for each of `models` with no known price: its calls count as $0, so the
        review's cap (and a session's max_usd) cannot stop them. The provider warns only where
        tokens surely cost money; a review says it for every endpoint, in the terms of this
        one (a local server is free, a paid endpoint is not), since its cap is only as good as
        its prices."""
        out = []
        for model in dict.fromkeys(models):
            if self.prices.price_for(model) is not None:
                continue
            add = (f'add its price where the model is configured ([review] llm, or [proposer]): '
                   f'prices = {{ "{model}" = {{ input = 3.0, output = 15.0 }} }} (USD per million '
                   "tokens)")
            if self.settings.is_metered:
                out.append(f"no price known for {model}: its calls count as $0, so the review's "
                           f"cap cannot stop them; {add}")
            else:
                out.append(f"no price known for {model} at {self.settings.base_url}, not a paid "
                           "API this knows: its calls count as $0 and the review's cap cannot "
                           f"stop them (a local server costs nothing; if tokens cost money "
                           f"here, {add})")
        return out


def resolve_llm(
    llm: bool | Mapping[str, Any] | None,
    proposer_name: str,
    proposer_options: Mapping[str, Any],
    env: Mapping[str, str],
    *,
    when_unset: Literal["auto", "off"],
) -> tuple[LLMSetup | None, str]:
    """The model setup (or None) and a sentence saying why, for the review's header."""
    if llm is False:
        return None, "LLM reviewers off ([review] llm = false or --offline)"
    if isinstance(llm, Mapping):
        options, why = dict(llm), "[review] llm options"
    elif proposer_name == "llm":
        options, why = dict(proposer_options), "the [proposer] options of the llm proposer"
    else:
        options, why = {}, ""
    if llm is None and not options:
        if when_unset == "off":
            return None, "offline reviewers only ([review] llm is not set)"
        found = detect_from_env(env)
        if found is None:
            return None, ("offline reviewers only: no model API is configured (set "
                          "ANTHROPIC_API_KEY or OPENAI_API_KEY, or [review] llm)")
        why = f"{found[0]} is set"
    elif not why:
        why = "the model the environment configures"
    verify_model = options.pop("verify_model", None)
    problem = verify_model_problem(verify_model)
    if problem is not None:  # `check`, `run` and `review` all resolve it here, before any call
        raise ConfigError(problem, where="autoresearch.toml → review.llm.verify_model",
                          fix=VERIFY_MODEL_FIX)
    options.setdefault("max_tokens", DEFAULT_MAX_TOKENS)
    try:
        settings = ProviderSettings.from_options(options, env)
    except ConfigError as exc:
        def here(text: str | None) -> str | None:  # the options live in [review] llm here
            return None if text is None else text.replace("[proposer]", "[review] llm").replace(
                "the llm proposer has", "the LLM reviewers have")

        raise ConfigError(here(exc.what) or exc.what, where=here(exc.where),
                          fix=here(exc.fix)) from None
    prices = PriceTable(options.get("prices"))
    # As the llm proposer's: a bare int() took -5, "5" or true as a context budget.
    context: int = checked_number(options, "context_tokens", DEFAULT_CONTEXT_TOKENS,
                                  low=MIN_CONTEXT_TOKENS, high=10_000_000, whole=True,
                                  where="[review] llm in autoresearch.toml")
    setup = LLMSetup(settings, prices, context, verify_model)
    return setup, f"LLM reviewers: {settings.describe()} ({why})"
