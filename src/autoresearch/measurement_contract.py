"""What a session measures is fixed when it starts; the rest of its settings may change.

A session's verdicts compare runs with runs recorded hours earlier, so the settings that define a
run's number must be the same for all of them: the objective's name and direction and how it is
read from the output, and the verify command with its budget and environment. The session's
config is recorded when it starts; on resume, `autoresearch.toml` is read again (the proposer,
the workers, the limits, the decision's settings may change from then on: they decide what is
tried and how, not what a number means), and a change to any of these refuses the resume, since
the runs before and after it would be compared as if they measured one thing. A session that has
measured nothing yet (its baseline never passed) takes the new settings instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from autoresearch.config import CONFIG_NAME, Config
from autoresearch.errors import PreconditionError

# (table, key) of the settings that define what a run's number means.
MEASURED = (
    ("metric", "name"),
    ("metric", "direction"),
    ("metric", "format"),
    ("metric", "patterns"),
    ("verify", "command"),
    ("verify", "budget_seconds"),
    ("verify", "env"),
)


def _value(config: Mapping[str, Any], table: str, key: str) -> Any:
    section = config.get(table)
    return section.get(key) if isinstance(section, Mapping) else None


def _shown(value: Any) -> str:
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 80 else text[:77] + "…"


def measurement_changes(recorded: Mapping[str, Any], config: Config) -> list[str]:
    """The measured settings that differ from the session's recorded config, as
    "[metric] direction: 'minimize' → 'maximize'"."""
    now = config.to_json_dict()
    changes = []
    for table, key in MEASURED:
        section = recorded.get(table)
        if not isinstance(section, Mapping) or key not in section:
            continue  # recorded by a version that had no such setting
        before, after = section[key], _value(now, table, key)
        if before != after:
            changes.append(f"[{table}] {key}: {_shown(before)} → {_shown(after)}")
    return changes


def other_changes(recorded: Mapping[str, Any], config: Config) -> list[str]:
    """The other settings that differ, as "[proposer] name": they take effect from now on."""
    now = config.to_json_dict()
    measured = set(MEASURED)
    changed = []
    for table in sorted(set(recorded) | set(now)):
        before, after = recorded.get(table), now.get(table)
        if isinstance(before, Mapping) and isinstance(after, Mapping):
            keys = sorted(k for k in set(before) | set(after)
                          if (table, k) not in measured and before.get(k) != after.get(k))
            changed += [f"[{table}] {k}" for k in keys]
        elif before != after:
            changed.append(f"[{table}]" if isinstance(before or after, Mapping) else table)
    return changed


def refuse_changed_measurement(tag: str, recorded: Mapping[str, Any], config: Config,
                               where: str) -> None:
    """Refuse to go on with a session whose measured settings changed since it started."""
    changes = measurement_changes(recorded, config)
    if not changes:
        return
    raise PreconditionError(
        f"{CONFIG_NAME} changed what session {tag!r} measures since it last ran: "
        + "; ".join(changes) + ". Its recorded runs would be compared with runs that measure "
        "something else",
        where=where,
        fix=f"start a new session with these settings (autoresearch run --tag NEW), or set them "
            f"back in {CONFIG_NAME} to go on with {tag!r}",
    )
