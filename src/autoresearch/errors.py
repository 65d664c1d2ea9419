"""User-facing errors: each says what is wrong, where, and how to fix it.

The CLI turns any of these into a message on stderr and a non-zero exit code, never a traceback.
"""

from __future__ import annotations


class AutoresearchError(Exception):
    """Base class for errors the user can act on."""

    exit_code = 1

    def __init__(self, what: str, *, where: str | None = None, fix: str | None = None) -> None:
        self.what = what
        self.where = where
        self.fix = fix
        super().__init__(self.render())

    def render(self) -> str:
        lines = [self.what]
        if self.where:
            lines.append(f"  where: {self.where}")
        if self.fix:
            lines.append(f"  fix:   {self.fix}")
        return "\n".join(lines)


class ConfigError(AutoresearchError):
    """The contract file (autoresearch.toml) is missing or invalid."""

    exit_code = 2


class PreconditionError(AutoresearchError):
    """The repository or environment is not in a state where a session may start."""

    exit_code = 3


class ProposalError(AutoresearchError):
    """A proposer could not produce a usable proposal (not a crash of the loop)."""


class SessionLockedError(AutoresearchError):
    """Another live process holds the session lock."""

    exit_code = 4
