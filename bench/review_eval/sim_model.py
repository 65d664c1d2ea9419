"""A simulated reviewing model for the evaluation, served by the fake model server.

It is not told the answers. Like a real model it reads the prompt it is sent (the diff, the
numbered files, the history) and reports what its heuristics notice on the added lines: generic
patterns for each angle, and on half of the lines it skims (it misses the detail that makes
correct code correct: a pairwise loop, a specific exception, a parameterised query). And like a real model it makes
things up: in a share of its passes it adds a finding whose quote is not in the file, or cites a
real line far from where it is, or makes a plausible claim about correct code; and it miscounts
line numbers by one or two. As verifier it re-reads the quoted code and confirms a finding when
its own heuristic for that category fires there (read carefully this time), and gets a share of
its verdicts wrong.
Every random choice is a hash of the seed and the content, so runs are reproducible.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from tests.llm.fake_server import Recorded, Reply

Detector = Callable[[list[str], int, bool], tuple[str, str] | None]


def _chance(seed: int, *parts: object) -> float:
    digest = hashlib.sha256(("\0".join(map(str, (seed, *parts)))).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _function(lines: list[str], i: int) -> list[str]:
    """The lines of the function around line index i (for context-aware heuristics)."""
    start = i
    while start > 0 and not lines[start].lstrip().startswith("def "):
        start -= 1
    end = i + 1
    while end < len(lines) and not lines[end].lstrip().startswith("def "):
        end += 1
    return lines[start:end]


def off_by_one(lines: list[str], i: int, careful: bool) -> tuple[str, str] | None:
    line = lines[i]
    m = re.search(r"range\(len\((\w+)\)\s*-\s*(\w+)\)", line)
    if m:
        body = " ".join(lines[i + 1:i + 4])
        if careful and m.group(2) == "1" and re.search(r"\[\w+ \+ 1\]", body + line):
            return None  # pairs of neighbours: -1 is right
        return ("Loop stops one short", f"range(len({m.group(1)}) - {m.group(2)}) leaves out the "
                "last position; the bound should be len(...) - n + 1.")
    if re.search(r"\b\w+ > len\(", line) and any("[" in x for x in lines[i + 1:i + 4]):
        return ("Bounds check lets index == len through",
                "The check uses > len(...), so index == len passes and the lookup after it "
                "raises IndexError; use >=.")
    return None


def swallowed(lines: list[str], i: int, careful: bool) -> tuple[str, str] | None:
    broad = r"(\s+(Exception|BaseException))?" if careful else r"(\s+[\w.]+)?"
    if re.match(r"\s*except" + broad + r"\s*(as \w+)?:\s*$", lines[i]):
        nxt = lines[i + 1].strip() if i + 1 < len(lines) else ""
        if re.match(r"(pass|continue|return\b.*)$", nxt):
            return ("Every exception is swallowed",
                    "Catching everything here hides real failures (including bugs and "
                    "KeyboardInterrupt); catch the specific error and report the rest.")
    return None


def leak(lines: list[str], i: int, careful: bool) -> tuple[str, str] | None:
    m = re.match(r"\s*(\w+) = (open|socket\.create_connection|socket\.socket|sqlite3\.connect)\(",
                 lines[i])
    if m and not any(f"{m.group(1)}.close()" in x for x in _function(lines, i)):
        return (f"{m.group(1)} is never closed",
                f"{m.group(2)}() is not used as a context manager and nothing closes it, so the "
                "handle leaks on every call (and on every exception).")
    return None


def race(lines: list[str], i: int, careful: bool) -> tuple[str, str] | None:
    func = _function(lines, i)
    text = "\n".join(lines)
    if not careful and re.match(r"\s*_?[A-Z_]+\[.*\] \+= ", lines[i]):
        return ("Shared counter updated without synchronisation",
                "A module-level dict is incremented from code that may run in several threads.")
    m = re.search(r"os\.path\.exists\((\w+)\)", lines[i])
    if m and any(f"open({m.group(1)}, \"w\"" in x for x in lines[i:i + 4]):
        return ("Check-then-create race on the lock file",
                "Two processes can both see the file missing and both create it; create it "
                "atomically (os.open with O_CREAT | O_EXCL).")
    m = re.search(r"with open\((\w+)[,)]", lines[i])
    if m and ("Thread" in text or "Pool" in text) and any(
            f"open({m.group(1)}, \"w\"" in x for x in func) and '"w"' not in lines[i]:
        return ("Read-modify-write of a shared file without a lock",
                "Workers run this concurrently: two can read the same value and write the same "
                "next one. Serialize it with a lock (or an atomic counter).")
    return None


def injection(lines: list[str], i: int, careful: bool) -> tuple[str, str] | None:
    window = " ".join(lines[i:i + 2])
    if not careful and re.search(r"subprocess\.\w+\(\[.*\b[a-z_]+\b,", lines[i]) and \
            re.search(r"\[[^]]*\b(?!\")[a-z_]+\b[,\]]", lines[i]):
        return ("Command built from a caller's value",
                "A value from the caller goes into the command that is run.")
    if ("shell=True" in window and re.search(r"f\"|f'|%|\+", lines[i])) or \
            re.search(r"os\.system\(.*(%|\+|f\")", lines[i]):
        return ("Shell command built from input",
                "The command line is built from values a caller controls and run by a shell: "
                "pass an argument list without shell=True.")
    return None


def sql(lines: list[str], i: int, careful: bool) -> tuple[str, str] | None:
    line = lines[i]
    if not careful and re.search(r"execute\(\s*\"(SELECT|DELETE|UPDATE|INSERT)", line) and \
            re.search(r",\s*\(\w+,?\)", line):
        return ("Query built from a caller's value",
                "A value from the caller reaches the SQL statement.")
    if re.search(r"execute\(\s*(f\"|\"[^\"]*\"\s*(%|\+)|'[^']*'\s*(%|\+))", line) or \
            re.search(r"=\s*\"(SELECT|DELETE|UPDATE|INSERT)\b[^\"]*\"\s*\+", line):
        return ("SQL built by string formatting",
                "The value is pasted into the SQL text, so a quote in it changes the statement; "
                "use a parameter (?) instead.")
    return None


def tls(lines: list[str], i: int, careful: bool) -> tuple[str, str] | None:
    if "verify=False" in lines[i]:
        return ("TLS certificate checks are off",
                "verify=False accepts any certificate, so a man in the middle can read and "
                "change the traffic.")
    return None


DETECTORS: dict[str, tuple[str, list[tuple[str, Detector]]]] = {
    "logic": ("logic", [("logic", off_by_one), ("error-handling", swallowed),
                        ("resource", leak), ("concurrency", race)]),
    "security": ("security", [("injection", injection), ("sql", sql), ("security", tls)]),
}
BY_CATEGORY: dict[str, Detector] = {c: d for _, ds in DETECTORS.values() for c, d in ds}


@dataclass
class Prompt:
    files: dict[str, dict[int, str]] = field(default_factory=dict)
    added: dict[str, set[int]] = field(default_factory=dict)
    removed_by_fix: set[str] = field(default_factory=set)
    angles: list[str] = field(default_factory=list)


def parse_review_prompt(text: str) -> Prompt:
    p = Prompt()
    p.angles = [a for a, tag in (("logic", "- logic:"), ("security", "- security:"),
                                 ("history", "- history/regression:"),
                                 ("rules", "- project rules:")) if tag in text]
    current = None
    for line in text.splitlines():
        m = re.match(r"### (\S+) \((\d+) lines", line)
        if m:
            current = m.group(1)
            p.files[current] = {}
            continue
        m = re.match(r"\s*(\d+) \| (.*)$", line)
        if current and m:
            p.files[current][int(m.group(1))] = m.group(2)
        m = re.match(r"\s+removed: (.*)$", line)
        if m:
            p.removed_by_fix.add(" ".join(m.group(1).split()))
    path, new_line = None, 0
    for line in text.split("```diff", 1)[-1].split("```", 1)[0].splitlines():
        if line.startswith("+++ "):
            path = line[6:] if line.startswith("+++ b/") else line[4:]
            p.added.setdefault(path, set())
        elif line.startswith("@@"):
            new_line = int(re.search(r"\+(\d+)", line).group(1))  # type: ignore[union-attr]
        elif path and line.startswith("+"):
            p.added[path].add(new_line)
            new_line += 1
        elif path and not line.startswith("-"):
            new_line += 1
    return p


class SimulatedModel:
    def __init__(self, seed: int = 0, hallucination_rate: float = 0.5,
                 slip_rate: float = 0.3, verifier_error_rate: float = 0.1,
                 sloppiness: float = 0.5) -> None:
        self.seed = seed
        self.sloppiness = sloppiness
        self.hallucination_rate = hallucination_rate
        self.slip_rate = slip_rate
        self.verifier_error_rate = verifier_error_rate

    def __call__(self, rec: Recorded) -> Reply:
        text = rec.prompt_text()
        body = self.verify(text) if "You check findings" in text else self.review(text)
        reply = json.dumps(body)
        return Reply(text=reply, input_tokens=int(len(text) / 3.5),
                     output_tokens=int(len(reply) / 3.5) + 50)

    # --- reviewing ----------------------------------------------------------------------

    def review(self, text: str) -> dict[str, list[dict[str, object]]]:
        p = parse_review_prompt(text)
        findings: list[dict[str, object]] = []
        for path, numbered in p.files.items():
            lines = [numbered.get(n, "") for n in range(1, max(numbered, default=0) + 1)]
            for n in sorted(p.added.get(path, ())):
                if n > len(lines):
                    continue
                for angle in p.angles:
                    findings += self._notice(path, lines, n, angle, p)
        findings += self._hallucinate(p, text)
        return {"findings": findings}

    def _notice(self, path: str, lines: list[str], n: int, angle: str,
                p: Prompt) -> list[dict[str, object]]:
        out = []
        checks = DETECTORS.get(angle, ("", []))[1]
        # A reviewer skims: on some lines it misses the detail that makes correct code correct.
        careful = _chance(self.seed, "careful", path, n, angle) >= self.sloppiness
        for category, detect in checks:
            hit = detect(lines, n - 1, careful)
            if hit:
                out.append(self._finding(path, lines, n, angle, category, *hit))
        if angle == "history" and " ".join(lines[n - 1].split()) in p.removed_by_fix:
            out.append(self._finding(path, lines, n, angle, "regression",
                                     "Brings back a line a fix removed",
                                     "The history shows a fix commit removing this exact line."))
        return out

    def _finding(self, path: str, lines: list[str], n: int, angle: str, category: str,
                 title: str, body: str) -> dict[str, object]:
        cited = n
        if _chance(self.seed, "slip", path, n, category) < self.slip_rate:
            cited = max(1, n + (1 if _chance(self.seed, "dir", path, n) < 0.5 else -2))
        return {"path": path, "line": cited, "end_line": cited, "angle": angle,
                "category": category, "severity": "high",
                "confidence": round(0.55 + 0.4 * _chance(self.seed, "conf", path, n), 2),
                "title": title, "body": body, "quote": lines[n - 1].strip()}

    def _hallucinate(self, p: Prompt, text: str) -> list[dict[str, object]]:
        key = hashlib.sha256(text.encode()).hexdigest()
        if _chance(self.seed, "hallucinate", key) >= self.hallucination_rate or not p.added:
            return []
        path = sorted(p.added)[0]
        added = sorted(n for n in p.added[path] if p.files.get(path, {}).get(n, "").strip())
        if not added:
            return []
        n = added[int(_chance(self.seed, "which", key) * len(added))]
        line = p.files[path][n].strip()
        kind = _chance(self.seed, "kind", key)
        angle = p.angles[0] if p.angles else "logic"
        base = {"path": path, "angle": angle, "severity": "high", "confidence": 0.8}
        if kind < 0.34:  # a quote that is not in the file (a renamed identifier)
            fake = re.sub(r"\b([a-z_]\w*)\b", lambda m: m.group(1) + "_list", line, count=1)
            return [{**base, "line": n, "category": "logic", "quote": fake,
                     "title": "Result list is mutated while iterating",
                     "body": "The loop changes the list it iterates over."}]
        if kind < 0.67:  # a real line, cited far from where it is
            return [{**base, "line": n + 30, "category": "types", "quote": line,
                     "title": "Value may be None here",
                     "body": "The function can return None on an earlier path."}]
        return [{**base, "line": n, "category": "logic", "quote": line,  # a wrong claim
                 "title": "Fails on empty input",
                 "body": "This line raises when the collection is empty."}]

    # --- verifying ----------------------------------------------------------------------

    def verify(self, text: str) -> dict[str, list[dict[str, str]]]:
        numbered: dict[int, str] = {}
        file_part = text.split("## The file after the change", 1)[-1]
        for line in file_part.splitlines():
            m = re.match(r"\s*(\d+) \| (.*)$", line)
            if m:
                numbered[int(m.group(1))] = m.group(2)
        lines = [numbered.get(n, "") for n in range(1, max(numbered, default=0) + 1)]
        removed = parse_review_prompt(text).removed_by_fix
        verdicts = []
        for m in re.finditer(r"### F(\d+): (\S+):(\d+)-(\d+) \[([\w-]+), (\w+)\]", text):
            fid, start, end, category = m.group(1), int(m.group(3)), int(m.group(4)), m.group(5)
            detect = BY_CATEGORY.get(category)
            if category == "regression":  # checked against the history the prompt shows
                real = any(" ".join(lines[i - 1].split()) in removed
                           for i in range(start, min(end, len(lines)) + 1))
            else:
                real = bool(detect) and any(
                    detect(lines, i - 1, True) for i in range(start, min(end, len(lines)) + 1))
            if _chance(self.seed, "verifier", text[:200], fid) < self.verifier_error_rate:
                real = not real
            verdicts.append({"id": f"F{fid}", "verdict": "confirmed" if real else "rejected",
                             "reason": "checked the quoted lines"})
        return {"verdicts": verdicts}
