"""The spending cap of one review: no call starts that could cross it.

The cap is `--max-usd` on the command line, `[review] max_usd`, or in a session's review gate
what is left of `[limits] max_usd` when that is less: `source` names the one that applies, so
every refusal says which setting to change. Before each model call the reviewer reserves what
the call may cost (its prompt at the input price plus a full reply at the output price); a call
whose reservation would take the total past the cap is not made, and the review says which calls
were skipped and why. A call that alone costs more than the whole cap can never be made, however
little was spent: its refusal says so, with the fix (a larger cap, or a smaller max_tokens, since
the full reply is most of the reservation). When the call returns, the
reservation is replaced by what it actually cost. Reviewers run in parallel threads, so the
arithmetic is under a lock. A model with no known price reserves nothing: the cap cannot stop it
(the provider warns once about the missing price).

With a `Meter` (the llm proposer's, `proposers.base`) every call is also billed through it the
moment it returns, not at the end of the review, so a SIGTERM or a crash in the middle of a
review loses none of what was spent; and its `stop_reason` (a session's `[limits] max_usd`) is
asked before every call too, so spending elsewhere during the review is seen at once.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

from autoresearch.proposers.base import Meter, Usage
from autoresearch.proposers.llm.prices import PriceTable
from autoresearch.views.format import fmt_usd

CHARS_PER_TOKEN = 3.5  # a conservative average for code and English: over- rather than under-estimate
UTF8_BYTES_PER_TOKEN = 3  # a floor for any script: no tokenizer packs more bytes into a token


def estimate_tokens(text: str) -> int:
    """An upper estimate of `text`'s tokens. ASCII code and English average about four
    characters a token; other scripts do not: Chinese, Japanese or Korean text is about one
    token a character (3.5 characters a token would under-count it 3.5 times and let a review
    spend far past its cap), and a character beyond the Basic Multilingual Plane (an emoji)
    about two. So each non-ASCII character counts as at least one token, and the whole never
    as less than its UTF-8 bytes / 3."""
    ascii_chars = sum(1 for c in text if c.isascii())
    beyond_bmp = sum(1 for c in text if ord(c) > 0xFFFF)
    by_script = ascii_chars / CHARS_PER_TOKEN + (len(text) - ascii_chars) + beyond_bmp
    by_bytes = len(text.encode("utf-8", errors="surrogatepass")) / UTF8_BYTES_PER_TOKEN
    return int(max(by_script, by_bytes)) + 1


@dataclass(frozen=True)
class Reservation:
    usd: float
    what: str


@dataclass(frozen=True)
class Refusal:
    """A call the cap (or the session's limit) forbade, and why, in words."""

    what: str
    reason: str


@dataclass(frozen=True)
class CapSource:
    """The setting a review's cap comes from, named in every refusal so its fix is plain."""

    setting: str = "--max-usd"  # or "[review] max_usd", "[limits] max_usd"
    left_of: bool = False  # the cap is what the session had left of the setting's budget

    def __str__(self) -> str:
        return f"what was left of {self.setting}" if self.left_of else self.setting


REVIEW_MAX_USD = CapSource("[review] max_usd")


class Budget:
    def __init__(self, max_usd: float | None, meter: Meter | None = None,
                 source: CapSource = CapSource()) -> None:
        self.max_usd = max_usd
        self.meter = meter
        self.source = source  # the setting the cap comes from, for every refusal's fix
        self.stopped_by: str | None = None  # the meter's reason, once it stopped a call
        self._lock = threading.Lock()
        self._spent = 0.0
        self._reserved = 0.0
        self.usage: list[Usage] = []
        self.skipped: list[str] = []  # the calls the cap stopped, in words
        self.refusals: list[Refusal] = []  # the same, each with why

    def estimate(self, prices: PriceTable, model: str, prompt: str, max_output: int) -> float:
        price = prices.price_for(model)
        if price is None:
            return 0.0
        return price.cost(estimate_tokens(prompt), max_output)

    @property
    def cap_text(self) -> str:
        """ "the $0.03 cap (what was left of [limits] max_usd)"."""
        assert self.max_usd is not None
        return f"the {fmt_usd(self.max_usd)} cap ({self.source})"

    def reserve(self, usd: float, what: str, detail: str = "") -> Reservation | Refusal:
        """Hold `usd` for a call, or refuse it (and remember `what` and why) when the cap or the
        meter's limit forbids it; `detail` says what the reservation is made of."""
        over = self.meter.stop_reason() if self.meter is not None else None
        with self._lock:
            if over is not None:
                self.stopped_by = self.stopped_by or over
                return self._refuse(what, over)
            if self.max_usd is not None and self._spent + self._reserved + usd > self.max_usd:
                return self._refuse(what, self._over_cap(usd, detail))
            self._reserved += usd
            return Reservation(usd, what)

    def _refuse(self, what: str, reason: str) -> Refusal:
        refusal = Refusal(what, reason)
        self.skipped.append(what)
        self.refusals.append(refusal)
        return refusal

    def _over_cap(self, usd: float, detail: str) -> str:
        """Why a reservation of `usd` does not fit (called under the lock)."""
        assert self.max_usd is not None
        cost = f"one call may cost {fmt_usd(usd)}" + (f" ({detail})" if detail else "")
        if usd > self.max_usd:
            # No spending could ever make room for it: only a change of settings can.
            return (f"{cost}, more than the whole of {self.cap_text}: raise "
                    f"{self.source.setting}, or lower max_tokens in [review] llm")
        taken = self._spent + self._reserved
        return f"{cost}, and {fmt_usd(taken)} is spent or held: it would pass {self.cap_text}"

    def settle(self, reservation: Reservation, usage: Sequence[Usage]) -> None:
        with self._lock:
            self._reserved -= reservation.usd
            self._spent += sum(u.cost_usd for u in usage)
            self.usage.extend(usage)
        if self.meter is not None:
            for u in usage:
                self.meter.record(u)

    @property
    def spent(self) -> float:
        with self._lock:
            return self._spent

    @property
    def capped(self) -> bool:
        return bool(self.skipped)

    def note(self) -> str | None:
        """What the cap stopped, for the summary (None when it stopped nothing)."""
        if not self.skipped:
            return None
        if self.stopped_by is not None:
            return (f"{self.stopped_by}: {len(self.skipped)} model call(s) not made after "
                    f"${self.spent:.4f}: " + "; ".join(self.skipped[:6])
                    + (" ..." if len(self.skipped) > 6 else ""))
        return (f"{self.cap_text} stopped {len(self.skipped)} model call(s) after "
                f"${self.spent:.4f}: " + "; ".join(self.skipped[:6])
                + (" ..." if len(self.skipped) > 6 else ""))
