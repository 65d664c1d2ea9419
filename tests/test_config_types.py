"""A value of autoresearch.toml is taken as the type TOML gives it, never converted.

Pydantic's lax mode read `budget_seconds = true` as a budget of 1 s, `budget_seconds = "5"` as
5, `drift = "no"` and `drift = 0` as false, while `[verify.env] FOO = 1` was refused. Each
number, boolean, string and list of strings of every table now refuses a value of another type,
saying what was given, at which field, and how to write it; a whole number is still a number
(`budget_seconds = 5`), and an environment variable's value may be a number (`FOO = 1` → "1").
"""

from __future__ import annotations

import json
import typing
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from autoresearch import config as config_module
from autoresearch.config import load_config_text
from autoresearch.config_sections import Amount
from autoresearch.errors import ConfigError

PATH = Path("autoresearch.toml")
BASE: dict[str, Any] = {"scope": ["a.py"],
                        "verify": {"command": "true", "budget_seconds": 10},
                        "metric": {"name": "m", "direction": "minimize"}}
GUARD = {"metric": "m", "max": 1}
# The model of each table; [[guards]] is a list of tables.
TABLES: dict[str, type[BaseModel]] = {
    "verify": config_module.VerifyConfig, "metric": config_module.MetricConfig,
    "guards": config_module.GuardConfig, "decision": config_module.DecisionConfig,
    "limits": config_module.LimitsConfig, "run": config_module.RunConfig,
    "review": config_module.ReviewConfig, "proposer": config_module.ProposerConfig,
}


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {toml_value(v)}"
                                for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(value)


def toml(data: dict[str, Any]) -> str:
    """The TOML text of `data` (top-level keys, then one table each, [[guards]] as a list)."""
    lines = [f"{k} = {toml_value(v)}" for k, v in data.items() if not isinstance(v, dict | list)
             or isinstance(v, list) and k != "guards"]
    for name, table in data.items():
        if isinstance(table, dict):
            lines += [f"[{name}]"] + [f"{k} = {toml_value(v)}" for k, v in table.items()]
    for guard in data["guards"] if isinstance(data.get("guards"), list) else []:
        lines += ["[[guards]]"] + [f"{k} = {toml_value(v)}" for k, v in guard.items()]
    return "\n".join(lines) + "\n"


def with_value(table: str | None, key: str, value: Any) -> str:
    data = json.loads(json.dumps(BASE))
    if table is None:
        data[key] = value
    elif table == "guards":
        data["guards"] = [{**GUARD, key: value}]
    else:
        data[table] = {**data.get(table, {}), key: value}
    return toml(data)


def refusal(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as raised:
        load_config_text(text, PATH)
    return raised.value


def types_of(annotation: Any) -> set[Any]:
    """The plain types a field's annotation admits (`int | Literal["auto"]` → {int, "auto"})."""
    found: set[Any] = set()
    for member in typing.get_args(annotation) or (annotation,):
        origin = typing.get_origin(member)
        if origin is typing.Literal:
            found |= set(typing.get_args(member))
        elif origin is not None:
            found.add(origin)  # list[str] → list, dict[str, Any] → dict
        else:
            found.add(member)
    return found


# The values of another type each kind of field must refuse (the TOML file's own types).
WRONG = {
    float: [True, False, "5", "1.5"],
    int: [True, "5", 2.0],
    bool: ["true", "yes", "false", 1, 0],
    str: [1, 2.5, True],
}


def wrong_type_cases() -> list[Any]:
    cases = []
    for table, model in TABLES.items():
        for key, field in model.model_fields.items():
            kinds = types_of(field.annotation)
            for kind, values in WRONG.items():
                if kind not in kinds:
                    continue
                if kind is float and int in kinds or kind is str and kinds & {int, bool}:
                    continue
                for value in values:
                    if kind is int and value == 2.0 and float in kinds:
                        continue  # 2.0 is a number wherever a number is taken
                    cases.append(pytest.param(table, key, value, id=f"{table}.{key}={value!r}"))
    for key in ("scope", "protected"):
        cases += [pytest.param(None, key, 1, id=f"{key}=1"),
                  pytest.param(None, key, True, id=f"{key}=true")]
    return cases


@pytest.mark.parametrize(("table", "key", "value"), wrong_type_cases())
def test_every_field_refuses_a_value_of_another_type(table: str | None, key: str,
                                                     value: Any) -> None:
    err = refusal(with_value(table, key, value))
    field = key if table is None else ("guards[0]." if table == "guards" else f"{table}.") + key
    assert err.where == f"autoresearch.toml → {field}", err.render()
    assert f"{field}: expected " in err.what, err.what
    assert f"got {toml_value(value)}" in err.what, err.what  # what was given, as written


def test_the_cases_cover_every_number_and_boolean_of_every_table() -> None:
    covered = {(c.values[0], c.values[1]) for c in wrong_type_cases()}
    for table, model in TABLES.items():
        for key, field in model.model_fields.items():
            if types_of(field.annotation) & {int, float, bool}:
                assert (table, key) in covered, f"[{table}] {key}"
    assert ("verify", "budget_seconds") in covered and ("decision", "drift") in covered


@pytest.mark.parametrize(
    ("table", "key", "value", "what", "fix"),
    [
        ("verify", "budget_seconds", True, "verify.budget_seconds: expected a number, got true "
         "(a boolean)", "as a number (true and false are not numbers)"),
        ("verify", "budget_seconds", "5", 'expected a number, got "5" (a string)',
         "write budget_seconds = 5 under [verify], without quotes"),
        ("verify", "max_log_mb", "lots", 'got "lots" (a string)',
         "write max_log_mb under [verify] as a number, without quotes (e.g. max_log_mb = 20)"),
        ("decision", "drift", "yes", 'expected true or false, got "yes" (a string)',
         "write drift = true under [decision], without quotes"),
        ("decision", "deterministic", "false", 'got "false"',
         "write deterministic = false under [decision], without quotes"),
        ("run", "affinity", 1, "expected true or false, got 1 (a whole number)",
         "write affinity = true under [run] (true or false, not 1)"),
        ("run", "workers", 2.0, "expected a whole number, got 2.0 (a number)",
         "write workers = 2 under [run] (a whole number)"),
        ("run", "workers", "2", 'got "2" (a string)', "write workers = 2 under [run], without "
         "quotes"),
        ("decision", "repeats", "3", 'expected a whole number or "auto", got "3"',
         "write repeats = 3 under [decision], without quotes"),
        ("decision", "headline_pairs", True, 'expected a whole number or "auto", got true',
         'write headline_pairs as a whole number or "auto"'),
        ("review", "llm", "yes", 'expected true or false or a table, got "yes"',
         "write llm = true under [review], without quotes"),
        ("guards", "max", "5", 'guards[0].max: expected a number, got "5" (a string)',
         "write max = 5 under [[guards]], without quotes"),
        ("metric", "name", 5, "metric.name: expected a string, got 5 (a whole number)",
         'write name = "5" under [metric] (in quotes)'),
        ("verify", "env", {"DEBUG": True}, "verify.env.DEBUG: expected a string, got true",
         'write DEBUG = "true" under [verify.env] (in quotes)'),
        (None, "scope", ["a.py", 1], "scope[1]: expected a string, got 1 (a whole number)",
         'write this item of scope as "1" (in quotes)'),
        (None, "scope", "a.py", 'scope: expected a list of strings (["a", "b"]), got "a.py"',
         'write scope = ["a.py"] (a list, in brackets)'),
        (None, "guards", 5, "guards: expected a list of tables, got 5 (a whole number)",
         "write each as its own [[guards]] table"),
        ("verify", "share", "data/", 'verify.share: expected a list of strings',
         'write share = ["data/"] under [verify] (a list, in brackets)'),
    ],
)
def test_the_error_says_what_was_given_and_how_to_write_it(table: str | None, key: str,
                                                           value: Any, what: str,
                                                           fix: str) -> None:
    err = refusal(with_value(table, key, value))
    assert what in err.what, err.what
    assert fix in (err.fix or ""), err.fix


def test_a_table_given_a_value_is_said_to_need_a_table() -> None:
    err = refusal('scope = ["a.py"]\nverify = 5\n[metric]\nname = "m"\ndirection = "minimize"\n')
    assert "verify: expected a table, got 5 (a whole number)" in err.what
    assert err.fix is not None and "write [verify] as a table" in err.fix


def test_whole_numbers_are_numbers() -> None:
    # A float field takes an integer as it is written (`budget_seconds = 5`).
    text = toml({**BASE, "verify": {"command": "true", "budget_seconds": 5, "max_log_mb": 20,
                                    "timeout_seconds": 60},
                 "guards": [{"metric": "m", "max": 150, "min": 1}],
                 "decision": {"min_effect": 1, "repeats": 3, "policy": "classic", "noise_k": 2},
                 "limits": {"max_hours": 8, "max_usd": 5, "compute_usd_per_hour": 0},
                 "run": {"ray_cpus": 2, "ray_gpus": 0}, "review": {"max_usd": 2}})
    config = load_config_text(text, PATH)
    assert config.verify.budget_seconds == 5.0 and isinstance(config.verify.budget_seconds, float)
    assert config.guards[0].max == 150.0 and config.limits.max_hours == 8.0
    assert config.decision.noise_k == 2.0 and config.run.ray_cpus == 2.0
    assert config.decision.min_effect == Amount(value=1.0, relative=False)


def test_environment_values_may_be_numbers_and_are_passed_as_their_text() -> None:
    # An environment variable is text; `OMP_NUM_THREADS = 1` is how TOML writes it naturally.
    config = load_config_text(
        with_value("verify", "env", {"OMP_NUM_THREADS": 1, "LR": 0.5, "NAME": "x"}), PATH)
    assert config.verify.env == {"OMP_NUM_THREADS": "1", "LR": "0.5", "NAME": "x"}
    err = refusal(with_value("verify", "env", {"DEBUG": False}))  # "false"? "0"? "False"?
    assert "verify.env.DEBUG: expected a string, got false (a boolean)" in err.what


def test_the_knob_specs_stay_strings() -> None:
    err = refusal(toml(BASE) + '[knobs]\n"a.py:X" = 5\n')
    assert 'knobs."a.py:X": expected a string, got 5' in err.what
    assert err.where == 'autoresearch.toml → knobs."a.py:X"'


@pytest.mark.parametrize(
    ("table", "key"), [("decision", "min_effect"), ("guards", "max_increase"),
                       ("guards", "max_decrease")])
def test_an_amount_in_quotes_must_be_a_percentage(table: str, key: str) -> None:
    # "0.5" was read as the absolute 0.5: a percentage that lost its "%" differs from it by the
    # incumbent's size / 100.
    field = f"{table}.{key}" if table != "guards" else f"guards[0].{key}"
    err = refusal(with_value(table, key, "0.5"))
    assert f'{field}: "0.5" is a string, and an amount in quotes is a percentage' in err.what
    assert err.fix == (f'write {key} = 0.5 (absolute, without quotes) or {key} = "0.5%" '
                       "(relative to the incumbent)")
    assert err.where == f"autoresearch.toml → {field}"
    for value in (True, [1], {"a": 1}):  # a list or a table was a TypeError: a traceback
        err = refusal(with_value(table, key, value))
        assert f'{field}: expected a number or a percentage such as "0.5%", got' in err.what
    for value, amount in ((0.5, Amount(value=0.5, relative=False)),
                          ("0.5%", Amount(value=0.005, relative=True))):
        config = load_config_text(with_value(table, key, value), PATH)
        section = config.guards[0] if table == "guards" else config.decision
        assert getattr(section, key) == amount
