"""Find the metric in output nobody formatted for us.

A training script prints `step 200: train loss 2.50, val loss 2.52`, not `val_loss: 2.52`. This
module reads a command's real output and lists the numbers it printed last, each with its label
and the config that captures it: the `kv`, `metric-line` or `json` format when the line already
has that shape, else a regex (`val\\s+loss\\s*(number)`) checked against the whole output to
give back the same value, so a suggestion never captures something else. `init --from-log` and
`check` (after a dry run whose objective was missing) offer them; the `Found` lines are what
`check` shows beside each parsed value.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace

from autoresearch.bounded_log import without_marker
from autoresearch.metrics import (
    MetricFormat,
    parse_metric_value,
    parse_metrics,
    to_float,
    without_terminal_codes,
)

__all__ = ["Candidate", "candidates", "default_pattern", "guess_direction", "likely_objective",
           "source_line"]

# Digits grouped by thousands separators (12,345 or 1,234.5): one number, which the metric
# parser reads without the commas (metrics.to_float). Not followed by another digit or group, so
# `1,2345` and `0,5` are not read as one.
_GROUPED = r"\d{1,3}(?:,\d{3})+(?!\d|,\d)(?:\.\d*)?"
# The capture group of every pattern written here: a number, and nan/inf too, so a diverged run
# reads as nan (a crash) rather than as the last finite value printed before it.
NUMBER = (rf"([-+]?(?:{_GROUPED}|\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
          r"|[-+]?(?i:nan|inf(?:inity)?))")
# A number standing alone: not inside a word or a version (gpt2, 1.2.3), nor a part of digits
# joined by commas that are not thousands separators (`0,5`, `1,2,3`: no single figure to read).
_NUMBER_IN_TEXT = re.compile(rf"(?<![\w.])(?<!\d,)[-+]?(?:{_GROUPED}|\d+\.?\d*|\.\d+)"
                             r"(?:[eE][-+]?\d+)?(?![\w.]*\d)(?!,\d)")
# One to three words ending right before the number, and what separates them from it.
_LABEL_AT_END = re.compile(r"([A-Za-z][\w.\-/]*(?:[ \t]+[A-Za-z][\w.\-/]*){0,2})[^\w]*$")
# Clauses of a line: a comma between two digits joins them (12,345), it does not separate.
_CLAUSE = re.compile(r"(?<!\d),|,(?!\d)|[;|]|\s-\s|\s{2,}|\t")
_KV_LINE = re.compile(r"^\s*([A-Za-z_][\w.\-/]*)\s*:\s*(\S+)\s*$")
_SCAN_LINES = 4000


@dataclass(frozen=True)
class Candidate:
    """One number the output printed, and how the config would capture it."""

    name: str  # the metric name to write in the config (val_loss)
    label: str  # as printed (val loss)
    value: float
    line: str  # the last line it was printed on
    format: MetricFormat
    pattern: str | None = None  # for format = "regex"

    def toml_lines(self) -> list[str]:
        """The `[metric]` lines that make this the objective."""
        lines = [f"name = {json.dumps(self.name)}", f"format = {json.dumps(self.format)}"]
        if self.pattern is not None:
            lines.append(f"patterns = {{ {json.dumps(self.name)} = {toml_literal(self.pattern)} }}")
        return lines


def toml_literal(text: str) -> str:
    """A TOML literal string ('...': no escapes, so a regex reads as written) when possible."""
    return f"'{text}'" if "'" not in text and "\n" not in text else json.dumps(text)


def slug(label: str) -> str:
    return re.sub(r"[^0-9A-Za-z]+", "_", label).strip("_").lower()


def default_pattern(name: str) -> str:
    """A regex for `name` that also matches how people print it: `val_loss: 2.5`,
    `val_loss=2.5`, `val loss 2.52`, `val-loss: 2.5`."""
    words = [re.escape(w) for w in re.split(r"[\s_.\-]+", name.strip()) if w]
    label = r"[\s_.\-]*".join(words) or re.escape(name)
    return rf"\b{label}\s*[:=]?\s*{NUMBER}"


def _label_pattern(label: str, separator: str) -> str:
    """`val loss` + ` ` → `\\bval\\s+loss\\s*(number)`; `acc` + `': ` → `\\bacc\\s*':\\s*(…)`."""
    words = [re.escape(w) for w in label.split()]
    start = r"\b" if re.match(r"\w", label) else ""
    sep = separator.strip()
    sep_re = rf"\s*{re.escape(sep)}\s*" if sep else r"\s*"
    return start + r"\s+".join(words) + sep_re + NUMBER


def _labelled_numbers(line: str) -> list[tuple[str, str, float]]:
    """(label, separator, value) for each number in `line` that has a label right before it."""
    found: list[tuple[str, str, float]] = []
    for clause in _CLAUSE.split(line):
        start = 0
        for m in _NUMBER_IN_TEXT.finditer(clause):
            before, start = clause[start:m.start()], m.end()
            at_end = _LABEL_AT_END.search(before)
            if at_end is None:
                continue
            label = at_end.group(1).rstrip(".-/")
            separator = before[at_end.start(1) + len(label):]
            found.append((label, separator, to_float(m.group(0))))
    return found


def candidates(text: str, limit: int = 12) -> list[Candidate]:
    """The numbers printed last (most recent first, one per name), with a way to capture each
    that reads back the same value from the whole output."""
    text = without_marker(without_terminal_codes(text))
    lines = text.splitlines()[-_SCAN_LINES:]
    out: dict[str, Candidate] = {}
    for line in reversed(lines):
        if len(out) >= limit:
            break
        for cand in _line_candidates(line):
            if cand.name in out:
                continue
            if _reads_back(text, cand):
                out[cand.name] = cand
            elif cand.pattern is not None:
                # `loss 2.50 | val loss 2.60`: `loss` also matches inside `val loss`, so the plain
                # pattern reads 2.60 back. Anchored where its clause starts, it reads 2.50.
                anchored = replace(cand, pattern=_clause_start(cand.pattern))
                if _reads_back(text, anchored):
                    out[cand.name] = anchored
    return list(out.values())[:limit]


def _clause_start(pattern: str) -> str:
    """`pattern` matched only where a clause of the line starts: at the line's start, or after
    punctuation (`|`, `,`, `;`, `(`), never after another word (`val` before `loss`)."""
    return r"(?:^|[^\w\s])[ \t]*" + pattern.removeprefix(r"\b")


def _line_candidates(line: str) -> list[Candidate]:
    stripped = line.strip()
    if not stripped:
        return []
    for fmt in ("json", "metric-line", "kv"):
        parsed = parse_metrics(stripped, fmt)
        if parsed and (fmt != "kv" or _KV_LINE.match(stripped)):
            return [Candidate(name, name, value, stripped, fmt)
                    for name, value in reversed(parsed.items())]
    out = []
    for label, sep, value in reversed(_labelled_numbers(stripped)):
        out.append(Candidate(slug(label), label, value, stripped, "regex",
                             _label_pattern(label, sep)))
    return out


def _reads_back(text: str, cand: Candidate) -> bool:
    """The candidate's config, applied to the whole output, yields the value it was seen with."""
    patterns = {cand.name: cand.pattern} if cand.pattern is not None else None
    got = parse_metrics(text, cand.format, patterns).get(cand.name)
    return got is not None and (got == cand.value or (got != got and cand.value != cand.value))


_MINIMIZE = re.compile(r"loss|bpb|bpc|err|perplex|ppl|mse|mae|rmse|nll|wer|cer|time|latency|"
                       r"seconds|regret|cost|distance|diverg", re.IGNORECASE)
_MAXIMIZE = re.compile(r"acc|f1|auc|score|reward|return|precision|recall|bleu|rouge|map\b|iou|"
                       r"throughput|tok_?s|per_?sec|speed|r2|success|win|"
                       # rates and ranking measures: tokens_s, samples_per_s, top1, mrr, ndcg@10
                       r"(?:tokens?|samples?|images?|steps?|it|iters?)(?:_per)?_s(?:ec)?\b|"
                       r"per_?s(?:ec)?\b|top_?\d|"
                       r"mrr|ndcg|hits?_?at|mfu", re.IGNORECASE)


_OBJECTIVE = re.compile(r"loss|bpb|bpc|ppl|perplex|acc|f1|auc|bleu|rouge|reward|score|err|"
                        r"mse|mae|nll|wer|cer|iou", re.IGNORECASE)
_HELD_OUT = re.compile(r"(?:^|_)(?:val|valid|validation|eval|test|dev)(?:_|$)", re.IGNORECASE)


def likely_objective(found: list[Candidate]) -> Candidate:
    """The candidate most likely meant as the objective: a validation loss or accuracy before a
    training one, before anything else that has a direction (a time), before the rest; the
    most recent among equals."""

    def rank(c: Candidate) -> int:
        objective = bool(_OBJECTIVE.search(c.name))
        return 2 * objective + (objective and bool(_HELD_OUT.search(c.name))) + (
            guess_direction(c.name) is not None)

    return max(found, key=rank)  # max keeps the first (most recent) of equal ranks


def guess_direction(name: str) -> str | None:
    """minimize for losses and errors, maximize for accuracies and rewards, else None."""
    if _MINIMIZE.search(name):
        return "minimize"
    if _MAXIMIZE.search(name):
        return "maximize"
    return None


def source_line(text: str, fmt: MetricFormat, name: str, pattern: str | None = None) -> str | None:
    """The line the parser took `name`'s value from (the last one), to show beside the value."""
    lines = text.splitlines()
    if fmt == "regex" and pattern is not None:
        regex = re.compile(pattern, re.MULTILINE)
        group: int | str = "value" if "value" in regex.groupindex else 1
        for m in reversed(list(regex.finditer(text))):
            if parse_metric_value(m.group(group) or "") is not None:
                begin = text.rfind("\n", 0, m.start(group)) + 1
                end = text.find("\n", m.end(group))
                return text[begin:end if end >= 0 else None].strip()
        return None
    for line in reversed(lines):
        if name in parse_metrics(line, fmt):
            return line.strip()
    return None
