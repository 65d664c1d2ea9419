"""`autoresearch finalize`: turn a session's kept commits into clean, independent review branches.

Kept commits are grouped so that no two groups touch the same file: commits that share a file
(directly, or through a chain of other commits) land in the same group. Each group becomes one
branch from the session's base commit. Because a file belongs to exactly one group, the group's
commits can be replayed with git plumbing alone (the file's content at each step is exactly the
source commit's), so there are no merge conflicts, no working tree and no checkout involved, and
re-running finalize recreates byte-identical commits.

Before any branch is written, two checks that do not trust the grouping are made on the new
commits: their changed files are pairwise disjoint, and applying all of them to the base gives
exactly the session's final tree. The branches are then written in one ref transaction (all of
them or none), once no new name is found in the way of an existing branch (git cannot have both
`x` and `x/y`). Finalize never pushes and never touches the base branch; the command runs one
finalize of a session at a time (`finalize.lock`).

A branch under the prefix that this finalize did not write is named as an earlier finalize's
(with the command that deletes it) only on evidence that finalize wrote it: its name has the
shape finalize gives (`<prefix>NN-<slug>`), and every commit on it past the base is one finalize
made from a commit of this session (its `Autoresearch-Source` trailer), in a line from the base.
A colleague's branch, one with a commit of the user's on it, another session's, the session's
own branch and a checked-out branch are never offered for `git branch -D`. A prefix that would
mix the branches with every other one (empty) or make names git reads as something else
(`refs/…`, `tags/…`, `HEAD…`) is refused as a bad option (exit 2) before any branch is written.

This module is the command and its checks; the grouping and the branch names are in
`finalize.groups`, the replay in `finalize.replay`, and `--verify`'s re-measurement of each
branch in `finalize.verify`.
"""

from __future__ import annotations

import re
import shlex
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from autoresearch.errors import AutoresearchError, ConfigError
from autoresearch.finalize.groups import (
    SourceCommit,
    group_branch,
    group_commits,
    group_slug,
    is_group_branch,
)
from autoresearch.finalize.replay import SOURCE_TRAILER, PrivateIndex, replay_commits
from autoresearch.gitops import tree_of
from autoresearch.gitops.history import changed_files, diff_names, is_ancestor, rev_list
from autoresearch.gitops.runner import GitError, git
from autoresearch.ledger import ExperimentRow
from autoresearch.views.summary import open_ledger, resolve_session

DEFAULT_PREFIX = "autoresearch-final/{tag}/"


class FinalizeError(AutoresearchError):
    """The session cannot be finalized as asked."""


class PrefixError(FinalizeError, ConfigError):
    """--prefix cannot name finalize's branches: a bad command-line option (exit 2)."""


@dataclass
class ChangeGroup:
    index: int
    commits: list[SourceCommit]
    files: list[str]
    branch: str = ""
    tip: str = ""
    existed: bool = False

    @property
    def title(self) -> str:
        """What the group holds: every change's title, in order."""
        return "; ".join(c.title for c in self.commits)

    @property
    def name(self) -> str:
        """A branch-name slug for what the group holds, all of it (not its first change)."""
        return group_slug([c.title for c in self.commits])


@dataclass
class FinalizeResult:
    tag: str
    base_commit: str
    session_tip: str
    groups: list[ChangeGroup]
    session_tree: str
    union_tree: str
    warnings: list[str] = field(default_factory=list)

    @property
    def reproduced(self) -> bool:
        return self.session_tree == self.union_tree


def _source_commits(repo: Path, base: str, tip: str, titles: dict[str, tuple[str, str]],
                    restore: str) -> list[SourceCommit]:
    if not is_ancestor(repo, base, tip):
        raise FinalizeError(f"the session branch does not descend from its base {base[:12]}: "
                            "it was rewritten or reset", fix=restore)
    if rev_list(repo, ["--merges", f"{base}..{tip}"]):
        raise FinalizeError("the session branch contains merge commits",
                            fix="finalize handles the linear history a session writes")
    out: list[SourceCommit] = []
    for sha in rev_list(repo, ["--reverse", "--first-parent", f"{base}..{tip}"]):
        exp_id, title = titles.get(sha, (None, ""))
        files = changed_files(repo, sha)
        subject = None
        if exp_id is not None and not title:
            # Proposed without a hypothesis: the session's commit says only "experiment", which
            # names neither the branch nor the change; what it changed does.
            title = subject = _what_changed(files)
        title = title or git(repo, "show", "-s", "--format=%s", sha).strip()
        out.append(SourceCommit(sha, exp_id, title, files, subject))
    return out


def _first_line(hypothesis: str) -> str:
    """A hypothesis's first line; "" for one that is blank or only whitespace."""
    return next(iter(hypothesis.strip().splitlines()), "").strip()


def _what_changed(files: list[str], shown: int = 3) -> str:
    if not files:
        return "change nothing"
    more = f" and {len(files) - shown} more" if len(files) > shown else ""
    return f"change {', '.join(files[:shown])}{more}"


def _restore_hint(branch: str, kept: list[ExperimentRow], *, branch_exists: bool) -> str:
    """How to put the session branch back at its last kept commit (the fix of a deleted, reset
    or rewritten branch)."""
    if not kept:
        return "finalize needs the branch the session wrote"
    last = (kept[-1].commit_sha or "")[:12]
    where = (f"with `git branch -f {branch} {last}` (what it pointed to stays in "
             f"`git reflog {branch}`)" if branch_exists else f"with `git branch {branch} {last}`")
    return (f"the session's last kept commit is {last} ({kept[-1].id}): put the branch back "
            f"{where}, then finalize again")


def _check_branch_name(repo: Path, name: str) -> None:
    if git(repo, "check-ref-format", "--branch", name, check=False).strip() != name:
        raise PrefixError(f"{name!r} is not a valid branch name", where="--prefix",
                          fix="choose another --prefix: letters, digits, '-', '_' and '/' "
                          "(no '..', '@{', spaces, '~^:?*[\\', nor a leading '-')")


# First words of a name that git reads as something other than a branch: `refs/heads/x` or
# `tags/x` name the refs refs/heads/x and refs/tags/x before the branch (git warns the name is
# ambiguous, and commands act on the other ref); `HEAD…`, `FETCH_HEAD…`, `@…` read as HEAD.
_REF_NAMESPACES = frozenset({"refs", "heads", "tags", "remotes"})
_HEAD_LIKE = re.compile(r"(?:[A-Z]+_)*HEAD|@")
_PREFIX_FIX = ("give a prefix of its own that ends with '/', e.g. --prefix review/ (the default, "
               "autoresearch-final/{tag}/, puts each session's branches in a folder of their own)")


def _check_prefix(repo: Path, prefix: str, stem: str) -> None:
    """Refuse a --prefix (`stem`: with {tag} replaced) that makes no branch name of finalize's
    own: empty, or one git would read as another ref or as HEAD, or an invalid one."""
    said = f"--prefix {prefix!r}" + (f" (for this session: {stem!r})" if stem != prefix else "")
    first = stem.split("/", 1)[0]
    if not stem.strip():
        raise PrefixError(f"{said} is empty: finalize's branches would be mixed with every other "
                          "branch of the repository", where="--prefix", fix=_PREFIX_FIX)
    if "/" in stem and first.lower() in _REF_NAMESPACES:
        name = group_branch(stem, 1, "…")
        other = name if first.lower() == "refs" else f"refs/{name}"
        raise PrefixError(f"{said} starts with {first}/, where git keeps refs of its own: a "
                          f"branch named {name} (the ref refs/heads/{name}) would be ambiguous "
                          f"with the ref {other} (a prefix starts a branch's name, not a ref)",
                          where="--prefix", fix=_PREFIX_FIX)
    if _HEAD_LIKE.match(first):
        raise PrefixError(f"{said} makes names such as {group_branch(stem, 1, '…')}, which "
                          "read as git's own HEAD, FETCH_HEAD, ORIG_HEAD or @ (its names for "
                          "commits, not branches)", where="--prefix",
                          fix=_PREFIX_FIX)
    _check_branch_name(repo, group_branch(stem, 1, "change"))


def finalize(
    repo: Path,
    tag: str | None,
    *,
    prefix: str = DEFAULT_PREFIX,
    force: bool = False,
    log: Callable[[str], None] | None = None,
) -> FinalizeResult:
    """Create one branch per independent group of kept commits; see the module docstring."""
    say = log or (lambda _msg: None)
    ledger = open_ledger(repo)
    try:
        session = resolve_session(ledger, tag)
        exps = ledger.experiments(session.id)
    finally:
        ledger.close()
    stem = prefix.replace("{tag}", session.tag)
    _check_prefix(repo, prefix, stem)  # a bad option, refused before anything else is said
    base = session.base_commit
    tip = git(repo, "rev-parse", "--verify", "--quiet", f"refs/heads/{session.branch}^{{commit}}",
              check=False).strip()
    titles = {e.commit_sha: (e.id, _first_line(e.hypothesis))
              for e in exps if e.commit_sha and e.kind != "baseline"}
    kept = [e for e in exps if e.status == "keep" and e.kind != "baseline" and e.commit_sha]
    restore = _restore_hint(session.branch, kept, branch_exists=bool(tip))
    # The ledger's keeps are what a missing or reset branch lost: "nothing to finalize" would
    # hide them, so both errors say how many there are and how to get the branch back.
    if not tip:
        if kept:
            raise FinalizeError(f"the session branch {session.branch} does not exist, but the "
                                f"ledger records {len(kept)} kept experiment(s) of session "
                                f"{session.tag}", where=str(repo), fix=restore)
        raise FinalizeError(f"the session branch {session.branch} does not exist",
                            where=str(repo), fix="it may have been deleted; nothing to finalize")
    commits = _source_commits(repo, base, tip, titles, restore)
    if not commits:
        if kept:
            raise FinalizeError(f"the session branch {session.branch} is at its base "
                                f"{base[:12]}, but the ledger records {len(kept)} kept "
                                f"experiment(s) of session {session.tag}: it was reset",
                                fix=restore)
        raise FinalizeError(f"session {session.tag} kept no change: the branch is at its base",
                            fix="there is nothing to split into branches yet: run more "
                                "experiments (autoresearch run), then finalize")
    warnings = []
    kept_shas = {e.commit_sha for e in kept}
    for c in commits:
        if c.sha not in kept_shas:
            warnings.append(f"{c.sha[:12]} ({c.title}) is on {session.branch} but no experiment "
                            "of the session kept it (a commit made on the branch by hand): it is "
                            "included in the branches, unmeasured")
    on_branch = {c.sha for c in commits}
    for e in exps:
        if e.status == "keep" and e.kind != "baseline" and e.commit_sha not in on_branch:
            warnings.append(f"{e.id} is recorded as kept but its commit is not on {session.branch}")

    groups = [ChangeGroup(i + 1, g, sorted({f for c in g for f in c.files}))
              for i, g in enumerate(group_commits(commits))]
    with tempfile.TemporaryDirectory(prefix="ar-finalize-") as tmp:
        index = PrivateIndex(repo, tmp)
        for g in groups:
            g.branch = group_branch(stem, g.index, g.name)
            _check_branch_name(repo, g.branch)
            g.tip = replay_commits(repo, index, base, g.commits)
        union = _union_tree(repo, index, base, groups)
    result = FinalizeResult(session.tag, base, tip, groups, tree_of(repo, tip), union, warnings)
    _verify_disjoint(repo, base, groups)
    if not result.reproduced:
        raise FinalizeError("the groups together do not reproduce the session's final tree",
                            where=f"union {union[:12]} vs session {result.session_tree[:12]}",
                            fix="no branch was written; please report this as a bug")
    _write_branches(repo, groups, force, say)
    # This session's commits an earlier finalize may have replayed: those on the branch, and
    # every experiment's (the baseline's is the base, which no finalize replays).
    ours = {c.sha for c in commits} | {e.commit_sha for e in exps
                                        if e.commit_sha and e.kind != "baseline"}
    result.warnings += _stale_branches(repo, stem, groups, base=base, ours=ours,
                                       session=(session.tag, session.branch))
    return result


def _stale_branches(repo: Path, stem: str, groups: list[ChangeGroup], *, base: str,
                    ours: set[str], session: tuple[str, str]) -> list[str]:
    """Branches under the same prefix that an earlier finalize of this session wrote and this
    one did not, for an older state of the session (its names follow the groups, so they change
    as the session keeps more). Named, never deleted: they may be under review. A branch is
    named only on evidence that finalize wrote it (`_finalize_wrote`), never the session's own
    branch; a checked-out one is named apart, without the command (git refuses to delete it)."""
    tag, session_branch = session
    written = {g.branch for g in groups}
    folder = stem.rpartition("/")[0]
    listed = git(repo, "for-each-ref", "--format=%(refname)",
                 f"refs/heads/{folder}/" if folder else "refs/heads/").split()
    stale = [b for b in (r.removeprefix("refs/heads/") for r in listed)
             if is_group_branch(stem, b) and b not in written and b != session_branch
             and _finalize_wrote(repo, base, b, ours)]
    checked_out = _checked_out_branches(repo)
    free = [b for b in stale if b not in checked_out]
    held = [b for b in stale if b in checked_out]
    out = []
    if free:
        out.append(f"{len(free)} branch(es) under {stem} are from an earlier finalize of session "
                   f"{tag} and no longer match it: {', '.join(free)}; delete them once unused: "
                   f"git branch -D {' '.join(shlex.quote(b) for b in free)}")
    if held:
        out.append(f"{len(held)} branch(es) under {stem} are from an earlier finalize of session "
                   f"{tag} and no longer match it, but are checked out: " + ", ".join(
                       f"{b} (in {checked_out[b]})" for b in held)
                   + "; switch that worktree to another branch before deleting one")
    return out


_SOURCE = re.compile(rf"^{SOURCE_TRAILER}: ([0-9a-f]{{40,64}})[ \t]*$", re.MULTILINE)


def _finalize_wrote(repo: Path, base: str, branch: str, ours: set[str]) -> bool:
    """Whether `branch` is, past `base`, only commits finalize made from this session's: one
    line of single-parent commits from `base` (at least one), each with the source trailer
    finalize writes naming one of `ours`. A branch from elsewhere, another session's, or one
    with a commit of the user's on it (a review fix) is not."""
    ref = f"refs/heads/{branch}"
    if not is_ancestor(repo, base, ref):
        return False
    log = git(repo, "log", "-z", "--no-show-signature", "--format=%P%n%B", f"{base}..{ref}", "--")
    records = [r for r in log.split("\0") if r.strip()]
    for record in records:
        parents, _, message = record.partition("\n")
        sources = _SOURCE.findall(message)
        if len(parents.split()) != 1 or not sources or sources[-1] not in ours:
            return False
    # Single parents all the way and `base` an ancestor: the line from the tip reaches `base`.
    return bool(records)


def _clash(repo: Path, branch: str, current: str, tip: str) -> str:
    """A clashing branch, and the commits on it finalize did not make (--force drops them)."""
    foreign = git(repo, "log", "--format=%h %s", f"{tip}..{current}").splitlines()
    if not foreign:
        return f"{branch} (at {current[:12]}, no commit of its own)"
    shown = ", ".join(foreign[:5]) + (f", and {len(foreign) - 5} more" if len(foreign) > 5 else "")
    return (f"{branch} has {len(foreign)} commit(s) finalize did not make "
            f"(`git log {tip[:12]}..{branch}`): {shown}")


def _checked_out_branches(repo: Path) -> dict[str, str]:
    """Each branch checked out in one of the repository's worktrees -> that worktree's path."""
    out: dict[str, str] = {}
    path = ""
    for entry in git(repo, "worktree", "list", "--porcelain", "-z").split("\0"):
        if entry.startswith("worktree "):
            path = entry[len("worktree "):]
        elif entry.startswith("branch refs/heads/"):
            out[entry[len("branch refs/heads/"):]] = path
    return out


def _union_tree(repo: Path, index: PrivateIndex, base: str, groups: list[ChangeGroup]) -> str:
    """Apply every new branch's own change (as git sees it, not as we planned it) to the base."""
    index.read(base)
    for g in groups:
        index.take(g.tip, diff_names(repo, base, g.tip))
    return index.write()


def _verify_disjoint(repo: Path, base: str, groups: list[ChangeGroup]) -> None:
    seen: dict[str, str] = {}
    for g in groups:
        for path in diff_names(repo, base, g.tip):
            if path in seen:
                raise FinalizeError(f"{path} is changed by both {seen[path]} and {g.branch}",
                                    fix="no branch was written; please report this as a bug")
            seen[path] = g.branch


def _check_ref_paths(repo: Path, groups: list[ChangeGroup]) -> None:
    """git cannot have a branch `x/y` beside a branch `x` (a ref is a file, and `x` would have to
    be a directory too): a new name that is such a prefix of an existing branch, or has one as
    its prefix, is refused before any branch is written."""
    existing = git(repo, "for-each-ref", "--format=%(refname)", "refs/heads/").split()
    for g in groups:
        ref = f"refs/heads/{g.branch}"
        conflicts = [r for r in existing if r.startswith(ref + "/") or ref.startswith(r + "/")]
        if conflicts:
            other = conflicts[0].removeprefix("refs/heads/")
            raise FinalizeError(
                f"the branch {g.branch} cannot be created beside the existing branch {other}: "
                "git cannot have both a branch and another one under its name",
                where="--prefix",
                fix=f"choose another --prefix (e.g. --prefix review/), or rename or delete {other}; "
                "no branch was written")


def _write_branches(repo: Path, groups: list[ChangeGroup], force: bool,
                    say: Callable[[str], None]) -> None:
    _check_ref_paths(repo, groups)
    clashes: list[tuple[str, str, str]] = []  # (branch, what it points to, the new tip)
    current_of: dict[str, str] = {}
    for g in groups:
        current = git(repo, "rev-parse", "--verify", "--quiet", f"refs/heads/{g.branch}",
                      check=False).strip()
        g.existed = bool(current)
        current_of[g.branch] = current
        if current and current != g.tip:
            clashes.append((g.branch, current, g.tip))
    if clashes and not force:
        raise FinalizeError(
            "these branches already exist with other content: "
            + "; ".join(_clash(repo, branch, current, tip) for branch, current, tip in clashes),
            fix="pass --force to replace them (what they point to now stays in "
                "`git reflog <branch>`), or choose another --prefix")
    # update-ref moves a branch under a worktree that has it checked out, whose next commit
    # would then silently drop what was there: refused, as `git branch -f` refuses it.
    checked_out = _checked_out_branches(repo)
    busy = [(branch, checked_out[branch]) for branch, _, _ in clashes if branch in checked_out]
    if busy:
        raise FinalizeError(
            "--force would move branches checked out in a worktree: " + "; ".join(
                f"{branch} (in {path})" for branch, path in busy),
            where=busy[0][1],
            fix="commit or set aside the work there, switch that worktree to another branch "
                f"(e.g. `git -C {busy[0][1]} switch --detach`), then finalize --force again; "
                "or choose another --prefix")
    _update_refs_at_once(repo, groups, current_of)
    for g in groups:
        say(f"{g.branch} ← {len(g.commits)} commit(s), {len(g.files)} file(s)")


def _update_refs_at_once(repo: Path, groups: list[ChangeGroup],
                         current_of: dict[str, str]) -> None:
    """Every branch in one transaction: all are written or none is. Each must still be what it
    was when checked (absent: the zero id), so a branch moved meanwhile is not overwritten."""
    lines = ["start"] + [
        f"update refs/heads/{g.branch} {g.tip} {current_of[g.branch] or '0' * len(g.tip)}"
        for g in groups] + ["prepare", "commit"]
    try:
        git(repo, "update-ref", "-m", "autoresearch finalize", "--stdin",
            input_text="\n".join(lines) + "\n")
    except GitError as err:
        raise FinalizeError(f"the branches could not be written: {err.stderr.strip()}",
                            where=str(repo),
                            fix="no branch was written; finalize again (with another --prefix "
                            "if a branch name is in the way)") from None
