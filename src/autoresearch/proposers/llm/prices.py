"""What a model call costs: USD per million tokens, by model, overridable in autoresearch.toml.

Prices change more often than this file, so every entry can be overridden or added in the config:

    [proposer]
    prices = { "claude-sonnet-4-6" = { input = 3, output = 15, cache_read = 0.3, cache_write = 3.75 } }
    # or the short form [input, output] (cache prices then follow the input price)

A model is looked up by exact name, then by the longest known prefix, so dated snapshots
("claude-sonnet-4-5-20250929") and suffixed variants find their family's price. A model nobody
priced (a local Ollama model, say) costs 0 and `price_for` returns None so the caller can say so.
"""

from __future__ import annotations

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


def _anthropic(input_: float, output: float, cache_read: float | None = None) -> Price:
    # Anthropic bills a 5-minute cache write at 1.25x input and a cache hit at 0.1x input,
    # except where a model's published hit price differs (passed explicitly).
    return Price(input_, output, input_ * 0.1 if cache_read is None else cache_read, input_ * 1.25)


def _openai(input_: float, output: float, cached: float) -> Price:
    # OpenAI caches automatically: no write surcharge, a discounted read.
    return Price(input_, output, cached, input_)


# Keys are model names or name prefixes. Newer model generations without a published price in
# this table fall back to their family prefix ("claude-sonnet-", "gpt-5"), which is an estimate:
# override it in the config when it matters for a USD limit.
DEFAULT_PRICES: dict[str, Price] = {
    # Anthropic
    "claude-fable-5-1": _anthropic(10.0, 50.0, 0.25),
    "claude-fable-5-2": _anthropic(10.0, 50.0, 0.25),
    "claude-fable-5": _anthropic(10.0, 50.0, 1.0),
    "claude-mythos-5-1": _anthropic(10.0, 50.0, 0.25),
    "claude-mythos-5-2": _anthropic(10.0, 50.0, 0.25),
    "claude-mythos": _anthropic(10.0, 50.0, 1.0),
    "claude-opus-4-1": _anthropic(15.0, 75.0),
    "claude-opus-4-0": _anthropic(15.0, 75.0),
    "claude-opus-4-2025": _anthropic(15.0, 75.0),
    "claude-opus-": _anthropic(5.0, 25.0),
    "claude-sonnet-": _anthropic(3.0, 15.0),
    "claude-3-7-sonnet": _anthropic(3.0, 15.0),
    "claude-3-5-sonnet": _anthropic(3.0, 15.0),
    "claude-haiku-4-5": _anthropic(1.0, 5.0),
    "claude-haiku-": _anthropic(1.0, 5.0),
    "claude-3-5-haiku": _anthropic(0.8, 4.0),
    "claude-3-haiku": _anthropic(0.25, 1.25),
    # OpenAI
    "gpt-5-nano": _openai(0.05, 0.40, 0.005),
    "gpt-5-mini": _openai(0.25, 2.00, 0.025),
    "gpt-5.4-nano": _openai(0.05, 0.40, 0.005),
    "gpt-5.4-mini": _openai(0.25, 2.00, 0.025),
    "gpt-5": _openai(1.25, 10.00, 0.125),
    "gpt-6": _openai(1.25, 10.00, 0.125),
    "gpt-4.1-nano": _openai(0.10, 0.40, 0.025),
    "gpt-4.1-mini": _openai(0.40, 1.60, 0.10),
    "gpt-4.1": _openai(2.00, 8.00, 0.50),
    "gpt-4o-mini": _openai(0.15, 0.60, 0.075),
    "gpt-4o": _openai(2.50, 10.00, 1.25),
    "o4-mini": _openai(1.10, 4.40, 0.275),
    "o3-mini": _openai(1.10, 4.40, 0.55),
    "o3": _openai(2.00, 8.00, 0.50),
}


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
        """The price of `model`: exact name first, then the longest matching prefix."""
        if model in self._prices:
            return self._prices[model]
        # Provider-qualified names ("anthropic/claude-...", "openai/gpt-5") as routers spell them.
        bare = model.rsplit("/", 1)[-1]
        if bare in self._prices:
            return self._prices[bare]
        best = max((k for k in self._prices if bare.startswith(k)), key=len, default=None)
        return None if best is None else self._prices[best]

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
