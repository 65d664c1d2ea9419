"""What a model call costs: USD per million tokens, by model, overridable in autoresearch.toml.

Prices change more often than this file, so every entry can be overridden or added in the config:

    [proposer]
    prices = { "claude-sonnet-5-5" = { input = 2, output = 10, cache_read = 0.1, cache_write = 2.5 } }
    # or the short form [input, output] (cache prices then follow the input price)

A model is looked up by its exact name, or by a known name followed only by a snapshot suffix (a
date: "claude-haiku-4-5-20251001", "gpt-4.1-2025-04-14"; or Claude Code's "[1m]"). Nothing
else matches: "gpt-5.5-pro", "gpt-5-mini" or "claude-sonnet-5-5" are different models with
different prices, and a family prefix would silently price them as the base model. A model with
no row (a local Ollama model, a release newer than this table) costs 0, `price_for` returns None,
and the provider logs one warning saying so and how to add the price.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from autoresearch.errors import ConfigError


@dataclass(frozen=True)
class Price:
    """USD per million tokens."""

    input: float
    output: float
    cache_read: float
    cache_write: float

    def cost(
        self,
        input_tokens: int,
        output_tokens: int,
        cache_read_tokens: int = 0,
        cache_write_tokens: int = 0,
    ) -> float:
        """The USD cost; `input_tokens` excludes the cached ones (both APIs are normalized so)."""
        total = (
            input_tokens * self.input
            + output_tokens * self.output
            + cache_read_tokens * self.cache_read
            + cache_write_tokens * self.cache_write
        )
        return total / 1_000_000


def _claude(input_: float, output: float, cache_read: float, cache_write: float) -> Price:
    # cache_write is the 5-minute write (the harness marks `ephemeral`, which is the 5-minute TTL).
    return Price(input_, output, cache_read, cache_write)


def _openai(input_: float, output: float, cached: float, cache_write: float | None = None) -> Price:
    # Older OpenAI models cache automatically with no write surcharge; GPT-6 bills writes at 1.25x.
    return Price(input_, output, cached, input_ if cache_write is None else cache_write)


# Checked 2026-12-02, standard tier, short-context rates, USD per million tokens. Sources: the
# model pages and the pricing page of platform.claude.com/docs and developers.openai.com/api/docs.
# Marked "(trackers)": values the stored copies of those pages did not show, taken from several
# independent price trackers citing the live page; override them if your bill disagrees.
# Not modelled: Haiku 5.5 bills 5x for a prompt over 100K tokens, GPT-6.x bills 2x input and 1.5x
# output for a request over 272K input tokens; the default context budget (60K tokens) stays
# below both. Batch, Fast and regional surcharges do not apply to these calls.
DEFAULT_PRICES: dict[str, Price] = {
    # Anthropic: current models
    "claude-fable-5-2": _claude(8.0, 40.0, 0.20, 10.0),  # cache read and write (trackers)
    "claude-mythos-5-2": _claude(8.0, 40.0, 0.20, 10.0),  # cache read and write (trackers)
    "claude-fable-5-1": _claude(10.0, 50.0, 0.25, 12.50),
    "claude-mythos-5-1": _claude(10.0, 50.0, 0.25, 12.50),
    "claude-fable-5": _claude(10.0, 50.0, 1.0, 12.50),
    "claude-mythos-5": _claude(10.0, 50.0, 1.0, 12.50),
    "claude-opus-5-5": _claude(4.0, 20.0, 0.20, 5.0),
    "claude-opus-5": _claude(5.0, 25.0, 0.50, 6.25),
    # Sonnet 5.5's cache hits were cut from $0.20 to $0.10 on 2026-10-07 (trackers; the stored copy
    # of its model page predates the cut).
    "claude-sonnet-5-5": _claude(2.0, 10.0, 0.10, 2.50),
    "claude-sonnet-5": _claude(2.0, 10.0, 0.20, 2.50),
    "claude-haiku-5-5": _claude(0.10, 0.50, 0.01, 0.125),  # prompts up to 100K; cache read (trackers)
    "claude-haiku-4-5": _claude(1.0, 5.0, 0.10, 1.25),
    # Anthropic: legacy and retired models (for sessions that still name them)
    "claude-opus-4-8": _claude(5.0, 25.0, 0.50, 6.25),
    "claude-opus-4-7": _claude(5.0, 25.0, 0.50, 6.25),
    "claude-opus-4-6": _claude(5.0, 25.0, 0.50, 6.25),
    "claude-opus-4-5": _claude(5.0, 25.0, 0.50, 6.25),
    "claude-opus-4-1": _claude(15.0, 75.0, 1.50, 18.75),
    "claude-opus-4": _claude(15.0, 75.0, 1.50, 18.75),
    "claude-sonnet-4-6": _claude(3.0, 15.0, 0.30, 3.75),
    "claude-sonnet-4-5": _claude(3.0, 15.0, 0.30, 3.75),
    "claude-sonnet-4": _claude(3.0, 15.0, 0.30, 3.75),
    "claude-3-7-sonnet": _claude(3.0, 15.0, 0.30, 3.75),
    "claude-3-5-haiku": _claude(0.80, 4.0, 0.08, 1.0),
    "claude-3-haiku": _claude(0.25, 1.25, 0.03, 0.30),
    # OpenAI: current models
    "gpt-6.2-sol": _openai(2.0, 10.0, 0.10, 2.50),
    "gpt-6-luna": _openai(0.10, 0.50, 0.01, 0.125),
    # OpenAI: earlier models (kept from the previous table, not re-checked)
    "gpt-5": _openai(1.25, 10.00, 0.125),
    "gpt-5-mini": _openai(0.25, 2.00, 0.025),
    "gpt-5-nano": _openai(0.05, 0.40, 0.005),
    "gpt-4.1": _openai(2.00, 8.00, 0.50),
    "gpt-4.1-mini": _openai(0.40, 1.60, 0.10),
    "gpt-4.1-nano": _openai(0.10, 0.40, 0.025),
    "gpt-4o": _openai(2.50, 10.00, 1.25),
    "gpt-4o-mini": _openai(0.15, 0.60, 0.075),
    "o3": _openai(2.00, 8.00, 0.50),
    "o4-mini": _openai(1.10, 4.40, 0.275),
}

# What may follow a known name and still be the same model: a snapshot date, Claude Code's
# 1M-context marker. Nothing with letters ("-pro", "-mini", "-codex") and no bare version digits
# ("claude-sonnet-5" + "-5" is Sonnet 5.5).
_SNAPSHOT = re.compile(r"^(?:[-@]\d{8}|-\d{4}-\d{2}-\d{2})?(?:\[1m\])?$", re.IGNORECASE)


def _spellings(model: str) -> list[str]:
    """The names to look up: as given, without a router's provider prefix, and with Claude
    version dots as Anthropic writes them ("anthropic/claude-sonnet-5.5" -> "claude-sonnet-5-5")."""
    bare = model.rsplit("/", 1)[-1]
    names = [model, bare]
    if bare.startswith("claude-"):
        names.append(bare.replace(".", "-"))
    return list(dict.fromkeys(names))


def parse_price(raw: Any, where: str) -> Price:
    """A price from the config: {input, output[, cache_read, cache_write]} or [input, output]."""
    try:
        if isinstance(raw, list | tuple) and len(raw) in (2, 4):
            values = [float(v) for v in raw]
            if len(values) == 2:
                return Price(values[0], values[1], values[0], values[0])
            return Price(*values)
        if isinstance(raw, Mapping):
            unknown = set(raw) - {"input", "output", "cache_read", "cache_write"}
            if unknown:
                raise ValueError(f"unknown keys {sorted(unknown)}")
            input_ = float(raw["input"])
            return Price(
                input_,
                float(raw["output"]),
                float(raw.get("cache_read", input_)),
                float(raw.get("cache_write", input_)),
            )
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(
            f"invalid price: {exc}",
            where=where,
            fix="write { input = 3.0, output = 15.0, cache_read = 0.3, cache_write = 3.75 } "
            "(USD per million tokens) or [input, output]",
        ) from None
    raise ConfigError(
        f"invalid price {raw!r}",
        where=where,
        fix="write { input = 3.0, output = 15.0 } (USD per million tokens) or [input, output]",
    )


class PriceTable:
    """The default prices overlaid with the `[proposer] prices` table of the config."""

    def __init__(self, overrides: Mapping[str, Any] | None = None) -> None:
        self._prices: dict[str, Price] = dict(DEFAULT_PRICES)
        if overrides is not None and not isinstance(overrides, Mapping):
            raise ConfigError(
                "[proposer] prices must be a table of model = price",
                where="autoresearch.toml → proposer.prices",
            )
        for model, raw in (overrides or {}).items():
            self._prices[str(model)] = parse_price(raw, f"autoresearch.toml → proposer.prices.{model}")

    def price_for(self, model: str) -> Price | None:
        """The price of `model`: its exact name, else a known name plus a snapshot suffix."""
        for name in _spellings(model):
            if name in self._prices:
                return self._prices[name]
        for name in _spellings(model):
            known = [k for k in self._prices if name.startswith(k) and _SNAPSHOT.match(name[len(k):])]
            if known:
                return self._prices[max(known, key=len)]
        return None

    def cost(
        self,
        model: str,
        input_tokens: int,
        output_tokens: int,
        cache_read_tokens: int = 0,
        cache_write_tokens: int = 0,
    ) -> float:
        price = self.price_for(model)
        if price is None:
            return 0.0
        return price.cost(input_tokens, output_tokens, cache_read_tokens, cache_write_tokens)
