"""Verification of LLM findings: first the quote, mechanically; then a second model's verdict.

1. Anchor (no model): the quoted code must be in the head revision of the cited file, at the cited
   lines (within `LINE_TOLERANCE`, since models miscount by a line or two). A finding is re-anchored
   to exactly where its quote is; one whose quote is absent, or present only elsewhere in the file,
   is dropped, and the summary counts it. This is what removes hallucinated code paths and line
   numbers before anyone reads them.
2. Verify (one call per file, a separate model call that sees the findings and the code): each
   finding is confirmed or rejected. A finding the cap left unverified is not shown as a finding;
   the summary lists it as unverified.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import partial

from autoresearch.proposers.base import Usage
from autoresearch.proposers.llm.providers import Turn
from autoresearch.review.change import Change
from autoresearch.review.context import ReviewContext
from autoresearch.review.llm_call import ask
from autoresearch.review.model import Dropped, RawFinding
from autoresearch.review.prompts import VERIFY_SYSTEM, history_block, verify_prompt
from autoresearch.review.replies import ReplyError, verdicts_from_reply
from autoresearch.review.workers import DaemonPool

LINE_TOLERANCE = 3
MAX_PER_CALL = 12
_NUMBER_PREFIX = re.compile(r"^\s*\d+\s*[|:]\s?")


def _norm(line: str) -> str:
    return " ".join(line.split())


def quote_lines(quote: str) -> list[str]:
    """The quote's non-blank lines, normalized; a leading "12 | " copied from the prompt is cut."""
    lines = [line for line in quote.strip("\n").splitlines() if line.strip()]
    numbered = lines and all(_NUMBER_PREFIX.match(line) for line in lines)
    return [_norm(_NUMBER_PREFIX.sub("", line) if numbered else line) for line in lines]


def find_quote(text: str, quote: str) -> list[tuple[int, int]]:
    """Every (start, end) head-line span where the quote's lines appear, in order.

    Each quote line must be contained in one file line, consecutive apart from blank lines; the
    first and last quote lines may be fragments of their lines, the middle ones must be whole.
    """
    wanted = quote_lines(quote)
    if not wanted:
        return []
    lines = [(n, _norm(line)) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    spans: list[tuple[int, int]] = []
    for i in range(len(lines) - len(wanted) + 1):
        ok = True
        for j, want in enumerate(wanted):
            have = lines[i + j][1]
            inner = 0 < j < len(wanted) - 1
            if (have != want) if inner else (want not in have):
                ok = False
                break
        if ok:
            spans.append((lines[i][0], lines[i + len(wanted) - 1][0]))
    return spans


def anchor(finding: RawFinding, change: Change) -> RawFinding | Dropped:
    """The finding re-anchored on its quote, or why it cannot be."""
    text = change.source.head_text(finding.path)
    if text is None:
        return Dropped(finding, f"{finding.path} does not exist in the head revision", "quote")
    spans = find_quote(text, finding.quote)
    if not spans:
        return Dropped(finding, f"the quoted code is not in {finding.path}", "quote")
    near = [s for s in spans if abs(s[0] - finding.start_line) <= LINE_TOLERANCE
            or s[0] <= finding.start_line <= s[1]]
    if not near:
        where = ", ".join(str(s[0]) for s in spans[:3])
        return Dropped(finding, f"the quoted code is not at the cited line {finding.start_line} "
                       f"of {finding.path} (it is at line {where})", "quote")
    start, end = min(near, key=lambda s: abs(s[0] - finding.start_line))
    return replace(finding, start_line=start, end_line=end)


@dataclass
class Verification:
    confirmed: list[RawFinding] = field(default_factory=list)
    dropped: list[Dropped] = field(default_factory=list)
    usage: list[Usage] = field(default_factory=list)
    calls: int = 0
    failures: list[str] = field(default_factory=list)


def verify(ctx: ReviewContext, findings: Sequence[RawFinding]) -> Verification:
    """Anchor every finding, then ask the verifier about the anchored ones, file by file."""
    result = Verification()
    anchored: list[RawFinding] = []
    for finding in findings:
        outcome = anchor(finding, ctx.change)
        if isinstance(outcome, Dropped):
            result.dropped.append(outcome)
        else:
            anchored.append(outcome)
    by_path: dict[str, list[RawFinding]] = defaultdict(list)
    for finding in anchored:
        by_path[finding.path].append(finding)
    batches = [items[i:i + MAX_PER_CALL] for items in by_path.values()
               for i in range(0, len(items), MAX_PER_CALL)]
    if not batches:
        return result
    pool = DaemonPool(ctx.settings.parallel, "verifier")  # a stop does not wait for a call
    futures = [pool.submit(partial(_verify_batch, ctx, batch)) for batch in batches]
    try:
        for future in futures:
            part = future.result()
            result.confirmed += part.confirmed
            result.dropped += part.dropped
            result.usage += part.usage
            result.calls += part.calls
            result.failures += part.failures
    except BaseException:
        pool.cancel()
        raise
    return result


def _verify_batch(ctx: ReviewContext, batch: Sequence[RawFinding]) -> Verification:
    setup = ctx.settings.llm
    assert setup is not None
    out = Verification()
    changed = ctx.change.file(batch[0].path)
    assert changed is not None
    budget_chars = int(setup.context_tokens * 3.5)
    # Regression claims can only be checked against the history they cite.
    history = history_block(ctx.history, [changed.old_path or changed.path]) if any(
        f.category == "regression" or f.angle == "history" for f in batch) else ""
    prompt = verify_prompt(ctx.change, changed, batch, budget_chars, history)
    what = f"verification of {len(batch)} finding(s) in {changed.path}"
    result = ask(ctx, VERIFY_SYSTEM, [Turn.user(prompt)], purpose="verify", what=what,
                 model=setup.verify_model)
    out.usage += result.usage
    out.calls += 0 if result.skipped else 1
    if result.skipped or result.error is not None or result.text is None:
        reason = (f"not verified: {result.skip_reason}" if result.skipped
                  else f"not verified: the verification call failed ({result.error})")
        if result.error is not None:
            out.failures.append(f"{what}: {result.error}")
        out.dropped += [Dropped(f, reason, "budget" if result.skipped else "model") for f in batch]
        return out
    try:
        verdicts = verdicts_from_reply(result.text, len(batch))
    except ReplyError as exc:
        out.failures.append(f"{what}: the verifier's reply was not usable ({exc})")
        out.dropped += [Dropped(f, "not verified: the verifier's reply could not be read",
                                "model") for f in batch]
        return out
    for i, finding in enumerate(batch, 1):
        verdict = verdicts.get(i)
        if verdict is None:
            out.dropped.append(Dropped(finding, "the verifier gave no verdict", "model"))
        elif verdict.confirmed:
            out.confirmed.append(finding)
        else:
            out.dropped.append(Dropped(finding, f"rejected by the verifier: {verdict.reason}",
                                       "model"))
    return out
