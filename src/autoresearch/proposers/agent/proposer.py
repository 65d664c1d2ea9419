"""The `agent` proposer: a coding-agent CLI edits the worktree; its diff is the proposal.

The agent works directly in `ctx.worktree`, so the proposal is `in_worktree=True` and the harness
reads the change from git, checks it against the scope and protected files (rejecting and
resetting anything outside them), and commits it. This module makes sure the agent leaves the
worktree in that expected shape (see `guard`): commits it made on its detached HEAD, moving no
ref, are folded back into the working tree (the candidate is its whole change, named by their
messages); if it ran git otherwise (committed onto a branch, switched branches, moved refs, stashed), changed git's files (config, attributes, hooks, the worktree's `.git` link,
the user's global config), created a nested repository, or changed git-ignored files or a
`.gitignore`, which the harness could not see, the proposal fails (the experiment is `rejected`)
and everything is put back (the commits only a ref put back held saved under
refs/autoresearch/<tag>/saved/ first). The session branch moved during the run, by the agent
or by the user from another terminal (the harness cannot tell which), stops the session (exit 3,
`SessionBranchMoved`), its commits saved and the branch put back, as the session stops when its
branch moves between keeps. A `git add` or `git mv` alone is not refused: the index is put back
on HEAD and the change read from the working tree. Its scratch files are removed, and on a timeout the worktree is put
back as it was.

What is enforced, and what the agent is only told:
- Enforced by the harness, for every agent: everything above, checked after each run (it cannot
  stop an agent from doing it, only undo it and refuse the result); the scope and protected
  files (the guardrails, before the commit); the timeout (the whole process group is killed).
- Enforced by Claude Code itself: its preset allows only file tools (Read, Edit, Write, ...) and
  disallows Bash, so it can run no command at all: not the verify command, not git.
- Enforced by Codex's sandbox (`--sandbox workspace-write`, on the platforms where Codex can
  sandbox): commands may write only inside the worktree, git's metadata (`.git` and the gitdir
  it points to) stays read-only, so a commit or branch switch fails, and the network is off. It
  can still run commands, the verify command included: that it should not is only instructed.
- aider runs no shell commands (`--no-suggest-shell-commands`) and does not commit
  (`--no-auto-commits`, `--no-dirty-commits`).
- A custom command: nothing beyond the harness's checks; the rules are in its prompt.

What the CLI reports is read, not only its exit code: an error result (`is_error`,
`error_max_turns`, Codex's `turn.failed`) or a non-zero exit rejects the run and discards its
unfinished change (the reason quotes the end of its stderr, lines carrying protected content
hidden); a refused login stops the session; a usage or rate limit pauses it (`ProposerOutage`).
Its stdout goes to the experiment's log directory, bounded while it runs, and only its tail is
read back (see `process`).

Repairs are different: when the harness asks for one, the worktree holds the crashed candidate
as HEAD and is reset right after, so a repair returns the whole candidate as edits (file
contents relative to the incumbent) rather than as a worktree change.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from autoresearch.errors import ConfigError
from autoresearch.gitops.runner import git
from autoresearch.process_tree import kill_orphans
from autoresearch.proposers.agent import prompt as prompts
from autoresearch.proposers.agent.guard import Restored, RunGuard
from autoresearch.proposers.agent.presets import AgentReport, Preset, make_preset
from autoresearch.proposers.agent.process import AgentRun, find_executable, run_agent
from autoresearch.proposers.agent.scratch import make_scratch, remove_dead_scratch
from autoresearch.proposers.agent.worktree import Snapshot, changed_since, read_change
from autoresearch.proposers.base import (
    ExperimentOutcome,
    Proposal,
    ProposalContext,
    Proposer,
    Usage,
)
from autoresearch.proposers.faults import (
    MAX_PROVIDER_PAUSE_S,
    FailedProposal,
    FatalProposerError,
    OutOfTime,
    ProposerOutage,
)
from autoresearch.proposers.llm.context import build_context, read_files, visible_files
from autoresearch.proposers.llm.edits import is_inside_repo
from autoresearch.proposers.llm.prices import PriceTable
from autoresearch.proposers.llm.protected_text import ProtectedText
from autoresearch.proposers.options import AGENT_OPTIONS
from autoresearch.state import StatePaths, root_of_worktree, run_ids_of_worktree
from autoresearch.stop_signals import SessionStopped
from autoresearch.unicode_controls import clean_prose

if TYPE_CHECKING:
    from autoresearch.config import Config

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 1800.0
DEFAULT_CONTEXT_TOKENS = 20_000
# Output that means the CLI cannot work at all (retrying every experiment would be pointless).
_AUTH = re.compile(
    r"invalid api key|not logged in|please run /login|authentication[_ ](?:error|failed)|"
    r"unauthorized|api key not (?:found|set)|missing api key",
    re.IGNORECASE,
)
# Output that means the CLI's account is out of requests or tokens for now: a pause, not a
# proposal of its own (Claude Code: "Claude AI usage limit reached|<epoch>", "rate_limit_error";
# Codex: "429 Too Many Requests", "You've hit your usage limit"). Phrases only: a bare "429" or
# "overloaded" in a crashing CLI's traceback must not pause the session forever.
_RATE_LIMIT = re.compile(
    r"usage limit|rate[_ ]limit|too many requests|quota exceeded|overloaded_error",
    re.IGNORECASE,
)
# How long a rate-limited agent is left alone before it is asked again, unless it says when its
# limit resets (then until a minute after that, within the bound: a longer wait is more likely a
# misread number than a real window, and a session with --until stops rather than wait past it).
RATE_LIMIT_PAUSE_S = 300.0
RESET_MARGIN_S = 60.0
MAX_RESET_WAIT_S = MAX_PROVIDER_PAUSE_S
# Claude Code's usage limit names its reset time as a Unix epoch: "usage limit reached|1765000000".
_RESETS_AT = re.compile(r"usage limit reached\|(\d{9,11})\b", re.IGNORECASE)


_MAX_TURNS_FIX = ("if it ran out of turns, allow more (claude: extra_args = [\"--max-turns\", "
                  "\"50\"]) or ask for smaller changes in program.md")


def rate_limit_pause(said: str, now: float) -> float:
    """Seconds to wait before asking a rate-limited agent again: until just after the reset time
    it printed, if it printed one still ahead, else `RATE_LIMIT_PAUSE_S`."""
    found = _RESETS_AT.search(said)
    if found is None:
        return RATE_LIMIT_PAUSE_S
    ahead = int(found.group(1)) - now
    if ahead <= 0:
        return RATE_LIMIT_PAUSE_S
    return min(ahead + RESET_MARGIN_S, MAX_RESET_WAIT_S)


class SessionBranchMoved(SessionStopped):
    """The session branch moved while the agent ran: the session stops (exit 3), as it stops
    when the branch moves between keeps (`checkout_sync.SessionBranch`), so the user sees one
    behaviour whoever moved it. Carries the run's usage: the experiment it ends is billed."""

    def __init__(self, moved: str, notes: list[str], usage: list[Usage]) -> None:
        super().__init__(
            f"{moved}. The session stopped rather than go on from a branch it did not set; the "
            "agent's change was discarded" + "".join(f"; {note}" for note in notes)
            + ". Run the same command to resume.", exit_code=3)
        self.usage = usage


class AgentProposer(Proposer):
    """Runs Claude Code, Codex CLI, aider or a custom command to make each experiment."""

    name: ClassVar[str] = "agent"
    known_options: ClassVar[frozenset[str] | None] = AGENT_OPTIONS

    def __init__(self, config: Config, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(config, options)
        opts = self.options
        self.prices = PriceTable(opts.get("prices"))
        self.preset: Preset = make_preset(opts, self.prices)
        try:
            self.timeout = float(
                opts.get("agent_timeout_seconds", opts.get("timeout_seconds", DEFAULT_TIMEOUT))
            )
            self.context_tokens = int(opts.get("context_tokens", DEFAULT_CONTEXT_TOKENS))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"invalid [proposer] option: {exc}", where="[proposer]") from None
        extra_env = opts.get("env") or {}
        if not isinstance(extra_env, Mapping):
            raise ConfigError("[proposer] env must be a table of NAME = value", where="[proposer]")
        self.extra_env = {str(k): str(v) for k, v in extra_env.items()}
        self._warned_cost = False

    def describe(self) -> str:
        model = f" ({self.preset.model})" if self.preset.model else ""
        return f"agent {self.preset.name}{model}"

    def check_ready(self, worktree: Path) -> str:
        """Find the CLI before anything runs (`check`, and `run` before its baseline): a missing
        one is the FatalProposerError a session would stop with at its first experiment."""
        program = self.preset.invocation("", worktree / "prompt.md", worktree, []).argv[0]
        try:
            path = find_executable(program, self._base_env(), worktree)
        except OSError as exc:
            raise self._cli_unusable(program, exc) from None
        return f"its CLI is {path}"

    def resume(self, history: Sequence[ExperimentOutcome]) -> None:
        # A session starts (or resumes) here: the prompt directories of orchestrators killed
        # before they could remove them (kill -9) go now.
        remove_dead_scratch()
        super().resume(history)

    # --- propose ------------------------------------------------------------------------------

    def propose(self, ctx: ProposalContext) -> Proposal | None:
        _fence(ctx)
        context = build_context(ctx, budget_tokens=self.context_tokens, include_files=False)
        text = prompts.render(ctx, context, prompts.PROPOSE)
        snap = Snapshot.take(ctx.worktree)
        report, usage, commits = self._run(ctx, text, snap, purpose="propose")
        snap.remove_scratch(ctx.worktree, self.preset.scratch)
        changed = changed_since(ctx.worktree, snap.head, snap)
        if report.error:
            # It exited 0 but said it failed (Claude Code's `is_error`, `error_max_turns`;
            # Codex's `turn.failed`): a half-done change is not the idea it meant to test.
            self._fail_if_unusable(report, None, usage)
            if changed:
                snap.restore(ctx.worktree)
            raise FailedProposal(
                f"the agent reported an error: {_shown(ctx, report.error)}"
                + ("; its unfinished change was discarded" if changed else "; it made no change"),
                where=f"the {self.preset.name} agent's run",
                fix=_MAX_TURNS_FIX,
                usage=usage,
            )
        if not changed:
            self._fail_if_unusable(report, None, usage)
            said = _shown(ctx, report.text)
            raise FailedProposal(
                "the agent made no change" + (f"; it said: {said}" if said
                                              else " and said nothing"),
                usage=usage,
            )
        fallback = f"{self.preset.name} change to {', '.join(changed[:3])}"
        if commits:  # its own commit message says what it did better than its chatter
            fallback = "; ".join(m.splitlines()[0] for m in commits)
        hypothesis, rationale = prompts.summary(report.text, fallback, fallback_first=bool(commits))
        if commits and not rationale:
            rationale = "\n\n".join(commits)[:2000]
        return Proposal(hypothesis=hypothesis, rationale=rationale, usage=usage, in_worktree=True)

    # --- repair -------------------------------------------------------------------------------

    def repair(self, ctx: ProposalContext, failed: Proposal, log_tail: str) -> Proposal | None:
        _fence(ctx)
        root = ctx.worktree
        snap = Snapshot.take(root)  # before anything is written, so restore() removes it all
        usage: list[Usage] = []
        try:
            base = ctx.incumbent.commit if ctx.incumbent and ctx.incumbent.commit else None
            base = base or git(root, "rev-parse", "HEAD^").strip()
            state = "The worktree holds its change (committed on top of the incumbent)."
            if snap.head == base:
                # The crashed candidate is not checked out: bring its change back if we can.
                state = "Its change is not in the worktree any more: re-implement the idea."
                if not failed.in_worktree:
                    _write(root, failed.edits)
                    state = "The worktree holds its change (uncommitted)."
            context = build_context(
                ctx, budget_tokens=self.context_tokens, include_files=False, crash_log=log_tail
            )
            task = prompts.REPAIR.format(hypothesis=failed.hypothesis.replace('"', "'"),
                                         state=state)
            before = read_change(root, changed_since(root, base, snap))
            report, usage, _ = self._run(ctx, prompts.render(ctx, context, task), snap,
                                         purpose="repair")
            snap.remove_scratch(root, self.preset.scratch)
            edits = read_change(root, changed_since(root, base, snap))
        except ValueError as exc:
            raise FailedProposal(f"the repair cannot be taken: {exc}", usage=usage) from None
        finally:
            snap.restore(root)
        if edits == before:
            # Raised, not returned: the session bills a failed repair's usage to its experiment.
            said = report.text.strip()
            raise FailedProposal("the agent made no repair" + (f": {said[-300:]}" if said else ""),
                                 usage=usage)
        return Proposal(
            hypothesis=failed.hypothesis,
            edits=edits,
            rationale="\n".join(x for x in (failed.rationale, "repair: " + report.text[-500:]) if x),
            params=failed.params,
            usage=usage,
        )

    # --- running the CLI ----------------------------------------------------------------------

    def _base_env(self) -> dict[str, str]:
        return {**os.environ, **self.extra_env}

    def _env(self, ctx: ProposalContext) -> dict[str, str]:
        env = self._base_env()
        env["AUTORESEARCH_AGENT"] = "1"
        env["AUTORESEARCH_EXPERIMENT_ID"] = ctx.experiment_id
        return env

    def _log_path(self, ctx: ProposalContext, purpose: str) -> Path | None:
        """Where the agent's whole output is kept: next to the experiment's verify logs."""
        root = root_of_worktree(ctx.worktree)
        if root is None or not ctx.experiment_id:
            return None
        logs = StatePaths(root, ctx.session_tag).session_dir / "logs" / ctx.experiment_id
        n = 1
        while (logs / f"agent-{purpose}-{n}.log").exists():
            n += 1
        return logs / f"agent-{purpose}-{n}.log"

    def _run(
        self, ctx: ProposalContext, text: str, snap: Snapshot, *, purpose: str
    ) -> tuple[AgentReport, list[Usage], list[str]]:
        """Run the agent once; what it said, what it cost, and the messages of the commits it
        made on its detached HEAD (folded back into the working tree). The run is cut at the
        session's time limit when that comes before agent_timeout_seconds (OutOfTime)."""
        until_limit = ctx.meter.seconds_left() if ctx.meter is not None else None
        timeout = self.timeout if until_limit is None else min(self.timeout, until_limit)
        if timeout <= 0:
            raise OutOfTime("the session's time limit came before the agent was started")
        scratch = make_scratch()
        try:
            prompt_file = scratch / "prompt.md"
            prompt_file.write_text(text, encoding="utf-8")
            call = self.preset.invocation(text, prompt_file, ctx.worktree, visible_files(ctx))
            guard = RunGuard.take(ctx.worktree, ctx.session_tag)  # just before: see guard.py
            try:
                run = run_agent(call.argv, cwd=ctx.worktree, stdin_text=call.stdin,
                                env=self._env(ctx), timeout=timeout,
                                run_id=f"{run_ids_of_worktree(ctx.worktree)}{ctx.session_tag}"
                                f":agent-{uuid.uuid4().hex[:12]}",
                                log=self._log_path(ctx, purpose),
                                max_log_bytes=int(self.config.verify.max_log_mb * 1024 * 1024))
            except (FileNotFoundError, PermissionError) as exc:
                raise self._cli_unusable(call.argv[0], exc) from None
            except BaseException:
                # Ctrl-C: put everything back before leaving, without masking the interrupt.
                try:
                    self._undo(ctx, guard, snap, [])
                except Exception:  # noqa: BLE001 - the interrupt matters more
                    log.exception("could not restore the worktree after the interrupted agent run")
                raise
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        report = self.preset.report(run.stdout, run.stderr, purpose)
        usage = [report.usage] if report.usage is not None else []
        if run.timed_out:
            restored = self._undo(ctx, guard, snap, usage)
            notes = "".join(f"; {note}" for note in restored.left)
            if timeout < self.timeout:
                raise OutOfTime(f"the session's time limit came while the agent was at work "
                                f"(stopped after {timeout:.0f} s); its change was discarded"
                                + notes, usage=usage)
            if restored.branch_moved is not None:
                raise SessionBranchMoved(restored.branch_moved, restored.left, usage)
            last = _last_line(run.stdout) or _last_line(run.stderr)
            raise FailedProposal(
                f"the agent did not finish within {self.timeout:g} s; its change was discarded"
                + (f"; its last output: {last[-300:]!r}" if last else "; it printed nothing")
                + notes,
                fix="raise [proposer] agent_timeout_seconds, or ask for smaller changes in "
                "program.md; if it was waiting for an answer (an approval prompt), it gets none: "
                "its stdin is closed, so give it the flag that approves edits without asking "
                "(the built-in presets pass theirs)",
                usage=usage,
            )
        if run.returncode == 0:
            # Not for a run killed on its timeout or that failed: it ended before it could
            # report what it spent, which says nothing of the runs that get there.
            self._warn_unknown_cost(report)
        problems = guard.check(ctx.worktree, self.preset.scratch)
        moved = guard.session_branch_moved(ctx.worktree)
        outside = guard.checkout_changes()
        if moved is not None and not outside:
            raise SessionBranchMoved(moved, problems + self._undo(ctx, guard, snap, usage).left,
                                     usage)
        if problems and not outside:
            left = self._undo(ctx, guard, snap, usage).left
            raise FailedProposal(
                "; ".join(problems + left) + "; its change was discarded and the worktree restored",
                where=f"the {self.preset.name} agent's run",
                fix="the agent is told these rules in its prompt; if it keeps breaking them, "
                "restrict it further (see the agent presets)",
                usage=usage,
            )
        if outside:
            # Its worktree change goes too, and the session stops so that an agent doing this
            # cannot go on doing it all night (with a git violation too: moving the branch the
            # checkout is on moves its HEAD, and was only a rejected proposal). What the undo
            # cannot put back (files, a commit of the user's meanwhile) is the user's to sort out.
            left = self._undo(ctx, guard, snap, usage).left
            still = guard.checkout_changes()
            root = guard.checkout.root
            raise FatalProposerError(
                f"the agent changed your own checkout {root}, outside the worktree it was given: "
                + ", ".join(outside[:10]) + (f" and {len(outside) - 10} more" if len(outside) > 10 else "")
                + "".join(f"; {said}" for said in problems + ([moved] if moved else []) + left)
                + ("; the harness left the changes to it as they are (it cannot tell them from "
                   "yours): " + ", ".join(still[:10]) if still else
                   "; the harness put your checkout back as it was"),
                where=f"the {self.preset.name} agent's run",
                fix=f"review `git status` and `git log` in {root}, then restrict the agent to its "
                "working directory (the built-in presets are), and run the same command again",
                usage=usage,
            )
        if run.returncode != 0:
            # A refused login still stops the session, a rate limit still pauses it.
            self._fail_if_unusable(report, run, usage)
            left = self._undo(ctx, guard, snap, usage).left
            raise FailedProposal(
                f"the agent exited with code {run.returncode}{_exit_output(ctx, run, report)}; "
                "its unfinished change was discarded" + "".join(f"; {note}" for note in left),
                where=f"the {self.preset.name} agent's run",
                fix=_MAX_TURNS_FIX if report.error else "run the agent's command by hand in a "
                "copy of the repository to see why it fails (its whole stdout is in the "
                "experiment's agent log); it must exit 0 once its change is made",
                usage=usage,
            )
        return report, usage, guard.folded

    def _cli_unusable(self, program: str, exc: OSError) -> FatalProposerError:
        """What a CLI that cannot be started stops the session with (and `check` refuses)."""
        if isinstance(exc, PermissionError):
            return FatalProposerError(f"the agent CLI {program!r} is not executable",
                                      where="[proposer] executable",
                                      fix=f"chmod +x {program}, or set [proposer] executable to "
                                      "the CLI's path")
        return FatalProposerError(
            f"the agent CLI {program!r} was not found",
            where="PATH / [proposer] executable",
            fix=f"install {self.preset.name}, or set [proposer] executable to its path",
        )

    def _warn_unknown_cost(self, report: AgentReport) -> None:
        if report.cost_known or self._warned_cost:
            return
        self._warned_cost = True
        log.warning(
            "the %s agent reported no cost and its tokens (if it reported any) have no price: its "
            "runs are recorded with cost 0, so [limits] max_usd cannot stop them; set [proposer] "
            "model and its price under [proposer] prices (USD per million tokens), or bound the "
            "session with max_experiments or a time limit", self.preset.name)

    def _undo(self, ctx: ProposalContext, guard: RunGuard, snap: Snapshot,
              usage: list[Usage]) -> Restored:
        """Put the worktree and git back as before the run; what to tell the user of it."""
        restored = guard.restore(ctx.worktree)
        snap.restore(ctx.worktree)
        if restored.lost:
            raise FatalProposerError(
                "the agent changed git-ignored files too large to have been kept, so they cannot "
                "be put back: " + ", ".join(restored.lost),
                where=str(ctx.worktree),
                fix="restore them by hand (e.g. run your data preparation again in the worktree), "
                "then run the same command again",
                usage=usage,
            )
        return restored

    def _fail_if_unusable(self, report: AgentReport, run: AgentRun | None,
                          usage: list[Usage]) -> None:
        """Stop the session on a refused login; pause it on a rate or usage limit."""
        said = " ".join(x for x in (report.error, run.stderr[-2000:] if run else "") if x)
        if _AUTH.search(said):
            raise FatalProposerError(
                f"the {self.preset.name} CLI cannot authenticate: {said.strip()[:300]}",
                where=f"the {self.preset.name} CLI's login or API key",
                fix=f"log the CLI in (run `{self.preset.exe}` once by hand; claude: /login) or "
                "export its API key, then run the same command again",
                usage=usage,
            )
        if _RATE_LIMIT.search(said):
            raise ProposerOutage(
                f"the {self.preset.name} CLI hit a rate or usage limit: {said.strip()[:300]}",
                retry_after_s=rate_limit_pause(said, time.time()),
                where=f"the {self.preset.name} CLI's account",
                usage=usage,
            )


def _shown(ctx: ProposalContext, text: str, limit: int = 500) -> str:
    """The end of what the agent printed, as a reason may quote it: the lines that carry a
    protected file's content hidden (as in a crash log shown to a model: the reason is shown to
    the next agent), on one line."""
    visible = ProtectedText.of(ctx, seen=read_files(ctx).values()).hide(text[-4 * limit:])
    return " ".join(clean_prose(visible).split())[-limit:]


def _exit_output(ctx: ProposalContext, run: AgentRun, report: AgentReport) -> str:
    """What the reason of a run that exited non-zero quotes: the error it reported, if any, and
    the end of its stderr; else its last output line."""
    said = [f"it reported an error: {_shown(ctx, report.error)}"] if report.error else []
    if tail := _shown(ctx, run.stderr):
        said.append(f"its stderr ended: {tail}")
    elif not said and (last := _shown(ctx, _last_line(run.stdout))):
        said.append(f"its stderr was empty, its last output line: {last}")
    return "".join(f"; {x}" for x in said) or "; it printed nothing"


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _fence(ctx: ProposalContext) -> None:
    """No process of an earlier session may write into this run: before the worktree is read,
    kill every process of this repository's runs whose orchestrator is dead (an agent orphaned
    by a kill -9 keeps editing; a resume kills it too, this holds even without one), and undo
    what it wrote to tracked files since the harness reset the worktree (they hold HEAD here)."""
    killed = kill_orphans(run_ids_of_worktree(ctx.worktree))
    if killed:
        git(ctx.worktree, "reset", "--hard", "--quiet", "HEAD")
        log.warning("killed %d process(es) left running in this repository by a dead session, "
                    "and reset the worktree's tracked files they may have written", killed)


def _write(root: Path, edits: Mapping[str, str | None]) -> None:
    for path, content in edits.items():
        if not is_inside_repo(path):
            continue
        target = root / path
        if content is None:
            target.unlink(missing_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content, encoding="utf-8")
