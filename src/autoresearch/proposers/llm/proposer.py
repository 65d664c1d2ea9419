"""The `llm` proposer: ask a model for one experiment, as edit blocks, and apply them in memory.

One proposal is a short conversation: the context and the task; the model's reply; and, when the
reply cannot be parsed or its blocks do not apply, the error sent back (at most
`max_edit_retries` times, default 2) before the proposal counts as failed. The edits are applied
to copies of the files in memory, never to the worktree: the harness writes and commits them
after its guardrails have checked them.

The applier reads only what the model may see: in-scope, non-protected text files (and, for a
repair, the crashed candidate's own edits), each named by its canonical path (`ModelFiles`, which
judges a path with the guardrails' own `judge_path` before anything is read). A block for any
other file fails with the rule it broke and nothing from the file, so a retry message can never
leak a protected file's lines.

Every call is billed to the experiment it was made for, the moment it returns, through the
context's `Meter` (a Ctrl-C or SIGTERM in the middle of a retry conversation loses nothing), and
the meter's spending limit is checked before every call, retries and repairs included, so a
session overshoots `[limits] max_usd` by one call at most. Without a meter (a caller outside a
session) the usage travels as before: in the Proposal, or in the `FailedProposal` a proposal or
repair that produced nothing raises (a repair that gives up included).

A reply cut off at `max_tokens` is never applied, even when its blocks parse: the blocks it
meant to write after them are missing. A server that refuses the request as longer than its
context window gets a smaller one (`_fitting` fits `context_tokens` to the window the refusal
named, or halves it), never the same again.

A reply that failed is echoed back in the retry request, cut to `MAX_ECHOED_CHARS` (its head
and tail): a runaway reply must not make every retry a request of millions of tokens.
"""

from __future__ import annotations

import difflib
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field

from autoresearch import guardrails
from autoresearch.gitops.history import blob_at
from autoresearch.proposers.base import Meter, Proposal, ProposalContext, Proposer, Usage
from autoresearch.proposers.faults import (
    ContextTooLong,
    FailedProposal,
    FatalProposerError,
    OutOfTime,
    ProposerFault,
    ProposerOutage,
)
from autoresearch.proposers.llm import prompts
from autoresearch.proposers.llm.context import DEFAULT_CONTEXT_TOKENS, build_context
from autoresearch.proposers.llm.edits import (
    EditApplyError,
    EditFormatError,
    PathRefused,
    Reply,
    apply_blocks,
    parse_reply,
    stated_hypothesis,
)
from autoresearch.proposers.llm.option_values import OptionValues, validated
from autoresearch.proposers.llm.prices import PriceTable
from autoresearch.proposers.llm.providers import Part, Provider, Turn, make_provider
from autoresearch.proposers.llm.settings import ProviderSettings
from autoresearch.proposers.options import LLM_OPTIONS
from autoresearch.repo_paths import Canonicalizer
from autoresearch.textcheck import is_binary
from autoresearch.unicode_controls import clean_prose

if TYPE_CHECKING:
    from autoresearch.config import Config

log = logging.getLogger(__name__)

MAX_ECHOED_CHARS = 24_000  # of a failed reply, sent back with the error (head and tail)
MIN_CONTEXT_TOKENS = 2_000  # the smallest budget build_context honours: below it, halving is moot

Conversation = tuple[Reply, dict[str, str | None], list[Usage]]


def echoed(text: str, limit: int = MAX_ECHOED_CHARS) -> str:
    """A failed reply as it is sent back to the model: cleaned (a lone surrogate cannot even be
    encoded to send) and, when longer than `limit`, cut to its head and tail with a note."""
    text = clean_prose(text) or "(empty reply)"
    if len(text) <= limit:
        return text
    half = limit // 2
    return (text[:half] + f"\n[... {len(text) - 2 * half:,} characters of this reply cut ...]\n"
            + text[-half:])


class ModelFiles:
    """The files a model may change, as the applier sees them: `resolve` turns a block's path into
    its canonical form (or refuses it, by the guardrails' own rules, before anything is read);
    `read` returns a file's text (the overlay first), refusing binary files, which cannot be
    edited as text. With `commit`, files are read as that commit has them (a repair diffs against
    the incumbent while the worktree holds the crashed candidate)."""

    def __init__(self, root: Path, rules: guardrails.Rules,
                 overlay: Mapping[str, str | None] | None = None, commit: str | None = None):
        self.root = root
        self.rules = rules
        self.overlay = dict(overlay or {})
        self.commit = commit
        self._canonical = Canonicalizer(root)

    def resolve(self, path: str) -> str:
        return guardrails.judge_path(self.root, path, self.rules, exact=False,
                                     canonical=self._canonical)

    def read(self, path: str) -> str | None:
        path = self.resolve(path)  # idempotent for a canonical path; a direct caller is judged too
        if path in self.overlay:
            return self.overlay[path]
        if self.commit is not None:
            data = blob_at(self.root, self.commit, path)
        else:
            full = self.root / path
            try:
                data = full.read_bytes() if full.is_file() else None
            except OSError:
                data = None
        if data is not None and is_binary(data):
            raise PathRefused("a binary (or not UTF-8) file, which cannot be edited as text")
        return None if data is None else data.decode("utf-8")


def change_diff(
    read: Callable[[str], str | None], edits: Mapping[str, str | None], limit: int = 12_000
) -> str:
    """A unified diff of `edits` against what `read` returns (for the repair prompt)."""
    chunks: list[str] = []
    for path, new in sorted(edits.items()):
        try:
            old = read(path) or ""
        except PathRefused:
            continue  # never shown: the guardrails refused it, so it was not part of the run
        chunks += difflib.unified_diff(
            old.splitlines(keepends=True), (new or "").splitlines(keepends=True),
            f"a/{path}", f"b/{path}" if new is not None else "/dev/null",
        )
    text = "".join(chunks)
    return text if len(text) <= limit else text[:limit] + "\n[... diff cut ...]\n"


class ConversationOptionValues(OptionValues):
    """The [proposer] numbers the llm proposer reads itself (the provider's are in settings.py)."""

    # Below MIN_CONTEXT_TOKENS the context builder sends that much anyway: a smaller value would
    # be silently ignored.
    context_tokens: int = Field(default=DEFAULT_CONTEXT_TOKENS, ge=MIN_CONTEXT_TOKENS,
                                le=10_000_000)
    # -1 would make no call at all.
    max_edit_retries: int = Field(default=2, ge=0, le=20)


class LLMProposer(Proposer):
    """Proposes experiments by calling a model API (Anthropic or OpenAI-compatible)."""

    name: ClassVar[str] = "llm"
    known_options: ClassVar[frozenset[str] | None] = LLM_OPTIONS

    def __init__(
        self,
        config: Config,
        options: Mapping[str, Any] | None = None,
        *,
        env: Mapping[str, str] | None = None,
        provider: Provider | None = None,
    ) -> None:
        super().__init__(config, options)
        opts = self.options
        self.settings = ProviderSettings.from_options(opts, os.environ if env is None else env)
        self.prices = PriceTable(opts.get("prices"))
        own = validated(ConversationOptionValues, opts)
        self.context_tokens: int = own.context_tokens
        self.max_edit_retries: int = own.max_edit_retries
        self._provider = provider

    @property
    def provider(self) -> Provider:
        if self._provider is None:
            self._provider = make_provider(self.settings, self.prices)
        return self._provider

    def describe(self) -> str:
        return f"llm ({self.settings.describe()})"

    def close(self) -> None:
        if self._provider is not None:
            self._provider.close()

    def check_ready(self, worktree: Path) -> str:
        """Ask the endpoint once, before anything runs (`check`, `run`): a refused key, an
        unknown model or nothing listening at base_url is a FatalProposerError with the fix."""
        return self.provider.probe()

    # --- the two entry points ---------------------------------------------------------------

    def propose(self, ctx: ProposalContext) -> Proposal | None:
        def converse(budget: int) -> Conversation:
            context = build_context(ctx, budget_tokens=budget)
            first = Turn.user(Part(context.stable, cache=True),
                              context.volatile + prompts.PROPOSE_TASK)
            return self._converse(ctx, [first], purpose="propose", partial=context.partial)

        reply, edits, usage = self._fitting(converse)
        return Proposal(
            hypothesis=reply.hypothesis or "unnamed change",
            edits=edits,
            rationale=reply.rationale,
            usage=usage,
        )

    def repair(self, ctx: ProposalContext, failed: Proposal, log_tail: str) -> Proposal | None:
        if failed.in_worktree:
            return None  # nothing to overlay: only edit-based proposals can be repaired here
        overlay = dict(failed.edits)
        # The worktree holds the crashed candidate by now: diff against the incumbent's commit.
        commit = ctx.incumbent.commit if ctx.incumbent is not None else None
        base = ModelFiles(ctx.worktree, _rules(ctx), commit=commit)
        diff = change_diff(base.read, overlay)
        task = prompts.REPAIR_TASK.format(
            hypothesis=failed.hypothesis.replace('"', "'"), diff=f"```diff\n{diff}```"
        )

        def converse(budget: int) -> Conversation:
            context = build_context(ctx, budget_tokens=budget, overlay=overlay,
                                    crash_log=log_tail)
            first = Turn.user(Part(context.stable, cache=True), context.volatile + task)
            return self._converse(ctx, [first], purpose="repair", overlay=overlay,
                                  partial=context.partial)

        reply, edits, usage = self._fitting(converse)
        merged = {**overlay, **edits}
        note = f"repair: {reply.hypothesis}" if reply.hypothesis else "repair"
        return Proposal(
            hypothesis=failed.hypothesis,
            edits=merged,
            rationale="\n".join(x for x in (failed.rationale, note, reply.rationale) if x),
            params=failed.params,
            usage=usage,
        )

    # --- the conversation -------------------------------------------------------------------

    def _fitting(self, converse: Callable[[int], Conversation]) -> Conversation:
        """Run `converse(context budget)`; when the server refuses the request as longer than its
        context window, send less (for this proposal and every later one: the window does not
        grow) and start the conversation again, so that a small local context (vLLM's
        --max-model-len, llama.cpp's -c) costs fewer files and less history rather than every
        proposal. A budget that cannot shrink further stops the session with the options to
        change: the reply's room (max_tokens) counts against the window too."""
        spent: list[Usage] = []  # without a meter: what the abandoned conversations cost
        refusals = 0
        while True:
            try:
                reply, edits, usage = converse(self.context_tokens)
                return reply, edits, spent + usage
            except ContextTooLong as exc:
                spent += exc.usage
                refusals += 1
                smaller = self._fitted_budget(exc)
                if refusals > 1:
                    # A fitted size refused again: the sizes named were not the whole story
                    # (a template's tokens, a server counting otherwise); halve from here on,
                    # so that the requests stay few whatever the server says.
                    smaller = min(smaller, self.context_tokens // 2)
                if smaller < MIN_CONTEXT_TOKENS:
                    named = exc.sizes
                    reply_room = (named.completion if named else None) or self.settings.max_tokens
                    sizes = (f" (a {named.window}-token window, {reply_room} of them kept for the "
                             "reply)" if named else "")
                    raise FatalProposerError(
                        f"{exc.what}; still so with [proposer] context_tokens = "
                        f"{self.context_tokens}{sizes}",
                        where="[proposer] max_tokens and context_tokens in autoresearch.toml, "
                              "and the model server's context size",
                        fix=f"lower [proposer] max_tokens (now {self.settings.max_tokens}: the "
                            "reply's room counts against the window), or give the server a "
                            "larger context (vLLM --max-model-len, llama-server -c, Ollama "
                            "OLLAMA_CONTEXT_LENGTH or num_ctx in a Modelfile)",
                        usage=spent,
                    ) from None
                log.warning("%s: sending less from now on ([proposer] context_tokens %d -> %d; "
                            "set it to stop this)", exc.what, self.context_tokens, smaller)
                self.context_tokens = smaller
            except ProposerFault as exc:
                exc.usage[:0] = spent
                raise

    def _fitted_budget(self, refused: ContextTooLong) -> int:
        """The context budget to send next. When the refusal named the window and what the
        prompt took, the budget is scaled to the room left (the window less the reply's), with a
        tenth kept back for the difference between the context builder's token estimate and the
        server's tokenizer, and for the prompt's fixed part; else it is halved. Never more than
        nine tenths of the refused budget, so that every refusal sends less. 0 when the reply's
        room alone fills the window: no context fits then."""
        budget, named = self.context_tokens, refused.sizes
        if named is None or not named.prompt:
            return budget // 2
        room = named.window - (named.completion or self.settings.max_tokens)
        if room <= 0:
            return 0
        # What was sent is at most the budget, and at most the prompt the server counted.
        sent = min(budget, named.prompt)
        return min(budget * 9 // 10, int(sent * room / named.prompt * 0.9))

    def _system(self) -> list[Part]:
        return [Part(prompts.SYSTEM_PROMPT, cache=True)]

    def _converse(
        self,
        ctx: ProposalContext,
        turns: Sequence[Turn],
        *,
        purpose: str,
        overlay: Mapping[str, str | None] | None = None,
        partial: frozenset[str] = frozenset(),
    ) -> tuple[Reply, dict[str, str | None], list[Usage]]:
        """Ask, and reflect format or apply errors back; FailedProposal when no applicable edits
        came out of it, a repair that gave up included. Each call is billed through the
        context's meter as it returns (what is returned or carried is then empty); without one,
        the usage of every call made is returned or carried by the exception."""
        till = _Till(ctx.meter)
        history = list(turns)
        files = ModelFiles(ctx.worktree, _rules(ctx), overlay)
        problem = ""
        cut = False  # the last reply was cut off at max_tokens
        meant = ""  # the latest hypothesis a reply stated, for the ledger if all attempts fail
        for attempt in range(self.max_edit_retries + 1):
            over = till.stop_reason()
            if over:
                asked = "the model was asked" if attempt == 0 else f"edit retry {attempt}"
                raise FailedProposal(
                    f"{over}; this {'proposal' if purpose == 'propose' else purpose} stopped "
                    f"before {asked}",
                    where="[limits] max_usd", fix="raise [limits] max_usd to spend more",
                    usage=till.unbilled, hypothesis=meant)
            try:
                completion = self.provider.complete(self._system(), history, purpose=purpose,
                                                    deadline=till.deadline)
            except (ProposerOutage, FatalProposerError, FailedProposal, OutOfTime) as exc:
                exc.usage[:] = till.carry(exc.usage)  # billed now, or carried with the earlier
                raise
            till.add(completion.usage)
            try:
                reply = parse_reply(completion.text)
                meant = reply.hypothesis or meant
                if reply.give_up is not None and not reply.blocks:
                    if purpose == "repair":
                        log.info("the model gave up the repair: %s", reply.give_up)
                        raise FailedProposal(
                            f"the model gave up the repair: {reply.give_up}",
                            where=self.settings.describe(), usage=till.unbilled,
                        )
                    raise EditFormatError(["GIVE_UP is only for repairs: propose an experiment"])
                if not completion.text.strip():
                    # Nothing to parse, which "contains no edit blocks" would hide.
                    raise EditFormatError(["the reply contains no edit blocks: it was empty "
                                           "(no text at all, or only the model's <think> "
                                           "reasoning)"])
                if not reply.blocks:
                    raise EditFormatError(["the reply contains no edit blocks"])
                if completion.truncated:
                    # Its blocks parse, but the ones it meant to write after them are missing:
                    # applying the rest would run half a change.
                    raise EditFormatError([
                        f"the reply was cut off at the output token limit (max_tokens = "
                        f"{self.settings.max_tokens}), so its last edit blocks may be missing; "
                        "none of it was applied"])
                edits = apply_blocks(reply.blocks, files.read, partial, files.resolve)
                if not edits:
                    raise EditFormatError(["the edits leave every file unchanged"])
                return reply, edits, till.unbilled
            except (EditFormatError, EditApplyError) as exc:
                meant = stated_hypothesis(completion.text) or meant
                problem = exc.render()
                log.info("edit attempt %d of %s failed: %s", attempt + 1, purpose, problem)
                feedback = problem
                cut = completion.truncated
                if cut:
                    feedback = prompts.TRUNCATED_NOTE + "\n\n" + feedback
                history += [
                    Turn.assistant(echoed(completion.text)),
                    Turn.user(feedback + prompts.RETRY_TASK),
                ]
        raise FailedProposal(
            f"the model's reply did not yield applicable edits after "
            f"{self.max_edit_retries + 1} attempts; last error: {problem}",
            where=self.settings.describe(),
            fix=(f"the replies were cut off at max_tokens: raise [proposer] max_tokens (now "
                 f"{self.settings.max_tokens})" if cut else None),
            usage=till.unbilled,
            hypothesis=meant,
        )


class _Till:
    """One conversation's spending: billed through the meter as each call returns, or, without
    a meter, collected for the Proposal or the exception to carry."""

    def __init__(self, meter: Meter | None) -> None:
        self.meter = meter
        self.unbilled: list[Usage] = []

    def add(self, usage: Usage) -> None:
        if self.meter is not None:
            self.meter.record(usage)
        else:
            self.unbilled.append(usage)

    def carry(self, usage: Sequence[Usage]) -> list[Usage]:
        """What an exception should carry: its own usage billed now (with a meter) or added to
        what the earlier turns cost (without)."""
        for u in usage:
            self.add(u)
        return list(self.unbilled)

    def stop_reason(self) -> str | None:
        return self.meter.stop_reason() if self.meter is not None else None

    @property
    def deadline(self) -> float | None:
        """The session's time limit, by which every call must end (None: no limit)."""
        return self.meter.deadline if self.meter is not None else None


def _rules(ctx: ProposalContext) -> guardrails.Rules:
    return guardrails.Rules(ctx.config.scope, ctx.config.all_protected)
