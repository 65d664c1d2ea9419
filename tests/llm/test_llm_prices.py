"""The price table: defaults, prefix lookup, config overrides, and cost arithmetic."""

from __future__ import annotations

import pytest

from autoresearch.errors import ConfigError
from autoresearch.proposers.llm.prices import Price, PriceTable


def test_defaults_cover_current_models_and_dated_snapshots() -> None:
    table = PriceTable()
    sonnet = table.price_for("claude-sonnet-5-5")
    assert sonnet == Price(2.0, 10.0, 0.10, 2.50)
    assert table.price_for("claude-sonnet-5") == Price(2.0, 10.0, 0.20, 2.50)
    assert table.price_for("claude-opus-5-5") == Price(4.0, 20.0, 0.20, 5.0)
    assert table.price_for("claude-fable-5-2") == Price(8.0, 40.0, 0.20, 10.0)
    assert table.price_for("gpt-6.2-sol") == Price(2.0, 10.0, 0.10, 2.50)
    assert table.price_for("gpt-6-luna") == Price(0.10, 0.50, 0.01, 0.125)
    # Snapshots of a known model: a date suffix, Vertex's @date, Claude Code's [1m].
    assert table.price_for("claude-haiku-4-5-20251001") == table.price_for("claude-haiku-4-5")
    assert table.price_for("claude-haiku-4-5@20251001") == table.price_for("claude-haiku-4-5")
    assert table.price_for("claude-opus-5-5[1m]") == table.price_for("claude-opus-5-5")
    assert table.price_for("gpt-4.1-2025-04-14") == table.price_for("gpt-4.1")
    old_opus = table.price_for("claude-opus-4-1-20250805")
    assert old_opus is not None and old_opus.input == 15.0
    # Routers' spellings: a provider prefix, and OpenRouter's dotted Claude versions.
    assert table.price_for("openrouter/anthropic/claude-haiku-4-5") == table.price_for(
        "claude-haiku-4-5")
    assert table.price_for("anthropic/claude-sonnet-5.5") == sonnet
    assert table.price_for("qwen3:8b") is None


@pytest.mark.parametrize("variant", [
    "gpt-6.2-sol-pro", "gpt-5.5-pro", "gpt-5.5", "gpt-5-codex", "gpt-6.2-astra", "gpt-6",
    "claude-sonnet-5-6", "claude-opus-5-5-fast", "claude-opus-4-9", "claude-haiku-5",
    "gpt-4.1-mini-2025-04-14x",
])
def test_a_variant_is_never_priced_as_its_base_model(variant: str) -> None:
    # A prefix match used to price "gpt-5.5-pro" as gpt-5 and Sonnet 5.5 as Sonnet 4: wrong by
    # up to an order of magnitude. An unknown variant has no price (cost 0, one warning).
    assert PriceTable().price_for(variant) is None


def test_cost_counts_every_kind_of_token() -> None:
    price = Price(input=3.0, output=15.0, cache_read=0.3, cache_write=3.75)
    cost = price.cost(1_000_000, 100_000, cache_read_tokens=2_000_000, cache_write_tokens=1_000)
    assert cost == pytest.approx(3.0 + 1.5 + 0.6 + 0.00375)


def test_overrides_replace_and_add_models() -> None:
    table = PriceTable({
        "claude-sonnet-5-5": {"input": 1, "output": 2, "cache_read": 0.1, "cache_write": 1.5},
        "qwen3:8b": [0.01, 0.02],
        "gpt-6.2-astra": [8, 40],
    })
    assert table.price_for("claude-sonnet-5-5") == Price(1, 2, 0.1, 1.5)
    assert table.price_for("gpt-6.2-astra") == Price(8, 40, 8, 8)
    assert table.cost("qwen3:8b", 1_000_000, 1_000_000) == pytest.approx(0.03)
    assert table.cost("unknown-local-model", 10**6, 10**6) == 0.0


@pytest.mark.parametrize("bad", [{"input": 1}, {"input": "x", "output": 1}, [1], "cheap",
                                 {"input": 1, "output": 2, "typo": 3}])
def test_invalid_overrides_name_the_model(bad: object) -> None:
    with pytest.raises(ConfigError) as info:
        PriceTable({"my-model": bad})
    assert "proposer.prices.my-model" in str(info.value)
