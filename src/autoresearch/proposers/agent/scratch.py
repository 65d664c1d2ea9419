"""The temporary directory each agent run gets for its prompt file (and aider's history files).

Its name says which orchestrator made it (`process_tree.owned_prefix`: pid and start time), so
that what an orchestrator killed by kill -9 left in the temporary directory can be told from
what a live session is using, and removed when the next session starts (`remove_dead_scratch`).
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from pathlib import Path

from autoresearch.process_tree import owned_prefix, owner_gone

SCRATCH_PREFIX = "autoresearch-agent-"


def make_scratch() -> Path:
    """A new directory for one agent run, named after this process."""
    return Path(tempfile.mkdtemp(prefix=owned_prefix(SCRATCH_PREFIX)))


def remove_dead_scratch() -> list[Path]:
    """Remove the agent run directories whose orchestrator is gone: only this user's (the
    temporary directory is shared), only real directories (not a link someone planted), and
    never a live process's (another session's agent is reading its prompt there)."""
    removed = []
    for path in Path(tempfile.gettempdir()).glob(f"{SCRATCH_PREFIX}*"):
        if _ours(path) and owner_gone(path.name, SCRATCH_PREFIX):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _ours(path: Path) -> bool:
    try:
        st = path.lstat()
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid()
