"""Pydantic's validation errors of the contract file, said as a user can act on them.

One line per problem ("verify.budget_seconds: …"), the fix for the first, and the field it is
at: an unknown key gets the nearest valid name of its table (`budget_second` → `budget_seconds`),
a value outside a fixed set the nearest allowed one, a number out of range the whole range the
field allows, a value of the wrong type (the tables are strict: config_sections.py) what was
given and the value written as the field's type (`budget_seconds = "5"` → `budget_seconds = 5`).
A validator says what to do by raising `Refusal` (its fix, and the key of the table it is about
when the validator checks the whole table).
"""

from __future__ import annotations

import datetime
import difflib
import json
import math
import re
from collections.abc import Iterable
from typing import Any, get_args

import annotated_types
from pydantic import BaseModel

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


class Refusal(ValueError):
    """A validator's refusal with the fix to show, and `key`: the key of the validated table the
    problem is at (a model validator's errors are otherwise at the table itself)."""

    def __init__(self, message: str, *, fix: str | None = None, key: str | None = None) -> None:
        super().__init__(message)
        self.fix = fix
        self.key = key


def toml_key(key: str) -> str:
    """A key as TOML writes it: bare when it can be, else quoted ("params.py:MOMENTUM")."""
    return key if _BARE_KEY.fullmatch(key) else json.dumps(key, ensure_ascii=False)


def field_path(loc: Iterable[int | str]) -> str:
    """`("guards", 0, "max")` → guards[0].max; `("knobs", "a.py:LR")` → knobs."a.py:LR"."""
    out = ""
    for item in loc:
        out += f"[{item}]" if isinstance(item, int) else (
            f".{toml_key(item)}" if out else toml_key(item))
    return out


_FIXES = {
    "missing": "add this field",
    "extra_forbidden": "remove it or check its spelling (see the config reference in the README)",
    "literal_error": "use one of the allowed values",
}


def _model_at(root: type[BaseModel], loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    """The model class that validates the table at `loc` (("verify",) → VerifyConfig)."""
    model: type[BaseModel] = root
    for item in loc:
        if isinstance(item, int):
            continue  # an item of a list of tables ([[guards]]): same model as the list's
        field = model.model_fields.get(item)
        if field is None:
            return None
        found = next((t for t in (field.annotation, *get_args(field.annotation))
                      if isinstance(t, type) and issubclass(t, BaseModel)), None)
        if found is None:
            return None
        model = found
    return model


def _nearest(word: str, choices: Iterable[str]) -> str | None:
    near = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return near[0] if near else None


_TYPE_WORDS = {"int": "a whole number", "float": "a number", "str": "a string",
               "bool": "true or false", "list[str]": 'a list of strings (["a", "b"])'}
# A union member's words back to the type error of that member alone (for `_written_as`).
_WORD_TYPES = {"a whole number": "int_type", "a number": "float_type",
               "true or false": "bool_type"}


def _is_union_member(item: int | str) -> bool:
    """A location step that names a member of a union type (`int`, `literal['auto']`,
    `list[str]`), not a key of the file."""
    return isinstance(item, str) and (item in _TYPE_WORDS or "[" in item)


def _member_words(tag: str) -> str:
    if tag.startswith("literal["):
        return " or ".join(json.dumps(v) for v in re.findall(r"'([^']*)'", tag))
    if tag.startswith("dict["):
        return "a table"
    return _TYPE_WORDS.get(tag, "a list" if tag.startswith("list[") else tag)


def _merge_union_errors(errors: list[Any]) -> list[Any]:
    """Pydantic reports a value that fits no member of a union (`threads: int | "auto"`) once
    per member, at locations that name the members (`run.threads.int`,
    `run.threads.literal['auto']`): one error at the key instead, naming what it may be."""
    merged: list[Any] = []
    members: dict[tuple[int | str, ...], list[str]] = {}
    for err in errors:
        loc = tuple(x for x in err["loc"] if not str(x).startswith("function-"))
        cut = next((i for i, x in enumerate(loc) if i and _is_union_member(x)), None)
        if cut is None:
            merged.append(err)
            continue
        key = loc[:cut]
        if key not in members:
            members[key] = []
            merged.append({"type": "union_mismatch", "loc": key, "input": err.get("input"),
                           "msg": ""})
        words = _member_words(str(loc[cut]))
        if words not in members[key]:
            members[key].append(words)
    for err in merged:
        if err["type"] == "union_mismatch":
            expected = " or ".join(members[err["loc"]])
            got = json.dumps(err["input"], default=str)
            err["msg"] = f"expected {expected}, got {got}"
            err["fix"] = f"write {err['loc'][-1]} as {expected}"
            allowed = re.findall(r'"([^"]*)"', " ".join(w for w in members[err["loc"]]
                                                     if not w.startswith("a ")))
            near = _nearest(err["input"], allowed) if isinstance(err["input"], str) else None
            if near is not None:
                err["msg"] += f"; did you mean {json.dumps(near)}?"
                err["fix"] = f"write {json.dumps(near)}"
                continue
            for words in members[err["loc"]]:  # `repeats = "3"`: the number it reads as
                written = _written_as(_WORD_TYPES.get(words, ""), err["input"])
                if written is not None and not isinstance(err["loc"][-1], int):
                    err["fix"] = (f"write {toml_key(str(err['loc'][-1]))} = {written[0]}"
                                  f"{_under(err['loc'])}{written[1]}")
                    break
    return merged


# A value of the wrong type: what the field takes, in words.
_EXPECTED = {"float_type": "a number", "int_type": "a whole number",
             "bool_type": "true or false", "string_type": "a string",
             "list_type": "a list", "dict_type": "a table", "model_type": "a table"}
_TRUE = ("true", "yes", "on", "y", "t", "1")
_FALSE = ("false", "no", "off", "n", "f", "0")


def _toml(value: object) -> str:
    """A parsed TOML value as the file writes it (true, "5", 2.5, [1, 2]), cut when long."""
    if isinstance(value, float) and not math.isfinite(value):
        text = str(value)
    elif isinstance(value, datetime.date | datetime.time):
        text = value.isoformat()
    else:
        text = json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."


def _given(value: object) -> str:
    """What the file gave, with its TOML type: `"5" (a string)`, `true (a boolean)`."""
    kind = ("a boolean" if isinstance(value, bool) else
            "a whole number" if isinstance(value, int) else
            "a number" if isinstance(value, float) else
            "a string" if isinstance(value, str) else
            "a list" if isinstance(value, list) else
            "a table" if isinstance(value, dict) else
            "a date or time" if isinstance(value, datetime.date | datetime.time) else
            type(value).__name__)
    return f"{_toml(value)} ({kind})"


def _written_as(kind: str, value: object) -> tuple[str, str] | None:
    """`value` written as the type the error `kind` expects, and what differs ("without
    quotes"), when it has one obvious such form (`"5"` → `5`, `"yes"` → `true`, `2.0` → `2`)."""
    if kind in ("float_type", "int_type") and isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
        if not math.isfinite(number):
            return None
        if kind == "float_type":
            return value.strip(), ", without quotes"
        return (str(int(number)), ", without quotes") if number.is_integer() else None
    if kind == "int_type" and isinstance(value, float) and value.is_integer():
        return str(int(value)), " (a whole number)"
    if kind == "bool_type" and isinstance(value, str | int | float) and not isinstance(value, bool):
        text = value.strip().lower() if isinstance(value, str) else _toml(value).removesuffix(".0")
        truth = "true" if text in _TRUE else "false" if text in _FALSE else None
        if truth is None:
            return None
        return truth, (", without quotes" if isinstance(value, str) else
                       f" (true or false, not {_toml(value)})")
    if kind == "string_type" and isinstance(value, bool | int | float):
        return json.dumps(_toml(value)), " (in quotes)"
    if kind == "list_type" and isinstance(value, str):
        return json.dumps([value], ensure_ascii=False), " (a list, in brackets)"
    return None


def _under(loc: tuple[int | str, ...]) -> str:
    """The table a key is written in: " under [verify]", " under [[guards]]", "" at the top."""
    table = loc[:-1]
    if not table:
        return ""
    if isinstance(table[-1], int):
        return f" under [[{field_path(table[:-1])}]]"
    return f" under [{field_path(table)}]"


def _type_problem(err: Any, loc: tuple[int | str, ...], root: type[BaseModel]
                  ) -> tuple[str, str] | None:
    """A value of the wrong type (the tables are strict): what was expected and given, and the
    fix, with the value written as the field's type when it has an obvious such form."""
    kind = err["type"]
    if kind not in _EXPECTED or not loc:
        return None
    value = err.get("input")
    expected = _EXPECTED[kind]
    if kind == "list_type":
        field = (_model_at(root, loc[:-1]) or root).model_fields.get(str(loc[-1]))
        of_tables = field is not None and any(isinstance(t, type) and issubclass(t, BaseModel)
                                              for t in get_args(field.annotation))
        expected = "a list of tables" if of_tables else 'a list of strings (["a", "b"])'
    msg = f"expected {expected}, got {_given(value)}"
    if expected == "a list of tables" or kind == "model_type" and isinstance(loc[-1], int):
        # `guards = 5`, `guards = [5]`: each is its own [[guards]] table
        name = field_path(loc if expected == "a list of tables" else loc[:-1])
        return msg, f"write each as its own [[{name}]] table"
    written = _written_as(kind, value)
    if isinstance(loc[-1], int):  # an item of a list
        name = field_path(loc[:-1])
        if written is not None:
            return msg, f"write this item of {name} as {written[0]}{written[1]}"
        return msg, f"write each item of {name} as {expected}"
    key = toml_key(str(loc[-1]))
    if written is not None:
        return msg, f"write {key} = {written[0]}{_under(loc)}{written[1]}"
    if kind == "model_type":
        return msg, f"write [{field_path(loc)}] as a table: that line, then its keys below it"
    fix = f"write {key}{_under(loc)} as {expected}"
    if kind in ("float_type", "int_type"):
        model = _model_at(root, loc[:-1])
        field = model.model_fields.get(str(loc[-1])) if model is not None else None
        default = field.default if field is not None else None
        example = (f" (e.g. {key} = {_number(default)})" if isinstance(default, int | float)
                   and not isinstance(default, bool) else "")
        fix += (", without quotes" if isinstance(value, str) else
                " (true and false are not numbers)" if isinstance(value, bool) else "") + example
    elif kind == "bool_type":
        fix = f"write {key} = true or {key} = false{_under(loc)}, without quotes"
    return msg, fix


def _number(value: object) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e16:
        return str(int(value))
    return f"{value:g}" if isinstance(value, float) else json.dumps(value, default=str)


_BOUND_ERRORS = ("greater_than", "greater_than_equal", "less_than", "less_than_equal")


def allowed_range(model: type[BaseModel] | None, key: str) -> str | None:
    """The range a number field allows, in words ("from 2 to 50", "more than 0 and at most 10"),
    from its declared bounds (None: it declares none)."""
    field = model.model_fields.get(key) if model is not None else None
    if field is None:
        return None
    low = high = None
    for bound in field.metadata:
        if isinstance(bound, annotated_types.Gt):
            low = f"more than {_number(bound.gt)}"
        elif isinstance(bound, annotated_types.Ge):
            low = f"at least {_number(bound.ge)}"
        elif isinstance(bound, annotated_types.Lt):
            high = f"less than {_number(bound.lt)}"
        elif isinstance(bound, annotated_types.Le):
            high = f"at most {_number(bound.le)}"
    if low and high and low.startswith("at least") and high.startswith("at most"):
        return f"from {low.removeprefix('at least ')} to {high.removeprefix('at most ')}"
    return " and ".join(w for w in (low, high) if w) or None


def validation_problems(errors: list[Any], root: type[BaseModel]
                        ) -> tuple[list[str], str | None, str]:
    """One line per problem ("field: message"), the fix for the first one and the field it is
    at (`guards[0].max`, `knobs."a.py:LR"`); `root` is the model of the whole file (its tables'
    models name the valid keys and the ranges of their numbers).

    An unknown key gets the nearest valid name of its table; a required field that is missing
    beside such a near miss (`budget_second` for `budget_seconds`) is that typo, so it is said
    once, as the typo.
    """
    errors = _merge_union_errors(errors)
    unknown = {tuple(e["loc"]) for e in errors if e["type"] == "extra_forbidden"}
    typo_of: dict[tuple[int | str, ...], str] = {}  # unknown key's loc -> the name it misspells
    for loc in unknown:
        model = _model_at(root, loc[:-1])
        near = _nearest(str(loc[-1]), model.model_fields) if model else None
        if near is not None:
            typo_of[loc] = near
    explained = {(*loc[:-1], near) for loc, near in typo_of.items()}
    problems: list[str] = []
    fix: str | None = None
    where: str | None = None
    for err in errors:
        loc = tuple(x for x in err["loc"] if not str(x).startswith("function-"))
        if err["type"] == "missing" and loc in explained:
            continue
        refusal = err.get("ctx", {}).get("error")
        refusal = refusal if isinstance(refusal, Refusal) else None
        if refusal is not None and refusal.key is not None:
            loc = (*loc, refusal.key)
        field = field_path(loc) or "(top level)"
        msg = str(err["msg"]).removeprefix("Value error, ")
        hint: str | None = refusal.fix if refusal is not None else None
        if loc in typo_of:
            msg = f"unknown key; did you mean {typo_of[loc]!r}?"
            hint = f"rename {loc[-1]!r} to {typo_of[loc]!r}"
        elif err["type"] == "extra_forbidden":
            model = _model_at(root, loc[:-1])
            msg = "unknown key"
            if model is not None:
                hint = "the keys here are: " + ", ".join(model.model_fields)
        elif err["type"] == "literal_error" and isinstance(err.get("input"), str):
            allowed = re.findall(r"'([^']*)'", str(err.get("ctx", {}).get("expected", "")))
            near = _nearest(err["input"], allowed)
            if near is not None:
                msg += f"; did you mean {near!r}?"
                hint = f"write {near!r}"
        elif (typed := _type_problem(err, loc, root)) is not None:
            msg, hint = typed
        elif err["type"] in _BOUND_ERRORS and loc and isinstance(loc[-1], str):
            span = allowed_range(_model_at(root, loc[:-1]), loc[-1])
            if span is not None:
                msg = f"{_number(err.get('input'))} is out of range: it must be {span}"
                hint = f"set {loc[-1]} to a value {span}"
        problems.append(f"{field}: {msg}")
        where = where or field
        fix = fix or hint or err.get("fix") or _FIXES.get(err["type"])
    return problems, fix, where or "(top level)"
