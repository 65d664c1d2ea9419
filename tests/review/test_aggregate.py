"""Quote anchoring, deduplication, ranking, the inline cap and stable fingerprints."""

from __future__ import annotations

from dataclasses import replace

from autoresearch.review.aggregate import aggregate, colour_of, combined_confidence
from autoresearch.review.model import Dropped, RawFinding
from autoresearch.review.verify import anchor, find_quote
from tests.review.conftest import Repo, review_offline

FILE = """\
def total(items):
    result = 0
    for i in range(len(items) + 1):
        result += items[i]
    return result
"""


def raw(reviewer: str, line: int, *, end: int | None = None, category: str = "logic",
        severity: str = "high", confidence: float = 0.5, title: str = "off by one",
        quote: str = "for i in range(len(items) + 1):", **kw: object) -> RawFinding:
    return RawFinding(reviewer=reviewer, angle="logic", path="calc.py", start_line=line,
                      end_line=end or line, title=title, body=f"{reviewer} says {title}",
                      quote=quote, category=category, severity=severity,  # type: ignore[arg-type]
                      confidence=confidence, **kw)  # type: ignore[arg-type]


def test_find_quote_matches_whole_lines_fragments_and_numbered_copies() -> None:
    assert find_quote(FILE, "for i in range(len(items) + 1):") == [(3, 3)]
    assert find_quote(FILE, "range(len(items) + 1)") == [(3, 3)]
    assert find_quote(FILE, "  for i in range(len(items) + 1):\n      result += items[i]") == [
        (3, 4)]
    assert find_quote(FILE, "3 | for i in range(len(items) + 1):\n4 |     result += items[i]"
                      ) == [(3, 4)]
    assert find_quote(FILE, "for i in range(len(items) - 1):") == []
    assert find_quote(FILE, "") == []


def test_anchor_moves_a_near_miss_and_drops_hallucinated_quotes_and_far_lines(repo: Repo) -> None:
    repo.commit("init", **{"calc.py": "x = 1\n"})
    repo.branch("feature")
    repo.commit("total", **{"calc.py": FILE})
    change = repo.change()
    near = anchor(raw("llm:logic", 5), change)
    assert not isinstance(near, Dropped) and (near.start_line, near.end_line) == (3, 3)
    invented = anchor(raw("llm:logic", 3, quote="items.sort(reverse=True)"), change)
    assert isinstance(invented, Dropped) and "not in calc.py" in invented.reason
    far = anchor(raw("llm:logic", 40), change)
    assert isinstance(far, Dropped) and "not at the cited line 40" in far.reason
    missing = anchor(replace(raw("llm:logic", 3), path="nope.py"), change)
    assert isinstance(missing, Dropped)


def test_agreement_between_reviewers_raises_confidence_and_one_reviewer_stays_separate(
        repo: Repo) -> None:
    repo.commit("init", **{"calc.py": "x = 1\n"})
    repo.branch("feature")
    repo.commit("total", **{"calc.py": FILE})
    change = repo.change()
    alone = aggregate([raw("llm:logic", 3)], change, inline_cap=10)
    assert [f.colour for f in alone] == ["yellow"]  # high severity, 0.5: below the red bar
    both = aggregate([raw("llm:logic", 3), raw("llm:security", 3, confidence=0.4,
                                               title="index past the end")], change,
                     inline_cap=10)
    assert len(both) == 1 and both[0].colour == "red"
    assert both[0].confidence == combined_confidence(
        [raw("a", 3), raw("b", 3, confidence=0.4)]) == 0.7
    assert both[0].sources == ("llm:logic", "llm:security")
    twice = aggregate([raw("ruff", 3, rule="B1"), raw("ruff", 4, rule="B2",
                                                       quote="result += items[i]")],
                      change, inline_cap=10)
    assert len(twice) == 2


def test_colour_rule() -> None:
    assert colour_of("high", 0.6, True, False) == "red"
    assert colour_of("high", 0.59, True, False) == "yellow"
    assert colour_of("medium", 0.99, True, False) == "yellow"
    assert colour_of("high", 0.99, False, False) == "purple"  # not on a changed line
    assert colour_of("high", 0.99, True, True) == "purple"  # a note about the past


def test_inline_cap_and_known_findings(repo: Repo) -> None:
    repo.commit("init", **{"calc.py": "x = 1\n"})
    repo.branch("feature")
    repo.commit("total", **{"calc.py": FILE})
    change = repo.change()
    lines = ["def total(items):", "result = 0", "for i in range(len(items) + 1):",
             "result += items[i]", "return result"]
    raws = [raw(f"r{n}", n, quote=lines[n - 1], category=c, confidence=0.9)
            for n in range(1, 6) for c in ("logic", "types")]
    ranked = aggregate(raws, change, inline_cap=3)
    assert len(ranked) == 10 and sum(f.inline for f in ranked) == 3
    assert all(f.inline for f in ranked[:3])
    known = {ranked[0].fingerprint}
    again = aggregate(raws, change, inline_cap=3, known=known)
    first = next(f for f in again if f.fingerprint in known)
    assert first.known and not first.inline
    assert sum(f.inline for f in again) == 3  # the next one takes its place


def test_fingerprints_survive_lines_moving_and_re_review_marks_them_known(repo: Repo) -> None:
    code = ("import subprocess\n\n\ndef run(cmd):\n"
            "    return subprocess.run(f'echo {cmd}', shell=True)\n")
    repo.commit("init", **{"app.py": "import subprocess\n"})
    repo.branch("feature")
    repo.commit("run", **{"app.py": code})
    first = review_offline(repo.change())
    repo.commit("more", **{"app.py": "import subprocess\nimport sys\n\nVERBOSE = '-v' in "
                           "sys.argv\n" + code[len("import subprocess\n"):]})
    second = review_offline(repo.change(), )
    fp = {f.fingerprint for f in first.findings if "bandit B602" in f.sources}
    moved = [f for f in second.findings if "bandit B602" in f.sources]
    assert moved and moved[0].start_line != next(
        f for f in first.findings if "bandit B602" in f.sources).start_line
    assert {f.fingerprint for f in moved} == fp
    from autoresearch.review.pipeline import run_review
    from tests.review.conftest import offline

    third = run_review(repo.change(), offline(), known=fp)
    b602 = next(f for f in third.findings if "bandit B602" in f.sources)
    assert b602.known and not b602.inline and b602.colour == "red"
