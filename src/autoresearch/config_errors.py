"""Pydantic's validation errors of the contract file, said as a user can act on them.

One line per problem ("verify.budget_seconds: …"), the fix for the first, and the field it is
at: an unknown key gets the nearest valid name of its table (`budget_second` → `budget_seconds`),
a value outside a fixed set the nearest allowed one, a number out of range the whole range the
field allows. A validator says what to do by raising `Refusal` (its fix, and the key of the table
it is about when the validator checks the whole table).
"""

from __future__ import annotations

import difflib
import json
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


def _is_union_member(item: int | str) -> bool:
    """A location step that names a member of a union type (`int`, `literal['auto']`,
    `list[str]`), not a key of the file."""
    return isinstance(item, str) and (item in _TYPE_WORDS or "[" in item)


def _member_words(tag: str) -> str:
    if tag.startswith("literal["):
        return " or ".join(json.dumps(v) for v in re.findall(r"'([^']*)'", tag))
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
    return merged


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
        elif err["type"] in _BOUND_ERRORS and loc and isinstance(loc[-1], str):
            span = allowed_range(_model_at(root, loc[:-1]), loc[-1])
            if span is not None:
                msg = f"{_number(err.get('input'))} is out of range: it must be {span}"
                hint = f"set {loc[-1]} to a value {span}"
        problems.append(f"{field}: {msg}")
        where = where or field
        fix = fix or hint or err.get("fix") or _FIXES.get(err["type"])
    return problems, fix, where or "(top level)"
