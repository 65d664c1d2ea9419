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
        # A long fix may be several lines (steps to recover): they line up under the first.
        if self.where:
            lines.append("  where: " + self.where.replace("\n", "\n         "))
        if self.fix:
            lines.append("  fix:   " + self.fix.replace("\n", "\n         "))
        return "\n".join(lines)


class ConfigError(AutoresearchError):
    """The contract file (autoresearch.toml) is missing or invalid."""

    exit_code = 2


class PreconditionError(AutoresearchError):
    """The repository or environment is not in a state where a session may start."""

    exit_code = 3


class SessionLockLostError(PreconditionError):
    """The session's lock file was removed while it ran, and nothing else changed: it stops
    (a second `run` could start beside it), its ledger still its own (see ledger_watch)."""


class ProposalError(AutoresearchError):
    """A proposer could not produce a usable proposal (not a crash of the loop)."""


class SessionLockedError(AutoresearchError):
    """Another live process holds the session lock."""

    exit_code = 4


class LedgerError(AutoresearchError):
    """The ledger cannot be used as it is: damaged, not a ledger, or from a newer autoresearch.

    Refused like a precondition (exit 3): nothing is written to it, and the message says what
    survives elsewhere (results.tsv, the git refs, the backup) and how to recover.
    """

    exit_code = 3


class LedgerDamagedError(LedgerError):
    """ledger.db is truncated, overwritten, not an SQLite file, or fails SQLite's own check."""


class LedgerTamperedError(LedgerError):
    """Another process changed the session's rows of the ledger (see ledger_watch); the ledger
    is refused from then on, until it is recovered like a damaged one."""


class LedgerTooNewError(LedgerError):
    """ledger.db was written by a newer autoresearch, with a schema this version does not know."""


class DiskFullError(AutoresearchError):
    """A write failed because the filesystem is full (or the user's quota is used up).

    An environment problem (exit 3): the session stops where it is; once space is freed, the
    same command resumes it, since every earlier write is intact.
    """

    exit_code = 3


class LedgerEmptyError(AutoresearchError):
    """The ledger exists but no session was ever recorded in it (a read-only view has nothing)."""
