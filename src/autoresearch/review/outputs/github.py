"""The JSON body of a GitHub pull-request review, with inline comments on the diff's lines.

POST it to /repos/{owner}/{repo}/pulls/{number}/reviews (docs/review.md shows how). Its `event`
is always COMMENT: this review informs the person who decides and never approves or requests
changes; no argument or finding changes that, and a test holds it so.

An inline comment must sit on a line of the diff: its `line` (and `start_line` for a range) are
head lines inside one hunk of the file, on the RIGHT side. Findings are anchored on added lines,
which are always in the diff; a range is cut down to the part inside the hunk.
"""

from __future__ import annotations

from typing import Any, Final, Literal

from autoresearch.review.change import Change
from autoresearch.review.model import Finding, Review
from autoresearch.review.outputs.markdown import MARK, render_markdown
from autoresearch.review.outputs.mdtext import inline, quoted

EVENT: Final[Literal["COMMENT"]] = "COMMENT"


def comment_body(f: Finding) -> str:
    # A model's words, escaped (mdtext): a comment is Markdown GitHub renders.
    parts = [f"{MARK[f.colour]} **{f.colour}** · {f.category}: **{inline(f.title)}**"]
    if f.body and f.body != f.title:
        parts.append(quoted(f.body))
    parts.append(f"<sub>{inline(', '.join(f.sources))} · confidence {f.confidence:.2f} · "
                 f"fingerprint `{f.fingerprint}`</sub>")
    return "\n\n".join(parts)


def _position(f: Finding, change: Change) -> tuple[int, int] | None:
    """(start_line, line) inside one hunk's head side, or None when no line of it is."""
    changed = change.file(f.path)
    if changed is None:
        return None
    for line in range(f.end_line, f.start_line - 1, -1):
        hunk = changed.hunk_at(line)
        if hunk is not None:
            start = max(f.start_line, hunk.new_start)
            return start, line
    return None


def review_body(review: Review, change: Change) -> dict[str, Any]:
    comments: list[dict[str, Any]] = []
    for f in review.findings:
        if not f.inline:
            continue
        position = _position(f, change)
        if position is None:
            continue
        start, line = position
        comment: dict[str, Any] = {"path": f.path, "line": line, "side": "RIGHT",
                                   "body": comment_body(f)}
        if start < line:
            comment["start_line"] = start
            comment["start_side"] = "RIGHT"
        comments.append(comment)
    body: dict[str, Any] = {"event": EVENT, "body": render_markdown(review, github_body=True),
                            "comments": comments}
    if review.subject.head:
        body["commit_id"] = review.subject.head
    return body

