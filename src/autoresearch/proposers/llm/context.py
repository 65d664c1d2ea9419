"""What the model is shown, assembled within a token budget.

Two parts, because Anthropic caches a prompt prefix: the *stable* part (program.md and the
in-scope files) changes only when the incumbent changes, so it goes first and is cached; the
*volatile* part (history, near-misses, the incumbent's diff, the last crash, the stuck flag)
changes every experiment and goes after it.

Two things never reach the model: the content of protected files (they may hold the evaluation,
the data split or secrets) and held-out metrics (the point of holding them out is that the search
never sees them). Summaries already arrive without held-out metrics; this module filters again
and also hides log lines that name one, because a verify command may print them.

What is read for the model, and how each part is kept clean:
- files: only `visible_files`, the in-scope files whose canonical path the guardrails accept (never
  a protected file, nothing through a symlink, which could point at one), and only text files;
- the incumbent's diff against the baseline: an allowlist, not a denylist: a file's section is
  kept only when its header names one in-scope, non-protected path exactly (a quoted, renamed or
  unparsable header is dropped rather than guessed at);
- the crash log tail: it is the verify command's own output, so it is sent, except for every line
  that carries protected content (`ProtectedText`: a line of a protected file in any case, or a
  word or value found only in protected files: a traceback quoting the evaluation's source, an
  exception quoting a value read from a protected config). A command that transforms protected
  content before printing it (encodes it, prints one character per line) defeats any filter:
  what the verify command prints is the user's choice. Out-of-scope files that are not
  protected are never read for the model, but a traceback through them is shown (it is what a
  repair needs); protect a file to keep its lines out of the log tail too;
- program.md is the brief, sent by design although it is always protected.

Tokens are estimated as characters / 4: good enough for a budget, and no tokenizer dependency.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from autoresearch import guardrails
from autoresearch.config import MetricConfig
from autoresearch.globs import matches
from autoresearch.metrics import compile_metric_regex, parse_metrics, without_terminal_codes
from autoresearch.proposers.base import ExperimentSummary, ProposalContext
from autoresearch.proposers.llm.protected_text import ProtectedText
from autoresearch.repo_paths import Canonicalizer, PathRefused, canonical_path
from autoresearch.textcheck import is_binary

CHARS_PER_TOKEN = 4
DEFAULT_CONTEXT_TOKENS = 60_000
MAX_FILE_BYTES = 2_000_000  # larger in-scope files are listed, never inlined
RECENT_EXPERIMENTS = 15

_DEF = re.compile(r"^\s*(?:async\s+def|def|class|fn|func|function|struct|impl)\b")
_CONSTANT = re.compile(r"^\s*[A-Z][A-Z0-9_]*\s*(?::[^=]+)?=[^=]")
_HUNK = re.compile(r"^@@ -\d+(?:,\d+)? \+(\d+)(?:,(\d+))? @@")


def estimate_tokens(text: str) -> int:
    return (len(text) + CHARS_PER_TOKEN - 1) // CHARS_PER_TOKEN


@dataclass(frozen=True)
class Context:
    stable: str
    volatile: str
    notes: list[str] = field(default_factory=list)  # what was trimmed, for logs and tests
    # In-scope files the model was not shown whole (excerpted, binary or too large): a FILE
    # block must not replace one, or everything it did not see would be lost.
    partial: frozenset[str] = frozenset()

    @property
    def tokens(self) -> int:
        return estimate_tokens(self.stable) + estimate_tokens(self.volatile)


def _rules(ctx: ProposalContext) -> guardrails.Rules:
    return guardrails.Rules(ctx.config.scope, ctx.config.all_protected)


def visible_files(ctx: ProposalContext) -> list[str]:
    """In-scope files the model may see: each canonical and accepted by the guardrails' own
    `judge_path` (never a protected file, never a symlink, which could point at one)."""
    rules, canonical = _rules(ctx), Canonicalizer(ctx.worktree)
    out = []
    for path in ctx.scope_files:
        try:
            guardrails.judge_path(ctx.worktree, path, rules, canonical=canonical)
        except PathRefused:
            continue
        out.append(path)
    return out


def _may_show(path: str, rules: guardrails.Rules) -> bool:
    """Whether a path named in a diff is one the model may see (judged as text)."""
    try:
        return (canonical_path(path, exact=True) == path and matches(path, rules.scope)
                and guardrails.is_protected(path, rules.protected) is None)
    except PathRefused:
        return False


HIDDEN_METRIC = "[line hidden: it mentions a held-out metric]"


def redact(text: str, metric: MetricConfig) -> str:
    """Replace every line that names a held-out metric or that the configured metric parsing
    reads one from: with `format = "regex"` the line need not name it (`holdout accuracy was
    0.93`), and a pattern may span lines."""
    hidden = metric.heldout
    if not hidden or not text:
        return text
    lines = text.split("\n")
    named = re.compile(r"\b(?:" + "|".join(re.escape(h) for h in hidden) + r")\b")
    drop = {i for i, line in enumerate(lines) if named.search(line)}
    # Read as the parser reads: without terminal codes (stripped line by line, so that line
    # numbers stay those of `text`).
    clean = [without_terminal_codes(line) for line in lines]
    if metric.format == "regex":
        joined = "\n".join(clean)
        for name in hidden:
            if (pattern := metric.patterns.get(name)) is None:
                continue  # the parser cannot read it at all
            for m in compile_metric_regex(name, pattern).finditer(joined):
                first = joined.count("\n", 0, m.start())
                drop.update(range(first, first + joined.count("\n", m.start(), m.end()) + 1))
    else:
        drop.update(i for i, line in enumerate(clean)
                    if not parse_metrics(line, metric.format).keys().isdisjoint(hidden))
    return "\n".join(HIDDEN_METRIC if i in drop else line for i, line in enumerate(lines))


def _clip(text: str, max_chars: int, *, keep: str = "tail") -> str:
    if len(text) <= max_chars:
        return text
    cut = max(0, max_chars - 60)
    if keep == "tail":
        return f"[... {len(text) - cut} characters cut ...]\n" + text[len(text) - cut :]
    return text[:cut] + f"\n[... {len(text) - cut} characters cut ...]"


def _fence(content: str) -> str:
    longest = max((len(m) for m in re.findall(r"`{3,}", content)), default=2)
    return "`" * max(3, longest + 1)


# --- the stable part ----------------------------------------------------------------------


def _changed_lines(diff: str) -> dict[str, list[int]]:
    """New-side line numbers each file's hunks touch, from a unified diff."""
    out: dict[str, list[int]] = {}
    path = None
    for line in diff.split("\n"):
        if line.startswith("+++ "):
            target = line[4:].strip()
            path = target[2:] if target.startswith("b/") else None
        elif path and (m := _HUNK.match(line)):
            start, length = int(m.group(1)), int(m.group(2) or "1")
            out.setdefault(path, []).extend(range(start, start + max(length, 1)))
    return out


def excerpt(content: str, max_chars: int, focus: Sequence[int] = ()) -> tuple[str, int]:
    """The most useful verbatim lines of a file within max_chars, with gaps marked.

    Priority: the top of the file (imports, settings), lines the incumbent changed, constant
    assignments (the knobs people tune), then definition lines as a skeleton. Returns the text
    and how many lines it shows.
    """
    lines = content.split("\n")
    n = len(lines)
    ranges: list[tuple[int, int]] = [(0, min(n, 40))]
    ranges += [(max(0, f - 1 - 8), min(n, f + 8)) for f in focus]
    ranges += [(max(0, i - 1), min(n, i + 2)) for i, ln in enumerate(lines) if _CONSTANT.match(ln)]
    ranges += [(i, i + 1) for i, ln in enumerate(lines) if _DEF.match(ln)]
    shown: set[int] = set()
    used = 0
    for lo, hi in ranges:
        extra = [i for i in range(lo, hi) if i not in shown]
        cost = sum(len(lines[i]) + 1 for i in extra) + 40
        if used + cost > max_chars:
            continue
        shown.update(extra)
        used += cost
    out: list[str] = []
    prev = -1
    for i in sorted(shown):
        if i != prev + 1:
            out.append(f"⋮ [lines {prev + 2}-{i} not shown]")
        out.append(lines[i])
        prev = i
    if prev < n - 1:
        out.append(f"⋮ [lines {prev + 2}-{n} not shown]")
    return "\n".join(out), len(shown)


def render_files(
    files: Mapping[str, str], max_chars: int, diff: str = ""
) -> tuple[str, list[str], set[str]]:
    """Files whole while they fit a fair share of the budget, else excerpted.

    Returns the text, notes on what was trimmed, and the paths shown only as an excerpt."""
    focus = _changed_lines(diff)
    notes: list[str] = []
    excerpted: set[str] = set()
    parts: list[str] = []
    remaining = max_chars
    order = sorted(files, key=lambda p: len(files[p]))  # small files first leave room for big ones
    rendered: dict[str, str] = {}
    for k, path in enumerate(order):
        content = files[path]
        share = remaining // (len(order) - k)
        total_lines = content.count("\n") + 1
        if len(content) + 80 <= share:
            header = f"### {path} (whole file, {total_lines} lines)"
            body = content
        else:
            body, shown = excerpt(content, max(share - 200, 0), focus.get(path, ()))
            header = (
                f"### {path} (EXCERPT: {shown} of {total_lines} lines; lines marked ⋮ are not "
                "shown — SEARCH only for text you can see)"
            )
            notes.append(f"{path}: excerpt, {shown}/{total_lines} lines")
            excerpted.add(path)
        fence = _fence(body)
        block = f"{header}\n{fence}\n{body}\n{fence}\n"
        rendered[path] = block
        remaining -= len(block)
    for path in sorted(files):  # stable order keeps the cached prefix stable
        parts.append(rendered[path])
    return "\n".join(parts), notes, excerpted


def read_files(ctx: ProposalContext, overlay: Mapping[str, str | None] | None = None) -> dict[str, str]:
    """The visible in-scope text files (with `overlay` edits applied on top)."""
    out: dict[str, str] = {}
    visible = visible_files(ctx)
    for path in visible:
        if overlay is not None and path in overlay:
            content = overlay[path]
            if content is not None:
                out[path] = content
            continue
        full = ctx.worktree / path
        try:
            if not full.is_file() or full.stat().st_size > MAX_FILE_BYTES:
                continue
            data = full.read_bytes()
        except OSError:
            continue
        if not is_binary(data):
            out[path] = data.decode("utf-8")
    if overlay:
        rules, canonical = _rules(ctx), Canonicalizer(ctx.worktree)
        for path, content in overlay.items():
            # New files a failed proposal created are part of the candidate being repaired; each
            # is judged like any path (the overlay is the model's own text, but its name is not
            # trusted to be canonical).
            if content is None or path in out:
                continue
            try:
                if guardrails.judge_path(ctx.worktree, path, rules, canonical=canonical) == path:
                    out[path] = content
            except PathRefused:
                continue
    return out


# --- the volatile part --------------------------------------------------------------------


def _fmt(x: float | None) -> str:
    return "—" if x is None else f"{x:.6g}"


def _summary_line(e: ExperimentSummary, metric: MetricConfig) -> str:
    metrics = {k: v for k, v in e.metrics.items() if k not in metric.heldout}
    extra = " ".join(f"{k}={v:.4g}" for k, v in list(metrics.items())[:6])
    reason = redact(e.reason, metric).replace("\n", " ")[:160]
    return (
        f"#{e.seq} {e.status:<9} obj={_fmt(e.objective)} Δ={_fmt(e.delta)} "
        f"+{e.lines_added}/-{e.lines_removed} | {e.hypothesis[:160]}"
        + (f" | {extra}" if extra else "")
        + (f" | {reason}" if reason else "")
    )


def visible_diff(diff: str, rules: guardrails.Rules) -> str:
    """The sections of a unified git diff that concern files the model may see (an allowlist: a
    section whose header does not name one such path exactly, twice, is dropped)."""
    sections = re.split(r"(?m)^(?=diff --git )", diff)
    kept = []
    for section in sections:
        if not section.startswith("diff --git "):
            continue  # text before the first header: nothing a model needs
        header = section.split("\n", 1)[0]
        names = header[len("diff --git "):]
        half = (len(names) - 1) // 2
        a, b = names[:half], names[half + 1:]
        if (len(names) % 2 == 1 and names[half] == " " and a.startswith("a/")
                and b.startswith("b/") and a[2:] == b[2:] and _may_show(a[2:], rules)):
            kept.append(section)
    return "".join(kept)


def history_text(ctx: ProposalContext, max_chars: int) -> str:
    metric = ctx.config.metric
    sign = 1.0 if ctx.direction == "maximize" else -1.0
    out = [
        f"Objective: {ctx.metric_name} ({ctx.direction}). "
        f"Baseline {_fmt(ctx.baseline.objective if ctx.baseline else None)}, "
        f"incumbent (best kept) {_fmt(ctx.incumbent.objective if ctx.incumbent else None)}."
    ]
    best = ctx.best(5)
    if best:
        out.append("\nBest kept experiments:")
        out += [_summary_line(e, metric) for e in best]
    near = [
        e for e in ctx.history
        if e.status == "discard" and e.delta is not None and sign * e.delta > 0
    ]
    near.sort(key=lambda e: -sign * (e.delta or 0.0))
    if near:
        out.append("\nNear-misses (improved, but not by enough to be kept; worth refining):")
        out += [_summary_line(e, metric) for e in near[:5]]
    recent = list(ctx.history)[-RECENT_EXPERIMENTS:]
    header = "\n".join(out)
    lines = [_summary_line(e, metric) for e in recent]
    # Drop the oldest recent lines first when the budget is tight.
    while lines and len(header) + sum(len(s) + 1 for s in lines) + 40 > max_chars:
        lines.pop(0)
    older = len(ctx.history) - len(lines)
    recent_header = f"\nRecent experiments (oldest first{f'; {older} earlier not shown' if older else ''}):"
    body = header + (recent_header + "\n" + "\n".join(lines) if lines else "")
    if not ctx.history:
        body += "\nNo experiments yet besides the baseline."
    return _clip(body, max_chars, keep="head")


def volatile_text(
    ctx: ProposalContext, budget_chars: int, crash_log: str | None, diff: str,
    protected: ProtectedText,
) -> str:
    parts = ["## Session\n" + history_text(ctx, int(budget_chars * 0.4))]
    if ctx.in_flight:  # a parallel session: siblings' experiments are being measured right now
        parts.append("## Running now in other slots (propose something different)\n" + "\n".join(
            f"- {e.id}: {e.hypothesis[:160]}" for e in ctx.in_flight))
    diff = visible_diff(diff, _rules(ctx))
    if diff.strip():
        parts.append(
            "## The incumbent's diff against the baseline\n"
            + _clip(diff, int(budget_chars * 0.35), keep="head")
        )
    if crash_log:
        parts.append(
            "## Log tail of the last crash\n```\n"
            + _clip(redact(protected.hide(crash_log), ctx.config.metric),
                    int(budget_chars * 0.2))
            + "\n```"
        )
    if ctx.stuck:
        parts.append(
            "## You are stuck\nThe last experiments did not improve the objective. Stop "
            "fine-tuning the same idea: try a clearly different direction (a different "
            "mechanism, not a nearby value)."
        )
    return "\n\n".join(parts)


def build_context(
    ctx: ProposalContext,
    *,
    budget_tokens: int = DEFAULT_CONTEXT_TOKENS,
    include_files: bool = True,
    overlay: Mapping[str, str | None] | None = None,
    crash_log: str | None = None,
) -> Context:
    """Assemble the prompt context. `overlay` shows a candidate's edits (for crash repair)."""
    budget = max(budget_tokens, 2_000) * CHARS_PER_TOKEN
    program = ctx.program.strip() or "(program.md is empty)"
    program = _clip(program, int(budget * 0.15), keep="head")
    log = ctx.last_crash_log if crash_log is None else crash_log
    diff = visible_diff(ctx.diff_from_baseline() or "", _rules(ctx))
    # What the model sees (or, for an agent, may open): its words are no secret in a log.
    files = read_files(ctx, overlay)
    protected = ProtectedText.of(ctx, seen=[*files, *files.values()]) if log else None
    volatile = volatile_text(ctx, int(budget * 0.3), log, diff,
                             protected or ProtectedText(frozenset(), frozenset()))
    stable = "## program.md (the research brief)\n" + program + "\n"
    notes: list[str] = []
    partial: set[str] = set()
    names = visible_files(ctx)
    if include_files:
        room = budget - len(stable) - len(volatile)
        text, notes, partial = render_files(files, room, diff)
        skipped = [p for p in names if p not in files]
        partial.update(skipped)
        stable += "\n## Files you may change (their current content)\n" + text
        if skipped:
            stable += "\nAlso in scope (binary or too large to show): " + ", ".join(skipped) + "\n"
    else:
        stable += "\n## Files you may change\n" + "\n".join(f"- {p}" for p in names) + "\n"
    return Context(stable=stable, volatile=volatile, notes=notes, partial=frozenset(partial))
