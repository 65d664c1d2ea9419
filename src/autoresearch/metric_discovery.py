"""Find the metric in output nobody formatted for us.

A training script prints `step 200: train loss 2.50, val loss 2.52`, not `val_loss: 2.52`. This
module reads a command's real output and lists the numbers it printed last, each with its label
and the config that captures it: the `kv`, `metric-line` or `json` format when the line already
has that shape, else a regex (`val\\s+loss\\s*(number)`) checked against the whole output to
give back the same value, so a suggestion never captures something else. A unit printed after
the number is part of the regex (a value printed in another unit is then not read), and the
summaries of common benchmark tools (go test -bench, hyperfine, Criterion) are read by shape.
`init --from-log` and `check` (after a dry run whose objective was missing) offer them; the
`Found` lines are what `check` shows beside each parsed value.
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
           "printed_units", "required_unit", "source_line"]

# Digits grouped by thousands separators (12,345 or 1,234.5): one number, which the metric
# parser reads without the commas (metrics.to_float). Not followed by another digit or group, so
# `1,2345` and `0,5` are not read as one.
_GROUPED = r"\d{1,3}(?:,\d{3})+(?!\d|,\d)(?:\.\d*)?"
# The capture group of every pattern written here: a number, and nan/inf too, so a diverged run
# reads as nan (a crash) rather than as the last finite value printed before it.
_NUMBER_TEXT = (rf"[-+]?(?:{_GROUPED}|\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
                r"|[-+]?(?i:nan|inf(?:inity)?)")
NUMBER = f"({_NUMBER_TEXT})"
# The units a number may carry, attached (110.42ms) or one space away (908.4 ms): times, sizes,
# frequencies, a percentage, a factor, and any rate or per-item figure (tok/s, ns/op, MB/s).
# Tools that pick their own unit by the value's size (hyperfine, Criterion, Go) print 908.4 ms
# one run and 1.405 s the next, so a pattern must keep the unit it saw.
UNIT = (r"(?:[A-Za-zµμ]+/[A-Za-z]+|ns|us|µs|μs|ms|s|secs?|seconds?|mins?|minutes?|h|hrs?|"
        r"hours?|[kKMGTP]i?B|B|bytes|[kMG]?Hz|%|x)")
# A unit right after a number, ending where a word would (so `s` is no unit of `2 steps`).
_UNIT_AFTER = re.compile(rf"[ \t]?({UNIT})(?![\w/%])")
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
    unit: str | None = None  # printed right after the number (ms), and required by the pattern

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


def _label_pattern(label: str, separator: str, unit: str | None = None) -> str:
    """`val loss` + ` ` → `\\bval\\s+loss\\s*(number)`; `acc` + `': ` → `\\bacc\\s*':\\s*(…)`;
    with a unit, the number must carry it: `\\btime\\s*:\\s*(number)[ \\t]*ms(?![\\w/%])`."""
    words = [re.escape(w) for w in label.split()]
    start = r"\b" if re.match(r"\w", label) else ""
    sep = separator.strip()
    sep_re = rf"\s*{re.escape(sep)}\s*" if sep else r"\s*"
    return start + r"\s+".join(words) + sep_re + NUMBER + _unit_pattern(unit)


def _unit_pattern(unit: str | None) -> str:
    """What follows the number's group in a pattern: the unit the log printed, if any."""
    return rf"[ \t]*{re.escape(unit)}(?![\w/%])" if unit else ""


_REQUIRED_UNIT = re.compile(r"\)\[ \\t\]\*(.+?)\(\?!\[\\w/%\]\)$")


def required_unit(pattern: str) -> str | None:
    """The unit a pattern written here requires after its number (`…)[ \\t]*ms(?![\\w/%])`)."""
    m = _REQUIRED_UNIT.search(pattern)
    return re.sub(r"\\(.)", r"\1", m.group(1)) if m else None


# Words of prose, not of a metric's label: `Found 11 outliers among 100 measurements` counts
# things, `Collecting 100 samples in estimated 5.1 s` reports progress, and `tokens per
# iteration will be: 16,384` a setting. Few, so that `number of params` stays a label.
_PROSE = frozenset({"among", "than", "in", "is", "are", "was", "were", "will", "be", "found",
                    "collecting", "warming", "benchmarking"})


def _unit_at(clause: str, end: int) -> tuple[str | None, int]:
    """(the unit right after a number ending at `end`, where the unit ends)."""
    m = _UNIT_AFTER.match(clause, end)
    return (m.group(1), m.end()) if m else (None, end)


def _is_label(label: str, separator: str, after_number: bool) -> bool:
    """Whether the words before a number name it. Not prose (`outliers among 100`), and not the
    noun of the number before them with this one in parentheses: `100 measurements (11.0%)`."""
    if any(word.lower() in _PROSE for word in label.split()):
        return False
    return not (after_number and "(" in separator)


def _labelled_numbers(line: str) -> list[tuple[str, str, float, str | None]]:
    """(label, separator, value, unit) for each number in `line` that has a label right before
    it; a number glued to letters that are no unit (`207k`, `2nd`) is no figure to read."""
    found: list[tuple[str, str, float, str | None]] = []
    for clause in _CLAUSE.split(line):
        start, seen_number = 0, False
        for m in _NUMBER_IN_TEXT.finditer(clause):
            unit, unit_end = _unit_at(clause, m.end())
            glued = unit is None and clause[m.end():m.end() + 1].isalpha()
            before, start = clause[start:m.start()], unit_end
            after_number, seen_number = seen_number, True
            at_end = _LABEL_AT_END.search(before)
            if at_end is None or glued:
                continue
            label = at_end.group(1).rstrip(".-/")
            separator = before[at_end.start(1) + len(label):]
            # Only blanks between the number before and the label: the label is its noun.
            right_after = after_number and not before[:at_end.start(1)].strip()
            if _is_label(label, separator, right_after):
                found.append((label, separator, to_float(m.group(0)), unit))
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
    benchmark = _go_benchmark(stripped)
    if benchmark is not None:  # its name and iteration count are no figures to offer
        return benchmark
    estimates = _estimate_triples(stripped)
    if estimates:  # Criterion's line: the benchmark's name before them is no figure either
        return estimates
    out = _summary_statistics(stripped)
    for label, sep, value, unit in reversed(_labelled_numbers(stripped)):
        out.append(Candidate(slug(label), label, value, stripped, "regex",
                             _label_pattern(label, sep, unit), unit))
    return out


# `go test -bench` (https://pkg.go.dev/testing): the name, with `-N` (GOMAXPROCS) appended when N
# is not 1, the iterations, then value-unit pairs (`1234567 ns/op   0 B/op   0 allocs/op`).
_GO_BENCH = re.compile(rf"^(Benchmark\S*?)(?:-\d+)?[ \t]+\d+((?:[ \t]+(?:{_NUMBER_TEXT})[ \t]+\S+)+)"
                       r"[ \t]*$")
_GO_PAIR = re.compile(rf"({_NUMBER_TEXT})[ \t]+(\S+)")


def _go_benchmark(line: str) -> list[Candidate] | None:
    """One candidate per value of a Go benchmark line, named by the benchmark and the unit
    (`benchmarksum_ns_per_op`), read with or without the `-N` suffix, which changes with the
    machine's cores; the time per operation first."""
    m = _GO_BENCH.match(line)
    if m is None:
        return None
    name = m.group(1)
    out = []
    for pair in _GO_PAIR.finditer(m.group(2)):
        number, unit = pair.group(1), pair.group(2)
        pattern = (rf"^{re.escape(name)}(?:-\d+)?[ \t]+\d+[ \t]+(?:\S+[ \t]+\S+[ \t]+)*?"
                   rf"{NUMBER}[ \t]+{re.escape(unit)}(?!\S)")
        out.append(Candidate(slug(f"{name} {unit.replace('/', ' per ')}"), f"{name} {unit}",
                             to_float(number), line, "regex", pattern, unit))
    return sorted(out, key=lambda c: c.unit != "ns/op")


# Criterion's estimates (https://bheisler.github.io/criterion.rs/book/user_guide/command_line_output.html):
# `time:   [26.123 us 26.301 us 26.505 us]`, the lower bound, the estimate, the upper bound.
_VALUE_AND_UNIT = rf"(?:{_NUMBER_TEXT})(?:[ \t]*{UNIT})?"
_TRIPLE = re.compile(rf"(?<![\w.\-/])([A-Za-z][\w.\-/]*):[ \t]*\[[ \t]*{_VALUE_AND_UNIT}[ \t]+"
                     rf"({_NUMBER_TEXT})(?:[ \t]*({UNIT}))?[ \t]+{_VALUE_AND_UNIT}[ \t]*\]")


# In a written pattern, the low estimate: a figure, then its unit if any (a word, not a number).
_LOW_ESTIMATE = r"[^\s\]]+(?:[ \t]+[^\s\d.+\-\]][^\s\]]*)?"


def _estimate_triples(line: str) -> list[Candidate]:
    """The middle of each `label: [low estimate high]`, the estimate itself."""
    out = []
    for m in _TRIPLE.finditer(line):
        label, number, unit = m.group(1), m.group(2), m.group(3)
        pattern = (rf"(?<![\w.\-/]){re.escape(label)}:[ \t]*\[[ \t]*{_LOW_ESTIMATE}[ \t]+"
                   rf"{NUMBER}{_unit_pattern(unit)}")
        out.append(Candidate(slug(label), label, to_float(number), line, "regex", pattern, unit))
    return out


# hyperfine's summary (https://github.com/sharkdp/hyperfine): `Time (mean ± σ):  12.3 ms ±  0.4 ms`,
# or `Time (abs ≡):  12.3 ms` for a single run.
_STATISTIC = re.compile(rf"\b([A-Za-z]\w*)[ \t]*\((mean|abs)\b[^)]*\):[ \t]*({_NUMBER_TEXT})"
                        rf"(?:[ \t]*({UNIT})(?![\w/%]))?")


def _summary_statistics(line: str) -> list[Candidate]:
    """`Time (mean ± σ): 12.3 ms` → time_mean = 12.3 (ms); `Time (abs ≡): 12.3 ms` → time."""
    out = []
    for m in _STATISTIC.finditer(line):
        label, statistic, number, unit = m.groups()
        name = slug(label) + ("_mean" if statistic == "mean" else "")
        pattern = (rf"\b{re.escape(label)}[ \t]*\({statistic}\b[^)\n]*\):[ \t]*{NUMBER}"
                   + _unit_pattern(unit))
        out.append(Candidate(name, f"{label} ({statistic})", to_float(number), line, "regex",
                             pattern, unit))
    return out


def _reads_back(text: str, cand: Candidate) -> bool:
    """The candidate's config, applied to the whole output, yields the value it was seen with."""
    patterns = {cand.name: cand.pattern} if cand.pattern is not None else None
    got = parse_metrics(text, cand.format, patterns).get(cand.name)
    return got is not None and (got == cand.value or (got != got and cand.value != cand.value))


_MINIMIZE = re.compile(r"loss|bpb|bpc|err|perplex|ppl|mse|mae|rmse|nll|wer|cer|time|latency|"
                       r"seconds|regret|cost|distance|diverg", re.IGNORECASE)
_MAXIMIZE = re.compile(r"acc|f1|auc|score|reward|return|precision|recall|bleu|rouge|map\b|iou|"
                       r"likelihood|elbo|"
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


# Words that turn a quantity's direction around: sklearn's scorers negate a loss so that bigger
# is better (neg_mean_squared_error); a drop in accuracy is bad, a reduction in error good.
_NEGATED = frozenset({"neg", "negative", "negated", "minus"})
_FALLS = frozenset({"drop", "drops", "decrease", "decreases", "decline", "reduction",
                    "reductions", "degradation"})
# An improvement, a gain or a saving is good whatever it measures (loss_improvement, time_saved).
_GAINS = frozenset({"improvement", "improvements", "gain", "gains", "saved", "saving",
                    "savings"})
# A signed change of something: which sign is better depends on how it was subtracted.
_SIGNED = frozenset({"delta", "change", "diff", "difference"})
# A unit at the end of the name decides over the words before it (a benchmark called
# BenchmarkTime reports MB/s too): the time or memory per operation, the amount per second.
_PER_OPERATION = re.compile(r"(?:^|_)per_?op$", re.IGNORECASE)
_PER_SECOND = re.compile(r"(?:^|_)per_?s(?:ec(?:ond)?)?$", re.IGNORECASE)


def _words_of(name: str) -> list[str]:
    """The words of a metric name, lowercased: `accuracyDrop`, `accuracy-drop` → accuracy, drop."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name)
    return [w for w in re.split(r"[^0-9A-Za-z]+", spaced.lower()) if w]


def guess_direction(name: str) -> str | None:
    """minimize for losses, errors and times, maximize for accuracies, rewards and rates, turned
    around by a word that negates them (neg_loss, accuracy_drop, error_reduction); maximize for
    a gain of anything (time_saved); None when the name does not say (a delta's sign, say)."""
    words = _words_of(name)
    turns = [w for w in words if w in _NEGATED | _FALLS]
    gains = [w for w in words if w in _GAINS]
    if any(w in _SIGNED for w in words) or len(turns) + len(gains) > 1:
        return None
    if gains:
        return "maximize"
    if not turns:
        return _plain_direction(name)
    base = _plain_direction("_".join(w for w in words if w not in turns))
    return None if base is None else ("maximize" if base == "minimize" else "minimize")


def _plain_direction(name: str) -> str | None:
    """The direction a quantity's name says, when nothing in it turns it around."""
    if _PER_OPERATION.search(name):
        return "minimize"
    if _PER_SECOND.search(name):
        return "maximize"
    if _MINIMIZE.search(name):
        return "minimize"
    if _MAXIMIZE.search(name):
        return "maximize"
    return None


def printed_units(text: str, pattern: str) -> list[str | None]:
    """The unit right after each value `pattern` reads from `text` (None where none was
    printed), in order: values printed in different units are not comparable numbers."""
    text = without_terminal_codes(text)
    regex = re.compile(pattern, re.MULTILINE)
    group: int | str = "value" if "value" in regex.groupindex else 1
    units: list[str | None] = []
    for m in regex.finditer(text):
        if parse_metric_value(m.group(group) or "") is not None:
            after = _UNIT_AFTER_SPACES.match(text, m.end(group))
            units.append(after.group(1) if after else None)
    return units


_UNIT_AFTER_SPACES = re.compile(rf"[ \t]*({UNIT})(?![\w/%])")


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
