"""Untracked files of the user's checkout that every worktree needs: `[verify] share`.

Experiments run in worktrees that hold only committed files, so what a project prepares and
git-ignores (`data/*.bin`, tokenizers, checkpoints, `.env`) is missing there and the verify
command fails on its own FileNotFoundError. `share = ["data/shakespeare_char/*.bin"]` lists
such files (globs as in `scope`; a directory covers every untracked file below it), and each
worktree gets them at the same relative path.

Links, not copies: prepared data is often large (nanoGPT's openwebtext `train.bin` is 17 GB) and
a worktree per slot would multiply it. Each shared file is a symlink to the checkout's own file,
made after every worktree reset (re-making a correct link is a readlink, so this is cheap).
A link gives no write protection, so the files are stamped when the session starts (size,
modification and change time, inode: a write cannot leave the change time alone) and the
stamps are compared before and after every run. A difference stops the session: the data the
measurements depend on is no longer the data the session started with, and the file changed is
the user's own, so nothing here can restore it.

Rules (checked before a session starts, so a mistake costs nothing): a shared file must be
untracked and git-ignored (the worktree would otherwise commit the link with `git add -A`), must
not be in the scope, and each pattern must match at least one file.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from autoresearch import gitops
from autoresearch.config import CONFIG_NAME, STATE_DIR, Config
from autoresearch.errors import ConfigError, PreconditionError
from autoresearch.file_stamp import Stamp
from autoresearch.gitops.runner import git, run_git
from autoresearch.globs import matches
from autoresearch.stop_signals import SessionStopped

__all__ = ["ShareHint", "SharedData", "collect", "for_worktree", "suggest_share"]


@dataclass(frozen=True)
class SharedFile:
    path: str  # repo-relative, POSIX
    source: Path  # the file in the user's checkout
    stamp: Stamp


class SharedData:
    """The shared files of one checkout, linked into worktrees and watched for changes."""

    def __init__(self, files: Sequence[SharedFile] = ()) -> None:
        self.files = list(files)

    def __bool__(self) -> bool:
        return bool(self.files)

    def __len__(self) -> int:
        return len(self.files)

    def link(self, worktree: Path) -> None:
        """Make every shared file a link to the checkout's file in `worktree` (idempotent)."""
        for shared in self.files:
            target = worktree / shared.path
            want = str(shared.source)
            try:
                if os.readlink(target) == want:
                    continue
            except OSError:
                pass  # missing, or not a link
            _remove(target)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(want)

    def changed(self) -> list[str]:
        """The shared files whose content may differ from when the session started."""
        return [f.path for f in self.files if Stamp.of(f.source) != f.stamp]

    def check_unchanged(self) -> None:
        """Stop the session (exit 3) when a shared file's content may have changed."""
        changed = self.changed()
        if changed:
            shown = ", ".join(changed[:5]) + (" …" if len(changed) > 5 else "")
            raise SessionStopped(
                f"shared data changed while the session used it: {shown}. These are your "
                "checkout's own files ([verify] share links them, it does not copy them), "
                "written by the verify command, the proposer or another program, so results "
                "measured before and after would not be comparable. Restore the data (re-run "
                "your preparation step), make the command open it read-only, then run the same "
                "command to resume.", exit_code=3)

    def ready(self, worktree: Path) -> None:
        """Before a run: the links in place, and the data what the session started with (a
        proposer could have written through a link)."""
        self.link(worktree)
        self.check_unchanged()


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


def normalize(pattern: str) -> str:
    """`./data/` and `data` name the same thing."""
    return pattern.strip().removeprefix("./").rstrip("/")


def _expand(root: Path, pattern: str) -> list[str]:
    """Files below `root` the pattern names (a directory names every file below it)."""
    text = normalize(pattern)
    found: set[str] = set()
    for hit in glob.glob(text, root_dir=root, recursive=True, include_hidden=True):
        rel = PurePosixPath(Path(hit).as_posix())
        if rel.parts and rel.parts[0] in (".git", STATE_DIR):
            continue
        full = root / rel
        if full.is_dir() and not full.is_symlink():
            for dirpath, dirnames, filenames in os.walk(full):
                dirnames[:] = [d for d in dirnames if d != ".git"]
                base = Path(dirpath).relative_to(root).as_posix()
                found.update(f"{base}/{name}" for name in filenames)
        elif full.is_file():
            found.add(rel.as_posix())
    # glob's `*` and ours agree on plain names; keep only what our own glob rules select.
    return sorted(p for p in found if matches(p, [text]))


def _ignored(root: Path, paths: Iterable[str]) -> set[str]:
    """Which of the (untracked) paths git ignores in `root`."""
    paths = list(paths)
    if not paths:
        return set()
    # check-ignore takes file names, not pathspecs, and refuses the literal-pathspec setting.
    proc = run_git(root, "check-ignore", "-z", "--stdin",
                          input_bytes="\0".join(paths).encode() + b"\0",
                          unset=("GIT_LITERAL_PATHSPECS",))
    return {p.decode() for p in proc.stdout.split(b"\0") if p}


def collect(root: Path, config: Config) -> SharedData:
    """Resolve `[verify] share` in the checkout at `root`; a ConfigError (exit 2) for a pattern
    that names tracked, unignored or in-scope files, a PreconditionError (exit 3) for one that
    matches nothing yet (the data is not prepared)."""
    patterns = config.verify.share
    if not patterns:
        return SharedData()
    root = root.resolve()
    tracked = set(gitops.tracked_files(root))
    where = f"{root / CONFIG_NAME} → verify.share"
    chosen: dict[str, None] = {}
    for pattern in patterns:
        hits = _expand(root, pattern)
        untracked = [p for p in hits if p not in tracked]
        if not untracked:
            if hits:
                raise ConfigError(
                    f"shared {pattern!r} names only files git tracks ({', '.join(hits[:3])}"
                    f"{' …' if len(hits) > 3 else ''}): every worktree has them already",
                    where=where, fix=f"remove {pattern!r} from share")
            raise PreconditionError(
                f"shared {pattern!r} matches no file in your checkout: the data it names is "
                "not there (yet)", where=where,
                fix="prepare the data in your checkout first (e.g. run the project's prepare "
                "script), or correct the pattern")
        chosen.update(dict.fromkeys(untracked))
    files = list(chosen)
    in_scope = [p for p in files if matches(p, config.scope)]
    if in_scope:
        raise ConfigError(f"shared files are inside the scope: {', '.join(in_scope[:5])}",
                          where=where, fix="narrow the scope or the share pattern: a shared file "
                          "is your checkout's own and may not be edited by the proposer")
    not_ignored = sorted(set(files) - _ignored(root, files))
    if not_ignored:
        shown = ", ".join(not_ignored[:5]) + (" …" if len(not_ignored) > 5 else "")
        raise ConfigError(
            f"shared files must be git-ignored, and these are not: {shown} (a worktree would "
            "commit them with the next change)", where=where,
            fix="add them to .gitignore (e.g. " + _ignore_line(not_ignored) + ") and commit it")
    out = []
    for path in files:
        source = root / path
        stamp = Stamp.of(source)  # the file a link points at, as the run sees it
        if stamp is not None:
            out.append(SharedFile(path, source, stamp))
    return SharedData(out)


def _ignore_line(paths: Sequence[str]) -> str:
    parents = {str(PurePosixPath(p).parent) for p in paths}
    if len(parents) == 1 and (parent := parents.pop()) != ".":
        return str(parent)
    return paths[0]


def checkout_of(worktree: Path) -> Path:
    """The user's checkout (the main working tree) that a worktree belongs to."""
    common = git(worktree, "rev-parse", "--path-format=absolute", "--git-common-dir")
    return Path(common).resolve().parent


def for_worktree(config: Config, worktree: Path) -> SharedData:
    """The shared data of the checkout `worktree` belongs to (nothing to do without share)."""
    if not config.verify.share:
        return SharedData()
    return collect(checkout_of(worktree), config)


# --- check: the dry run failed on a file that only the user's checkout has --------------------

# An opening quote is not an apostrophe inside a word: "can't open file 'x.py'" quotes x.py.
_QUOTED = r"""(?<![A-Za-z])['"`]([^'"`\n]{1,400})['"`]"""
_BARE = r"(?:^|[\s(=:,])((?:\.{0,2}/)?[\w.@+-]+(?:/[\w.@+-]+)+|[\w@+-]+\.\w{1,8})(?=$|[\s),:;'\"])"


def missing_paths(log_text: str, worktree: Path) -> list[str]:
    """Repo-relative paths a failed run's output mentions (quoted or path-like), newest first.
    Absolute paths inside the run's worktree are made relative to it."""
    base = str(worktree.resolve())
    raw: list[str] = []
    for line in reversed(log_text.splitlines()[-200:]):
        raw += re.findall(_QUOTED, line) + re.findall(_BARE, line)
    out: dict[str, None] = {}
    for token in raw:
        token = token.strip()
        for prefix in (base + "/", str(worktree) + "/"):
            if token.startswith(prefix):
                token = token[len(prefix):]
        token = token.removeprefix("./")
        if token and not token.startswith("/") and ".." not in token.split("/"):
            out[token] = None
    return list(out)


@dataclass(frozen=True)
class ShareHint:
    missing: str  # the file the run failed on
    line: str  # the `share = [...]` line to write under [verify]
    files: list[str]  # what it would share
    ignored: bool = True  # False: git does not ignore it yet (it must be, to be shared)


def suggest_share(root: Path, config: Config, log_text: str, worktree: Path) -> ShareHint | None:
    """When a failed run names a file that exists in the checkout but is untracked (so not in the
    worktree), the `share` line that brings it. An ignored file is preferred: one git does not
    ignore must be ignored first (or committed, if it belongs in the repository)."""
    root = root.resolve()
    tracked = set(gitops.tracked_files(root))
    wanted = [p for p in missing_paths(log_text, worktree)
              if p not in tracked and (root / p).exists()
              and not matches(p, [normalize(x) for x in config.verify.share])]
    if not wanted:
        return None
    ignored = _ignored(root, wanted)
    path = next((p for p in wanted if p in ignored), wanted[0])
    pattern = _share_pattern(root, path, tracked) if path in ignored else path
    shown = ", ".join(json.dumps(p) for p in [*config.verify.share, pattern])
    files = [p for p in _expand(root, pattern) if p not in tracked]
    return ShareHint(path, f"share = [{shown}]", files, ignored=path in ignored)


def _share_pattern(root: Path, path: str, tracked: set[str]) -> str:
    """The pattern to suggest: the file's directory when everything untracked in it is ignored
    data (the run will want its siblings too: nanoGPT reads train.bin, val.bin and meta.pkl),
    else the file itself."""
    full = root / path
    if full.is_dir():
        return path
    parent = PurePosixPath(path).parent
    if str(parent) == ".":
        return path
    siblings = [f"{parent}/{c.name}" for c in (root / str(parent)).iterdir() if c.is_file()]
    untracked = [s for s in siblings if s not in tracked]
    if len(untracked) > 1 and set(untracked) <= _ignored(root, untracked):
        suffixes = {PurePosixPath(s).suffix for s in untracked}
        if len(suffixes) == 1 and "" not in suffixes:
            return f"{parent}/*{suffixes.pop()}"
        return str(parent)
    return path
