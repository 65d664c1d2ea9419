"""The llm proposer's numbers, flags and typed options, declared in pydantic models with their
ranges (settings.ProviderOptionValues, proposer.ConversationOptionValues), and what their
refusals say: what was given, the range, and a fix that fits the value (a number in quotes is
written back as the number; a string that is no number is told it must be one). And
max_tokens_field under the anthropic provider, which is refused at load: Anthropic's Messages
API has one token-limit field.

Where it matters the real CLI (`check`, `run`) runs against the fake model server on 127.0.0.1."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from autoresearch.errors import ConfigError
from autoresearch.proposers.llm import LLMProposer
from autoresearch.proposers.llm.option_values import checked_number
from autoresearch.proposers.llm.settings import ProviderSettings
from tests.conftest import run_cli
from tests.llm.conftest import ledger_rows, llm_options, make_config, use_llm_config
from tests.llm.fake_server import FakeModelServer


def settings(**options: Any) -> ProviderSettings:
    return ProviderSettings.from_options({"provider": "ollama", "model": "m", **options}, {})


def refusal(**options: Any) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        settings(**options)
    return info.value


def one_line(text: str) -> str:
    return " ".join(text.split())


def add_proposer(repo: Path, lines: str) -> None:
    """The llm proposer's [proposer] table `lines` appended to the repo's config; committed."""
    use_llm_config(repo, "\n[proposer]\nname = \"llm\"\n" + textwrap.dedent(lines))


def experiments(repo: Path) -> list[tuple[Any, ...]]:
    return ledger_rows(repo)


# --- 1. the fix fits the value ----------------------------------------------------------------


@pytest.mark.parametrize("value", ["abc", "warm", ""])
def test_a_string_that_is_no_number_is_told_it_must_be_a_number(value: str) -> None:
    # It was told to lose its quotes: temperature = abc is no TOML at all.
    error = refusal(temperature=value)
    assert f'temperature = "{value}" (a string): expected a number from 0 to 2' in error.what
    assert error.where == "autoresearch.toml → [proposer] temperature"
    assert error.fix is not None
    assert error.fix.startswith(f'"{value}" is not a number: write temperature as a number from '
                                "0 to 2")
    assert "without quotes" not in error.fix


@pytest.mark.parametrize(("key", "value", "fix"), [
    ("max_retries", "3", "write max_retries = 3, without quotes"),
    ("temperature", "0.7", "write temperature = 0.7, without quotes"),
    ("timeout_seconds", " 90 ", "write timeout_seconds = 90, without quotes"),
    ("max_retries", 2.0, "write max_retries = 2, without the .0"),
    ("max_tokens", 4096.0, "write max_tokens = 4096, without the .0"),
])
def test_a_number_in_disguise_is_written_back_as_the_number(key: str, value: object,
                                                            fix: str) -> None:
    error = refusal(**{key: value})
    assert str(error.fix).startswith(fix)


@pytest.mark.parametrize(("key", "value", "fix"), [
    # A number, but out of range: never suggested as the value to write.
    ("max_retries", "-1", "write max_retries as a whole number from 0 to 100, without quotes"),
    ("temperature", "5", "write temperature as a number from 0 to 2, without quotes"),
    # Not a whole number: the range, since which whole number was meant is the user's to say.
    ("max_retries", 2.5, "write max_retries as a whole number from 0 to 100"),
    ("timeout_seconds", False, "write timeout_seconds as a number more than 0 and at most 86400 "
                               "(true and false are not numbers)"),
])
def test_a_value_that_is_no_usable_number_gets_the_range(key: str, value: object,
                                                         fix: str) -> None:
    assert str(refusal(**{key: value}).fix).startswith(fix)


def test_a_whole_number_given_with_a_fraction_shows_the_fraction() -> None:
    # Shown as the file writes it: "max_retries = 2 (a number)" contradicted its own fix.
    assert "max_retries = 2.0 (a number): expected a whole number" in refusal(max_retries=2.0).what


@pytest.mark.parametrize(("value", "fix"), [
    (0, "write prompt_caching = false (true or false, not 0)"),
    (1, "write prompt_caching = true (true or false, not 1)"),
    ("yes", "write prompt_caching = true, without quotes"),
    ("maybe", "write prompt_caching = true or prompt_caching = false, without quotes"),
])
def test_a_flag_given_as_another_type_is_written_as_the_flag(value: object, fix: str) -> None:
    error = refusal(prompt_caching=value)
    assert "expected true or false" in error.what and error.fix == fix


@pytest.mark.parametrize(("key", "value", "said", "fix"), [
    ("extra_body", 5, "extra_body = 5 (a whole number): expected a table of request fields",
     "write extra_body as a table, e.g. extra_body = { top_k = 20 }"),
    ("extra_body", ["top_k"], 'extra_body = ["top_k"] (a list): expected a table',
     "write extra_body as a table"),
    ("base_url", 8000, "base_url = 8000 (a whole number): expected a string",
     'write base_url = "..." in quotes'),
])
def test_a_table_or_a_string_of_the_wrong_type_is_named_with_its_fix(
        key: str, value: object, said: str, fix: str) -> None:
    error = refusal(**{key: value})
    assert said in error.what and str(error.fix).startswith(fix)
    assert error.where == f"autoresearch.toml → [proposer] {key}"


def test_a_value_left_unset_takes_its_default_and_none_is_unset() -> None:
    s = settings(temperature=None, max_tokens=None)
    assert (s.temperature, s.max_tokens, s.timeout_seconds, s.max_retries, s.prompt_caching,
            dict(s.extra_body)) == (None, 8192, 300.0, 5, True, {})
    s = settings(temperature=1, timeout_seconds=30, extra_body={"top_k": 20})
    assert (s.temperature, s.timeout_seconds, s.extra_body) == (1.0, 30.0, {"top_k": 20})
    assert isinstance(s.temperature, float) and isinstance(s.timeout_seconds, float)


def test_the_default_is_named_in_the_fix_where_there_is_one() -> None:
    assert "(the default, 300, when it is not set)" in str(refusal(timeout_seconds=-1).fix)
    assert "(or remove the line to leave it unset)" in str(refusal(temperature=9).fix)


def test_the_proposers_own_numbers_get_the_same_fixes(server: FakeModelServer) -> None:
    options = llm_options(server, context_tokens="8000")
    with pytest.raises(ConfigError) as info:
        LLMProposer(make_config(**options), options, env={})
    assert info.value.where == "autoresearch.toml → [proposer] context_tokens"
    assert str(info.value.fix).startswith("write context_tokens = 8000, without quotes")
    options = llm_options(server, max_edit_retries="twice")
    with pytest.raises(ConfigError) as info:
        LLMProposer(make_config(**options), options, env={})
    assert str(info.value.fix).startswith('"twice" is not a number: write max_edit_retries as '
                                          "a whole number from 0 to 20")


def test_a_single_number_is_checked_the_same_way_where_it_is_read() -> None:
    # The LLM reviewers' context_tokens ([review] llm) goes through checked_number.
    where = "[review] llm in autoresearch.toml"
    with pytest.raises(ConfigError) as info:
        checked_number({"context_tokens": "x"}, "context_tokens", 60_000, low=2000,
                       high=10_000_000, whole=True, where=where)
    assert info.value.where == f"{where} context_tokens"
    assert 'context_tokens = "x" (a string): expected a whole number from 2000 to 10000000' in (
        info.value.what)
    with pytest.raises(ConfigError, match="is out of range: it must be more than 0 and at most 5"):
        checked_number({"t": 0}, "t", 1.0, low=0, high=5, low_excluded=True)
    assert checked_number({}, "t", 1.0, low=0, high=5) == 1.0
    assert checked_number({"t": 5}, "t", 1.0, low=0, high=5) == 5


def test_check_tells_a_temperature_that_is_no_number_to_be_one(toy_repo: Path,
                                                              server: FakeModelServer) -> None:
    add_proposer(toy_repo, f'provider = "openai"\nbase_url = "{server.openai_url}"\n'
                           'model = "gpt-4.1"\ntemperature = "abc"\n')
    for command in (("check",), ("run", "--iterations", "2")):
        result = run_cli(toy_repo, *command, timeout=120)
        said = one_line(result.stdout + result.stderr)
        assert result.returncode == 2 and "Traceback" not in said, said
        assert '[proposer] temperature = "abc" (a string): expected a number from 0 to 2' in said
        assert '"abc" is not a number: write temperature as a number from 0 to 2' in said
    assert experiments(toy_repo) == [] and server.requests == [] and server.listings == 0


# --- 2. max_tokens_field under the anthropic provider -----------------------------------------


@pytest.mark.parametrize(("options", "env", "why"), [
    ({"provider": "anthropic"}, {"ANTHROPIC_API_KEY": "k"}, '(provider = "anthropic")'),
    ({"provider": "claude"}, {"ANTHROPIC_API_KEY": "k"}, '(provider = "claude")'),
    ({"base_url": "https://proxy.example/anthropic"}, {},
     '(its base_url contains "anthropic")'),
    ({}, {"ANTHROPIC_API_KEY": "k", "OPENAI_API_KEY": "k"},
     "(ANTHROPIC_API_KEY is set in the environment)"),
])
@pytest.mark.parametrize("field", ["n_predict", "max_completion_tokens", 5])
def test_a_token_field_is_refused_for_anthropic_naming_why_the_provider_is_anthropic(
        options: dict[str, Any], env: dict[str, str], why: str, field: object) -> None:
    # The Anthropic provider sent max_tokens whatever the field said: the setting did nothing.
    with pytest.raises(ConfigError) as info:
        ProviderSettings.from_options({"model": "m", "max_tokens_field": field, **options}, env)
    error = info.value
    assert "cannot be used with the anthropic provider " + why in error.what
    assert "Anthropic's Messages API takes the reply's token limit in max_tokens only" in (
        error.what)
    assert error.where == "autoresearch.toml → [proposer] max_tokens_field"
    assert str(error.fix).startswith("remove the max_tokens_field line (set the limit with "
                                     "max_tokens = N)")
    assert 'set provider = "openai"' in str(error.fix)


def test_anthropic_takes_max_tokens_written_out_and_openai_any_field() -> None:
    anthropic = ProviderSettings.from_options(
        {"provider": "anthropic", "model": "m", "max_tokens_field": "max_tokens"},
        {"ANTHROPIC_API_KEY": "k"})
    assert anthropic.max_tokens_field == "max_tokens"
    assert settings(max_tokens_field="n_predict").max_tokens_field == "n_predict"


def test_check_and_run_refuse_a_token_field_for_anthropic_before_anything_is_sent(
        toy_repo: Path, server: FakeModelServer) -> None:
    add_proposer(toy_repo, f'provider = "anthropic"\nbase_url = "{server.anthropic_url}"\n'
                           'model = "claude-sonnet-4-6"\nmax_tokens_field = "n_predict"\n')
    for command in (("check",), ("run", "--iterations", "2")):
        result = run_cli(toy_repo, *command, timeout=120)
        said = one_line(result.stdout + result.stderr)
        assert result.returncode == 2 and "Traceback" not in said, said
        assert ('[proposer] max_tokens_field = "n_predict" (a string) cannot be used with the '
                'anthropic provider (provider = "anthropic")') in said
        assert "remove the max_tokens_field line" in said
    assert experiments(toy_repo) == [] and server.requests == [] and server.listings == 0
