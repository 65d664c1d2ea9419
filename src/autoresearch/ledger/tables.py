"""What every group of the ledger's tables is given by `Ledger`: its transactions and its queries.

Each group (sessions, experiments, runs, usage and events, reviews) is a class of its own module,
and `Ledger` is all of them over one connection; this base names what they use of it."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any


class LedgerTables:
    """A group of the ledger's tables, written and read through the ledger's connection."""

    if TYPE_CHECKING:  # provided by Ledger, which these tables are part of
        def _tx(self) -> AbstractContextManager[sqlite3.Connection]: ...

        def _query(self, sql: str, args: Sequence[Any] = ()) -> list[sqlite3.Row]: ...
