"""The [proposer] options' values, checked as the config's own tables are: declared with their
types and ranges in pydantic models (`OptionValues`), strict, the error worded from the
declaration (which option, what it holds, what it may hold, how to write it).

`ProviderOptionValues` holds the numbers, flags and typed options a provider reads
(settings.ProviderSettings); the llm proposer declares its own (proposer.py), and a caller with
one number of its own uses `checked_number` (the LLM reviewers' context_tokens).
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Mapping
from typing import Any, TypeVar, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from autoresearch.config_errors import allowed_range
from autoresearch.errors import ConfigError
from autoresearch.proposers.faults import MAX_PROVIDER_PAUSE_S

WHERE = "autoresearch.toml → [proposer]"


def shown_value(value: object) -> str:
    """A TOML value as the file writes it, with its type: `"false" (a string)`, `-1 (a whole
    number)`, `2.0 (a number)`, `nan (a number)`."""
    if isinstance(value, bool):
        return f"{str(value).lower()} (true or false)"
    if isinstance(value, int):
        return f"{value} (a whole number)"
    if isinstance(value, float):
        # As the file writes it: 2.0 stays 2.0 (a whole number's fix says to drop the .0).
        return f"{value!r} (a number)"
    if isinstance(value, str):
        return f"{json.dumps(value)} (a string)"
    kind = "a table" if isinstance(value, Mapping) else "a list" if isinstance(value, list) else (
        type(value).__name__)
    return f"{json.dumps(value, default=str)[:60]} ({kind})"


class OptionValues(BaseModel):
    """The base of the models that hold options' values: each field is one option, with its type
    and range. Strict, as the config's own tables are (config_sections.py): a value is taken as
    the type TOML gives it, never converted, since pydantic's lax mode reads prompt_caching =
    "false" as false but prompt_caching = "no" or 0 too, and max_retries = "3" as 3 in one file
    and as an error after an edit. Every number has a finite range, so nan and the infinities
    are out of it (every comparison with nan is false): a NaN timeout would never end a call, an
    infinite one overflows a wait. Keys the model does not name are other checks'
    (extra="ignore"; proposers/options.py refuses unknown ones)."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


class ProviderOptionValues(OptionValues):
    """The numbers, flags and types of the [proposer] options a provider reads."""

    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int = Field(default=8192, ge=1, le=10_000_000)
    # A call of more than a day is no call; a longer wait overflows the thread's join.
    timeout_seconds: float = Field(default=300.0, gt=0, le=86_400)
    # -1 would make no call at all.
    max_retries: int = Field(default=5, ge=0, le=100)
    retry_base_seconds: float = Field(default=2.0, ge=0, le=3600)
    retry_max_seconds: float = Field(default=60.0, ge=0, le=MAX_PROVIDER_PAUSE_S)
    outage_retry_after: float | None = Field(default=None, ge=0, le=MAX_PROVIDER_PAUSE_S)
    prompt_caching: bool = True
    extra_body: dict[str, Any] = Field(default_factory=dict)
    base_url: str | None = None


M = TypeVar("M", bound=OptionValues)


def validated(model: type[M], options: Mapping[str, Any], where: str = WHERE) -> M:
    """The options `model` names, validated; else a ConfigError for the first bad one, naming
    the option, what it holds, what it may hold and how to write it. An option set to None (a
    caller's "not set": TOML has no null) takes its default."""
    given = {k: v for k, v in options.items() if k in model.model_fields and v is not None}
    try:
        return model.model_validate(given)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = str(first["loc"][0])
        raise _refusal(model, key, given[key], first["type"], where) from None


# Pydantic's error types, by what they mean here.
_OUT_OF_RANGE = frozenset({"greater_than", "greater_than_equal", "less_than", "less_than_equal"})
_KINDS = {"int_type": "a whole number", "float_type": "a number", "bool_type": "true or false",
          "dict_type": "a table", "string_type": "a string"}


def _refusal(model: type[OptionValues], key: str, value: object, error: str,
             where: str) -> ConfigError:
    """The ConfigError for option `key` of `model` holding `value`, refused with pydantic's
    error type `error`."""
    at = f"{where} {key}"
    declared = model.model_fields[key]
    unset = _when_unset(declared.get_default(call_default_factory=True))
    if error in _OUT_OF_RANGE:
        kind = ("a whole number" if int in (declared.annotation, *get_args(declared.annotation))
                else "a number")
        span = allowed_range(model, key)
        return ConfigError(f"[proposer] {key} = {shown_value(value)} is out of range: it must be "
                           f"{span}", where=at, fix=f"set {key} to {kind} {span}{unset}")
    kind = _KINDS.get(error, error)
    if error == "bool_type":
        return ConfigError(f"[proposer] {key} = {shown_value(value)}: expected true or false",
                           where=at, fix=_flag_fix(key, value))
    if error == "dict_type":
        return ConfigError(f"[proposer] {key} = {shown_value(value)}: expected a table of request "
                           "fields", where=at,
                           fix=f"write {key} as a table, e.g. {key} = {{ top_k = 20 }}, or "
                           "remove the line")
    if error == "string_type":
        return ConfigError(f"[proposer] {key} = {shown_value(value)}: expected a string", where=at,
                           fix=f'write {key} = "..." in quotes, e.g. {key} = '
                           '"http://localhost:8000/v1"')
    span = allowed_range(model, key)
    return ConfigError(f"[proposer] {key} = {shown_value(value)}: expected {kind} {span}", where=at,
                       fix=_number_fix(key, value, kind, span, model) + unset)


def _when_unset(default: object) -> str:
    """What a fix adds about leaving the option out: its default, or that it is then unset."""
    if default is None:
        return " (or remove the line to leave it unset)"
    return f" (the default, {default:g}, when it is not set)" if _is_number(default) else ""


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _number_fix(key: str, value: object, kind: str, span: str | None,
                model: type[OptionValues]) -> str:
    """How to write a number that was given as another type: the number itself when the value
    is one in disguise ("3", 2.0 for a whole number), else what a number is."""
    whole = kind == "a whole number"
    written: float | None = None
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            written = float(value.strip())
    elif isinstance(value, float):
        written = value
    if written is not None and not math.isfinite(written):
        written = None  # "nan", "inf": no number a range holds
    if written is not None and (not whole or written.is_integer()):
        number = int(written) if whole else written
        try:
            model.model_validate({key: number})
        except ValidationError:
            pass  # a number, but out of range: said below with the range
        else:
            how = "without quotes" if isinstance(value, str) else "without the .0"
            return f"write {key} = {number:g}, {how}"
    general = f"write {key} as {kind} {span}"
    if isinstance(value, bool):
        return general + " (true and false are not numbers)"
    if isinstance(value, str) and written is None:
        return f"{json.dumps(value)} is not a number: {general}"
    if isinstance(value, str):
        return general + ", without quotes"
    return general


def _flag_fix(key: str, value: object) -> str:
    """How to write a flag given as another type: a string "false" would be read as true."""
    said = (value.strip().lower() if isinstance(value, str) else
            str(value) if _is_number(value) else "")
    written = {"true": "true", "yes": "true", "1": "true", "false": "false", "no": "false",
               "0": "false"}.get(said)
    if written is None:
        return f"write {key} = true or {key} = false, without quotes"
    if isinstance(value, str):
        return f"write {key} = {written}, without quotes"
    return f"write {key} = {written} (true or false, not {said})"


def checked_number(options: Mapping[str, Any], key: str, default: float | None, *, low: float,
                   high: float, low_excluded: bool = False, whole: bool = False,
                   where: str = WHERE) -> Any:
    """options[key] (or `default` when it is not set) once it is a number (`whole`: a whole
    number) within the range, checked as the options' models check theirs; for a caller with a
    single number of its own (the LLM reviewers' context_tokens)."""
    kind: Any = int | None if whole else float | None
    bounded = Field(default=default, gt=low if low_excluded else None,
                    ge=None if low_excluded else low, le=high)
    field_definition: dict[str, Any] = {key: (kind, bounded)}
    one = create_model(f"Option_{key}", __base__=OptionValues, **field_definition)
    return getattr(validated(one, options, where), key)
