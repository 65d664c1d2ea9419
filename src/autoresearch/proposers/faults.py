"""Failures of a proposer that the session loop must treat differently from a bad proposal.

Four outcomes, four classes, so the loop can tell them apart with one `except` each:

- `FailedProposal` (a `ProposalError`): this one proposal failed (the model never produced edits
  that apply, the agent changed nothing). Record it and go on with the next experiment.
- `ProposerOutage`: the model service stayed unreachable or overloaded after every retry.
  Nothing is wrong with the session: pause, then ask again (nothing is lost).
- `FatalProposerError`: retrying cannot help (an invalid API key, an unknown model, an agent CLI
  that is not installed). Stop the session with the message.
- `OutOfTime`: the session's time limit came during a call or an agent run, which was cut there.
  The session ends, as it would have between experiments.

Every class carries the `Usage` spent before it was raised, so the tokens are still billed in the
ledger even when no proposal came out of them. Their messages quote untrusted text (a model's
reply, a service's error, an agent's output, a file name), so each is cleaned (`clean_prose`)
before it can reach the ledger or a terminal.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from autoresearch.errors import AutoresearchError, ProposalError
from autoresearch.proposers.base import Usage
from autoresearch.unicode_controls import clean_prose


class ProposerFault(AutoresearchError):
    """What the three have in common: a cleaned message and the usage spent before it."""

    def __init__(
        self,
        what: str,
        *,
        where: str | None = None,
        fix: str | None = None,
        usage: Sequence[Usage] = (),
    ) -> None:
        # A proposer's words (a model's reply, a service's error, an agent's output, a file name)
        # are untrusted text: cleaned so that recording them cannot fail.
        super().__init__(clean_prose(what), where=where, fix=fix)
        self.usage: list[Usage] = list(usage)


class FatalProposerError(ProposerFault):
    """The proposer cannot work in this configuration; the session must stop."""

    exit_code = 5


# The longest pause a provider's own word (a Retry-After header, an agent's reset time) can ask
# of the session: a longer one is more likely a misread number or a misconfigured server than a
# real window (a Retry-After of 100000 s paused a session for 27 h), and a session with --until
# stops rather than wait past its limit anyway.
MAX_PROVIDER_PAUSE_S = 6 * 3600.0


class ProposerOutage(ProposerFault):
    """The model service is unavailable for now; pause the session and try again later."""

    def __init__(
        self,
        what: str,
        *,
        retry_after_s: float = 0.0,
        where: str | None = None,
        fix: str | None = None,
        usage: Sequence[Usage] = (),
    ) -> None:
        super().__init__(what, where=where, fix=fix, usage=usage)
        # How long to wait before asking again; 0 leaves it to the loop's own backoff schedule.
        self.retry_after_s = min(retry_after_s, MAX_PROVIDER_PAUSE_S)


class OutOfTime(ProposerFault):
    """The session's time limit (the meter's `deadline`) came while the proposer was at work: its
    call or agent run was cut there. Not this proposal's fault, nor an outage: the session ends."""


class FailedProposal(ProposerFault, ProposalError):
    """A proposal that could not be produced; the tokens it cost are in `usage`."""

    def __init__(
        self,
        what: str,
        *,
        where: str | None = None,
        fix: str | None = None,
        usage: Sequence[Usage] = (),
        hypothesis: str = "",
    ) -> None:
        super().__init__(what, where=where, fix=fix, usage=usage)
        # What the proposer meant to try, when it got that far: the ledger shows it.
        self.hypothesis = clean_prose(hypothesis)


def usage_of(exc: BaseException) -> list[Usage]:
    """The usage an exception carries (empty for exceptions from elsewhere)."""
    found = getattr(exc, "usage", None)
    return [u for u in found if isinstance(u, Usage)] if isinstance(found, list) else []


@dataclass(frozen=True)
class ContextSizes:
    """What a context-window refusal said of the sizes, in the server's tokens: the window, and
    how many the prompt and the reply's room took (None where it did not say)."""

    window: int
    prompt: int | None = None
    completion: int | None = None


class ContextTooLong(FailedProposal):
    """The server refused the request as longer than its context window (vLLM's "maximum
    context length", llama.cpp's "exceeds the available context size"): the same request would
    be refused again, so the proposer sends less (`LLMProposer` fits its context budget to the
    sizes the refusal named, or halves it) rather than repeating it; left uncaught it fails one
    proposal, like any refused request. `sizes`: what the refusal said of the sizes, if it did."""

    def __init__(self, what: str, *, where: str | None = None,
                 sizes: ContextSizes | None = None) -> None:
        super().__init__(what, where=where)
        self.sizes = sizes
