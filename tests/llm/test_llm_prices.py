"""The price table: defaults, prefix lookup, config overrides, and cost arithmetic."""

from __future__ import annotations

import pytest

from autoresearch.errors import ConfigError
from autoresearch.proposers.llm.prices import Price, PriceTable


def test_defaults_cover_current_models_and_dated_snapshots() -> None:
    table = PriceTable()
    sonnet = table.price_for("claude-sonnet-4-5-20250929")
    assert sonnet == table.price_for("claude-sonnet-4-6")
    assert sonnet is not None and (sonnet.input, sonnet.output) == (3.0, 15.0)
    assert sonnet.cache_read == pytest.approx(0.3) and sonnet.cache_write == pytest.approx(3.75)
    opus = table.price_for("claude-opus-4-7")
    assert opus is not None and opus.input == 5.0
    old_opus = table.price_for("claude-opus-4-1")
    assert old_opus is not None and old_opus.input == 15.0
    assert table.price_for("gpt-4.1-mini") != table.price_for("gpt-4.1")
    assert table.price_for("openrouter/anthropic/claude-haiku-4-5") == table.price_for(
        "claude-haiku-4-5")
    assert table.price_for("qwen3:8b") is None


def test_cost_counts_every_kind_of_token() -> None:
    price = Price(input=3.0, output=15.0, cache_read=0.3, cache_write=3.75)
    cost = price.cost(1_000_000, 100_000, cache_read_tokens=2_000_000, cache_write_tokens=1_000)
    assert cost == pytest.approx(3.0 + 1.5 + 0.6 + 0.00375)


def test_overrides_replace_and_add_models() -> None:
    table = PriceTable({
        "claude-sonnet-4-6": {"input": 1, "output": 2, "cache_read": 0.1, "cache_write": 1.5},
        "qwen3:8b": [0.01, 0.02],
    })
    assert table.price_for("claude-sonnet-4-6") == Price(1, 2, 0.1, 1.5)
    assert table.cost("qwen3:8b", 1_000_000, 1_000_000) == pytest.approx(0.03)
    assert table.cost("unknown-local-model", 10**6, 10**6) == 0.0


@pytest.mark.parametrize("bad", [{"input": 1}, {"input": "x", "output": 1}, [1], "cheap",
                                 {"input": 1, "output": 2, "typo": 3}])
def test_invalid_overrides_name_the_model(bad: object) -> None:
    with pytest.raises(ConfigError) as info:
        PriceTable({"my-model": bad})
    assert "proposer.prices.my-model" in str(info.value)
