"""`autoresearch finalize`: turn a session's kept commits into clean, independent review branches.

Kept commits are grouped so that no two groups touch the same file: commits that share a file
(directly, or through a chain of other commits) land in the same group. Each group becomes one
branch from the session's base commit. Because a file belongs to exactly one group, the group's
commits can be replayed with git plumbing alone (the file's content at each step is exactly the
source commit's), so there are no merge conflicts, no working tree and no checkout involved, and
re-running finalize recreates byte-identical commits.

Before any branch is written, two checks that do not trust the grouping are made on the new
commits: their changed files are pairwise disjoint, and applying all of them to the base gives
exactly the session's final tree. Finalize never pushes and never touches the base branch.
"""

from __future__ import annotations

import os
import re
import statistics
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from autoresearch.errors import AutoresearchError
from autoresearch.gitops import tree_of
from autoresearch.gitops.history import changed_files, diff_names, is_ancestor, rev_list
from autoresearch.gitops.runner import git
from autoresearch.stop_signals import stop_signals_as_interrupt
from autoresearch.views.summary import open_ledger, resolve_session

DEFAULT_PREFIX = "autoresearch-final/{tag}/"
_ZERO = "0" * 40


class FinalizeError(AutoresearchError):
    """The session cannot be finalized as asked."""


class FinalizeInterrupted(FinalizeError):
    """Ctrl-C, SIGTERM or SIGHUP during --verify: its runs killed, its worktree removed."""

    exit_code = 130


def _verify_command_fails(failed: list[tuple[str, Path]]) -> None:
    """Every target's first re-measurement failed: the verify command no longer works (a
    changed config, a missing tool or data), and the other rounds would only repeat it for
    as long as their timeouts, then report the session's old runs as if re-measured."""
    first = failed[0][1]
    raise FinalizeError(
        "--verify stopped: the verify command failed on every target of its first round ("
        + "; ".join(what for what, _ in failed) + ")",
        where=f"{first} (the first failed run's log)",
        fix="fix [verify] command in autoresearch.toml (`autoresearch check` dry-runs it), then "
        "run `autoresearch finalize --verify` again; the branches are written and unchanged")


@dataclass(frozen=True)
class SourceCommit:
    sha: str
    exp_id: str | None
    title: str
    files: list[str]


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


# --- grouping ------------------------------------------------------------------------------------


def group_commits(commits: list[SourceCommit]) -> list[list[SourceCommit]]:
    """Connected components of "touches a common file", in order of each group's first commit."""
    parent = list(range(len(commits)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    owner: dict[str, int] = {}
    for i, commit in enumerate(commits):
        for path in commit.files:
            if path in owner:
                a, b = find(owner[path]), find(i)
                # Keep the earlier commit as the root so groups stay in first-commit order.
                parent[max(a, b)] = min(a, b)
            else:
                owner[path] = i
    groups: dict[int, list[SourceCommit]] = {}
    for i, commit in enumerate(commits):
        groups.setdefault(find(i), []).append(commit)
    return [groups[root] for root in sorted(groups)]


def slug(text: str, limit: int = 40) -> str:
    words = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return (words[:limit].rstrip("-") or "change")


# Words that say little in a branch name.
_FILLER = frozenset({
    "a", "an", "the", "to", "of", "in", "on", "at", "for", "from", "with", "and", "or", "by",
    "into", "as", "is", "be", "it", "its", "this", "that", "than", "then", "so", "use", "using",
    "set", "try",
})


def _key_words(title: str, n: int) -> str:
    words = re.findall(r"[a-z0-9]+(?:\.[0-9]+)?", title.lower())
    kept = [w for w in words if w not in _FILLER] or words
    return slug(" ".join(kept[:n]), limit=60)


def group_slug(titles: list[str], limit: int = 60) -> str:
    """A name for a group of changes that covers all of them: one change keeps its title's
    words; several are joined with "+" (the key words of each, then "+N-more" past three)."""
    if len(titles) == 1:
        return slug(titles[0], limit)
    shown = titles[:3] if len(titles) <= 3 else titles[:2]
    parts = [_key_words(t, 3) for t in shown]
    extra = [f"{len(titles) - len(shown)}-more"] if len(titles) > len(shown) else []
    name = "+".join(parts + extra)
    while len(name) > limit and any(len(p) > 8 for p in parts):
        longest = max(range(len(parts)), key=lambda i: len(parts[i]))
        parts[longest] = parts[longest][:-1].rstrip("-")
        name = "+".join(parts + extra)
    return name


# --- plumbing ------------------------------------------------------------------------------------


class _Index:
    """A private index file, so building trees never touches the user's index or checkout."""

    def __init__(self, repo: Path, directory: str) -> None:
        self.repo = repo
        self.env = {"GIT_INDEX_FILE": os.path.join(directory, f"index-{id(self)}")}

    def read(self, tree_ish: str) -> None:
        git(self.repo, "read-tree", tree_ish, env=self.env)

    def take(self, source: str, paths: list[str]) -> None:
        """Make `paths` in the index what they are in commit `source` (absent means deleted)."""
        if not paths:
            return
        listing = git(self.repo, "ls-tree", "-z", "--full-tree", source, "--", *paths)
        present: dict[str, str] = {}
        for entry in filter(None, listing.split("\0")):
            meta, path = entry.split("\t", 1)
            mode, _kind, sha = meta.split()
            present[path] = f"{mode} {sha}\t{path}"
        # Mode 0 in --index-info removes the path.
        lines = [present.get(p, f"0 {_ZERO}\t{p}") for p in paths]
        git(self.repo, "update-index", "-z", "--index-info", env=self.env,
            input_text="\0".join(lines) + "\0")

    def write(self) -> str:
        return git(self.repo, "write-tree", env=self.env).strip()


def _trailer_message(message: str, source: str) -> str:
    body = message.rstrip("\n")
    last = body.split("\n\n")[-1].splitlines()
    in_trailers = bool(last) and all(re.match(r"^[\w-]+: ", line) for line in last)
    return f"{body}{'' if in_trailers else chr(10)}\nAutoresearch-Source: {source}\n"


def _replay(repo: Path, index: _Index, base: str, commits: list[SourceCommit]) -> str:
    """New commits on `base`, one per source commit, with the same author, dates and message."""
    index.read(base)
    head = base
    for c in commits:
        index.take(c.sha, c.files)
        tree = index.write()
        fmt = "%an%x00%ae%x00%ad%x00%cn%x00%ce%x00%cd%x00%B"
        an, ae, ad, cn, ce, cd, message = git(repo, "show", "-s", "--date=raw", f"--format={fmt}",
                                              c.sha).split("\0", 6)
        env = {"GIT_AUTHOR_NAME": an, "GIT_AUTHOR_EMAIL": ae, "GIT_AUTHOR_DATE": ad,
               "GIT_COMMITTER_NAME": cn, "GIT_COMMITTER_EMAIL": ce, "GIT_COMMITTER_DATE": cd}
        head = git(repo, "commit-tree", tree, "-p", head, "-F", "-", env=env,
                   input_text=_trailer_message(message, c.sha)).strip()
    return head


# --- the command ---------------------------------------------------------------------------------


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
        title = title or git(repo, "show", "-s", "--format=%s", sha).strip()
        out.append(SourceCommit(sha, exp_id, title, changed_files(repo, sha)))
    return out


def _check_branch_name(repo: Path, name: str) -> None:
    if git(repo, "check-ref-format", "--branch", name, check=False).strip() != name:
        raise FinalizeError(f"{name!r} is not a valid branch name", where="--prefix",
                            fix="choose another --prefix: letters, digits, '-', '_' and '/' "
                            "(no '..', '@{', spaces, '~^:?*[\\', nor a leading '-')")


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
    base = session.base_commit
    tip = git(repo, "rev-parse", "--verify", "--quiet", f"refs/heads/{session.branch}^{{commit}}",
              check=False).strip()
    if not tip:
        raise FinalizeError(f"the session branch {session.branch} does not exist",
                            where=str(repo), fix="it may have been deleted; nothing to finalize")
    titles = {e.commit_sha: (e.id, e.hypothesis.strip().splitlines()[0] if e.hypothesis else "")
              for e in exps if e.commit_sha and e.kind != "baseline"}
    kept = [e for e in exps if e.status == "keep" and e.kind != "baseline" and e.commit_sha]
    last = (kept[-1].commit_sha or "")[:12] if kept else ""
    restore = (f"the session's last kept commit is {last} ({kept[-1].id}): put the branch back "
               f"with `git branch -f {session.branch} {last}` (what it pointed to stays in "
               f"`git reflog {session.branch}`), then finalize again" if kept else
               "finalize needs the branch the session wrote")
    commits = _source_commits(repo, base, tip, titles, restore)
    if not commits:
        raise FinalizeError(f"session {session.tag} kept no change: the branch is at its base",
                            fix="nothing to review; run more experiments first")
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

    stem = prefix.replace("{tag}", session.tag)
    groups = [ChangeGroup(i + 1, g, sorted({f for c in g for f in c.files}))
              for i, g in enumerate(group_commits(commits))]
    with tempfile.TemporaryDirectory(prefix="ar-finalize-") as tmp:
        index = _Index(repo, tmp)
        for g in groups:
            g.branch = f"{stem}{g.index:02d}-{g.name}"
            _check_branch_name(repo, g.branch)
            g.tip = _replay(repo, index, base, g.commits)
        union = _union_tree(repo, index, base, groups)
    result = FinalizeResult(session.tag, base, tip, groups, tree_of(repo, tip), union, warnings)
    _verify_disjoint(repo, base, groups)
    if not result.reproduced:
        raise FinalizeError("the groups together do not reproduce the session's final tree",
                            where=f"union {union[:12]} vs session {result.session_tree[:12]}",
                            fix="no branch was written; please report this as a bug")
    _write_branches(repo, groups, force, say)
    result.warnings += _stale_branches(repo, stem, groups)
    return result


def _stale_branches(repo: Path, stem: str, groups: list[ChangeGroup]) -> list[str]:
    """Branches under the same prefix that this finalize did not write: an earlier finalize's,
    for an older state of the session (its names follow the groups, so they change as the
    session keeps more). Named, never deleted: they may be under review."""
    written = {g.branch for g in groups}
    refs = git(repo, "for-each-ref", "--format=%(refname:short)", f"refs/heads/{stem}").split()
    stale = [r for r in refs if r not in written]
    if not stale:
        return []
    return [f"{len(stale)} branch(es) under {stem} are from an earlier finalize and no longer "
            f"match the session: {', '.join(stale)}; delete them once unused: "
            f"git branch -D {' '.join(stale)}"]


def _union_tree(repo: Path, index: _Index, base: str, groups: list[ChangeGroup]) -> str:
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


def _write_branches(repo: Path, groups: list[ChangeGroup], force: bool,
                    say: Callable[[str], None]) -> None:
    clashes = []
    for g in groups:
        current = git(repo, "rev-parse", "--verify", "--quiet", f"refs/heads/{g.branch}",
                      check=False).strip()
        g.existed = bool(current)
        if current and current != g.tip and not force:
            clashes.append(g.branch)
    if clashes:
        raise FinalizeError("these branches already exist with other content: "
                            + ", ".join(clashes),
                            fix="pass --force to replace them, or choose another --prefix")
    for g in groups:
        git(repo, "update-ref", "-m", "autoresearch finalize", f"refs/heads/{g.branch}", g.tip)
        say(f"{g.branch} ← {len(g.commits)} commit(s), {len(g.files)} file(s)")


# --- --verify: each change's own effect ----------------------------------------------------------


@dataclass(frozen=True)
class Effect:
    """One branch re-measured against the base; `improvement` > 0 is better whatever the direction."""

    name: str
    commit: str
    values: list[float]
    failures: list[str]
    mean: float | None
    improvement: float | None
    in_sigma: float | None
    reused: int = 0  # of `values`, how many are recorded runs of the same tree (not re-run)


def recorded_runs(repo: Path, tag: str, metric: str) -> dict[str, list[float]]:
    """Tree -> the objective of every successful run the session recorded of a commit with that
    tree (oldest first): the session's own measurements of the same files."""
    ledger = open_ledger(repo)
    try:
        session = resolve_session(ledger, tag)
        tree_of_commit = {e.commit_sha: e.tree_sha for e in ledger.experiments(session.id)
                          if e.commit_sha and e.tree_sha}
        out: dict[str, list[float]] = {}
        for run in ledger.session_runs(session.id):
            tree = tree_of_commit.get(run.commit_sha)
            if tree and run.status == "ok" and metric in run.metrics:
                out.setdefault(tree, []).append(run.metrics[metric])
        return out
    finally:
        ledger.close()


def remeasure(
    repo: Path,
    result: FinalizeResult,
    *,
    repeats: int | None = None,
    log: Callable[[str], None] | None = None,
) -> tuple[Effect, list[Effect], float | None]:
    """Measure the base, every new branch and the session tip `repeats` times each.

    The same tree is never measured twice: targets with identical trees (a single branch is the
    session's tip) share their runs, and runs the session already recorded of that tree (its
    baseline repeats, the headline's re-measurements) are reused, the most recent first. What is
    still missing runs round-robin (base, branch 1, …, tip, base, …) so that slow drift of the
    machine spreads evenly instead of favouring whatever ran first. Returns the baseline, the
    per-target effects (branches, then the whole session) and the σ used.
    """
    from autoresearch import gitops
    from autoresearch.config import CONFIG_NAME, load_config
    from autoresearch.executor import LocalExecutor, RunRequest, new_run_id
    from autoresearch.history import run_seed
    from autoresearch.state import StatePaths

    say = log or (lambda _msg: None)
    config = load_config(repo / CONFIG_NAME)
    n = repeats or max(2, config.decision.baseline_repeats(config.verify.budget_seconds))
    paths = StatePaths(repo, result.tag)
    work = paths.state_dir / "finalize" / result.tag
    worktree = work / "worktree"
    targets = [("base", result.base_commit)] + [(g.branch, g.tip) for g in result.groups]
    targets.append((f"all changes ({paths.branch})", result.session_tip))
    tree_of_target = {name: tree_of(repo, sha) for name, sha in targets}
    known = recorded_runs(repo, result.tag, config.metric.name)
    by_tree: dict[str, list[float]] = {}  # each distinct tree's values, shared by its targets
    failures: dict[str, list[str]] = {}
    reused: dict[str, int] = {}
    todo: list[tuple[int, str, str]] = []  # the first target of each tree still short of n runs
    for i, (name, sha) in enumerate(targets):
        tree = tree_of_target[name]
        if tree in by_tree:
            continue
        by_tree[tree], failures[tree] = known.get(tree, [])[-n:], []
        reused[tree] = len(by_tree[tree])
        if reused[tree]:
            say(f"{name}: reusing {reused[tree]} recorded run(s) of the same files")
        if reused[tree] < n:
            todo.append((i, name, sha))
    if todo:
        gitops.remove_worktree(repo, worktree)
        work.mkdir(parents=True, exist_ok=True)
        git(repo, "worktree", "add", "--detach", "--force", str(worktree), result.base_commit)
        done = 0  # runs made by this re-measurement
        try:
            # SIGTERM and SIGHUP stop like Ctrl-C: the run's tree is killed and the worktree
            # removed below, rather than the process ending with both left behind.
            with stop_signals_as_interrupt():
                executor = LocalExecutor(config)
                for round_ in range(n):
                    round_logs: list[tuple[str, Path]] = []  # (target, log) of failed runs
                    ran = 0
                    for i, name, sha in todo:
                        tree = tree_of_target[name]
                        if len(by_tree[tree]) >= n:
                            continue
                        log_path = work / "logs" / f"{i:02d}-{slug(name)}-{round_}.log"
                        m = executor.run(RunRequest(
                            commit=sha, worktree=worktree, role="finalize", log_path=log_path,
                            run_id=new_run_id(paths.repo_key, result.tag),
                            seed=run_seed(f"{result.tag}-finalize", round_)))
                        ran += 1
                        done += 1
                        if m.objective is not None:
                            by_tree[tree].append(m.objective)
                            say(f"{name}: {config.metric.name} = {m.objective:.6g}")
                        else:
                            failures[tree].append(f"{m.status}: {m.reason}")
                            round_logs.append((f"{name}: {m.status} ({m.reason})", log_path))
                            say(f"{name}: {m.status} ({m.reason})")
                    if round_ == 0 and ran and len(round_logs) == ran:
                        _verify_command_fails(round_logs)
        except KeyboardInterrupt:
            raise FinalizeInterrupted(
                f"interrupted during --verify after {done} completed run(s): nothing was re-measured to "
                "the end", where=str(work),
                fix="the branches are written and unchanged; run `autoresearch finalize "
                "--verify` again to re-measure") from None
        finally:
            gitops.remove_worktree(repo, worktree)
    base_vals = by_tree[tree_of_target["base"]]
    sigma = result_sigma(base_vals)
    sign = config.metric.sign
    base_mean = sum(base_vals) / len(base_vals) if base_vals else None

    def effect(name: str, sha: str) -> Effect:
        tree = tree_of_target[name]
        vals = by_tree[tree]
        mean = sum(vals) / len(vals) if vals else None
        imp = sign * (mean - base_mean) if mean is not None and base_mean is not None else None
        ratio = imp / sigma if imp is not None and sigma else None
        return Effect(name, sha, vals, failures[tree], mean, imp, ratio, reused[tree])

    return effect(*targets[0]), [effect(name, sha) for name, sha in targets[1:]], sigma


def result_sigma(values: list[float]) -> float | None:
    """Sample standard deviation of the base's re-measurements (None with fewer than two)."""
    return statistics.stdev(values) if len(values) >= 2 else None
