"""The llm proposer end to end against the fake server: propose, reflect errors, repair."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from autoresearch.proposers.base import Meter, Proposal, Usage
from autoresearch.proposers.faults import FailedProposal, ProposerOutage
from autoresearch.proposers.llm import LLMProposer
from tests.llm.conftest import MakeCtx, llm_options, make_config
from tests.llm.fake_server import FakeModelServer, Reply

GOOD = (
    "HYPOTHESIS: move X to the optimum at 7\n"
    "RATIONALE: the objective is (X - 7)^2, so X = 7 minimises it.\n\n"
    "target.py\n<<<<<<< SEARCH\nX = 3.0\n=======\nX = 7.0\n>>>>>>> REPLACE\n"
)
NOT_APPLYING = (
    "HYPOTHESIS: tweak Y\n\ntarget.py\n<<<<<<< SEARCH\nY = 2\n=======\nY = 3\n>>>>>>> REPLACE\n"
)
MALFORMED = "HYPOTHESIS: oops\n\ntarget.py\n<<<<<<< SEARCH\nX = 3.0\nX = 7.0\n>>>>>>> REPLACE\n"


def proposer(server: FakeModelServer, kind: str = "anthropic", **extra: object) -> LLMProposer:
    options = llm_options(server, kind, **extra)
    return LLMProposer(make_config(**options), options, env={})


@pytest.mark.parametrize("kind", ["anthropic", "openai"])
def test_a_valid_reply_becomes_a_proposal(server: FakeModelServer, make_ctx: MakeCtx,
                                          kind: str) -> None:
    server.push(Reply(text=GOOD, input_tokens=5000, output_tokens=120))
    p = proposer(server, kind)
    proposal = p.propose(make_ctx())
    assert proposal is not None and not proposal.in_worktree
    assert proposal.hypothesis == "move X to the optimum at 7"
    assert "minimises" in proposal.rationale
    assert set(proposal.edits) == {"target.py"}
    assert "X = 7.0\n" in (proposal.edits["target.py"] or "")
    assert [u.purpose for u in proposal.usage] == ["propose"] and proposal.cost_usd > 0
    sent = server.requests[0].prompt_text()
    assert "Minimise the score" in sent and "SCALE = 1.0" in sent
    assert "do-not-leak-123" not in sent
    assert "<<<<<<< SEARCH" in sent  # the format is explained
    assert p.describe().startswith("llm (")


def test_malformed_reply_is_sent_back_then_fixed(server: FakeModelServer,
                                                 make_ctx: MakeCtx) -> None:
    server.push(Reply(text=MALFORMED), Reply(text=GOOD))
    proposal = proposer(server).propose(make_ctx())
    assert proposal is not None and len(proposal.usage) == 2
    retry = server.requests[1].body["messages"]
    assert [m["role"] for m in retry] == ["user", "assistant", "user"]
    feedback = server.requests[1].prompt_text()
    assert "no ======= line" in feedback and "Reply again with the complete corrected reply" in (
        feedback)


def test_edits_that_never_apply_fail_the_proposal_after_two_retries(
        server: FakeModelServer, make_ctx: MakeCtx) -> None:
    server.push(*[Reply(text=NOT_APPLYING)] * 3)
    with pytest.raises(FailedProposal) as info:
        proposer(server).propose(make_ctx())
    assert "after 3 attempts" in info.value.what
    assert "block 1 (target.py): the SEARCH text does not match" in info.value.what
    assert len(info.value.usage) == 3 and len(server.requests) == 3


def test_truncated_reply_is_told_to_be_smaller(server: FakeModelServer, make_ctx: MakeCtx) -> None:
    server.push(Reply(text=GOOD[:-40], stop="length"), Reply(text=GOOD))
    assert proposer(server).propose(make_ctx()) is not None
    assert "cut off at the output token limit" in server.requests[1].prompt_text()


CHEAT = (
    "HYPOTHESIS: cheat\n"
    "score.py\n<<<<<<< SEARCH\nimport target\n=======\nimport target  # x\n>>>>>>> REPLACE\n"
    "README.md\n<<<<<<< FILE\nhi\n>>>>>>> FILE\n"
    "../escape.py\n<<<<<<< FILE\nbad\n>>>>>>> FILE\n"
)


def test_forbidden_paths_are_refused_with_the_rule_and_never_proposed(
        server: FakeModelServer, make_ctx: MakeCtx, worktree: Path) -> None:
    server.push(*[Reply(text=CHEAT)] * 3)
    with pytest.raises(FailedProposal) as info:
        proposer(server).propose(make_ctx())
    what = info.value.what
    assert "after 3 attempts" in what and len(info.value.usage) == 3
    assert "block 1 (score.py): refused: protected (matches score.py)" in what
    assert "block 2 (README.md): refused: outside the scope" in what
    assert "block 3 (../escape.py): refused: escapes the repository" in what
    feedback = server.requests[1].body["messages"][-1]
    assert "refused: protected" in json.dumps(feedback)
    assert not (worktree.parent / "escape.py").exists() and not (worktree / "README.md").exists()


def test_protected_and_out_of_scope_contents_never_reach_the_model(
        server: FakeModelServer, make_ctx: MakeCtx, worktree: Path) -> None:
    """A near-miss SEARCH on a protected or out-of-scope file must not be answered with its
    closest lines, and a FILE block equal to it must not be told "unchanged" (an oracle)."""
    (worktree / "notes").mkdir()
    (worktree / "notes" / "private.md").write_text("the held-out split is rows 9000-9999\n")
    guesses = (
        "HYPOTHESIS: peek\n"
        "secrets.txt\n<<<<<<< SEARCH\nTOKEN=do-not-leak-12\n=======\nTOKEN=\n>>>>>>> REPLACE\n"
        "score.py\n<<<<<<< SEARCH\nimport targets\n=======\nimport target\n>>>>>>> REPLACE\n"
        "notes/private.md\n<<<<<<< SEARCH\nthe held-out split is\n=======\nx\n>>>>>>> REPLACE\n"
    )
    oracle = "HYPOTHESIS: probe\nsecrets.txt\n<<<<<<< FILE\nTOKEN=do-not-leak-123\n>>>>>>> FILE\n"
    server.push(Reply(text=guesses), Reply(text=oracle), Reply(text=GOOD))
    proposal = proposer(server).propose(make_ctx())
    assert proposal is not None and set(proposal.edits) == {"target.py"}
    second = server.requests[1].body["messages"][-1]["content"]
    third = server.requests[2].body["messages"][-1]["content"]
    for feedback in (json.dumps(second), json.dumps(third)):
        assert "do-not-leak-123" not in feedback
        assert "print('score:'" not in feedback  # score.py's next line
        assert "rows 9000-9999" not in feedback
        assert "closest lines" not in feedback
    assert "refused: protected (matches secrets.txt)" in json.dumps(second)
    assert "refused: protected (matches score.py)" in json.dumps(second)
    assert "refused: outside the scope" in json.dumps(second)
    assert "unchanged" not in json.dumps(third)
    assert "refused: protected (matches secrets.txt)" in json.dumps(third)
    # Nothing the client sent, from the first request on, holds a protected file's content.
    assert all("print('score:'" not in r.prompt_text() for r in server.requests)


def test_a_repair_overlay_is_readable_but_still_only_in_scope(
        server: FakeModelServer, make_ctx: MakeCtx) -> None:
    failed = Proposal(hypothesis="new module", edits={"lib/extra.py": "E = 1\n"})
    server.push(Reply(text=(
        "HYPOTHESIS: fix it\n"
        "lib/extra.py\n<<<<<<< SEARCH\nE = 1\n=======\nE = 2\n>>>>>>> REPLACE\n"
    )))
    fixed = proposer(server).repair(make_ctx(), failed, "NameError")
    assert fixed is not None and fixed.edits == {"lib/extra.py": "E = 2\n"}


def test_repair_sees_the_crash_and_returns_the_whole_candidate(
        server: FakeModelServer, make_ctx: MakeCtx) -> None:
    failed = Proposal(hypothesis="use numpy", rationale="faster",
                      edits={"target.py": "import numpy_missing\nX = 7.0\n",
                             "lib/extra.py": "E = 1\n"})
    server.push(Reply(text=(
        "HYPOTHESIS: drop the missing import\n"
        "target.py\n<<<<<<< SEARCH\nimport numpy_missing\n=======\nimport math\n>>>>>>> REPLACE\n"
    )))
    fixed = proposer(server).repair(make_ctx(), failed, "ModuleNotFoundError: numpy_missing")
    assert fixed is not None
    assert fixed.edits == {"target.py": "import math\nX = 7.0\n", "lib/extra.py": "E = 1\n"}
    assert fixed.hypothesis == "use numpy" and "repair: drop the missing import" in fixed.rationale
    assert [u.purpose for u in fixed.usage] == ["repair"]
    sent = server.requests[0].prompt_text()
    assert "ModuleNotFoundError: numpy_missing" in sent and "+import numpy_missing" in sent


def test_a_repair_that_gives_up_fails_with_the_tokens_it_spent(
        server: FakeModelServer, make_ctx: MakeCtx) -> None:
    server.push(Reply(text=MALFORMED), Reply(text="GIVE_UP: numpy is not installed"),
                Reply(text=GOOD))
    p = proposer(server)
    failed = Proposal(hypothesis="numpy", edits={"target.py": "import numpy_missing\n"})
    with pytest.raises(FailedProposal) as info:
        p.repair(make_ctx(), failed, "ModuleNotFoundError")
    assert "gave up the repair: numpy is not installed" in info.value.what
    # Both calls of the repair travel with the failure (the session bills them to the crashed
    # experiment); none is left over to be billed to the next one.
    assert [u.purpose for u in info.value.usage] == ["repair", "repair"]
    proposal = p.propose(make_ctx())
    assert proposal is not None and [u.purpose for u in proposal.usage] == ["propose"]
    assert len(server.requests) == 3


def test_outage_mid_conversation_keeps_the_spent_usage(server: FakeModelServer,
                                                       make_ctx: MakeCtx) -> None:
    server.push(Reply(text=MALFORMED), *[Reply(status=500)] * 3)
    with pytest.raises(ProposerOutage) as info:
        proposer(server).propose(make_ctx())
    assert len(info.value.usage) == 1


def test_the_repair_diff_is_against_the_incumbent_when_the_candidate_is_checked_out(
        server: FakeModelServer, make_ctx: MakeCtx, worktree: Path) -> None:
    # In a session the slot holds the crashed candidate, committed on top of the incumbent, when
    # the repair is asked for: the diff the model is shown must still be the candidate's change.
    from dataclasses import replace

    from tests.llm.conftest import TARGET
    from tests.support.git_repo import git

    incumbent_sha = git(worktree, "rev-parse", "HEAD")
    candidate = TARGET.replace("X = 3.0\n", "X = 6.5\nCRASH = True\n")
    (worktree / "target.py").write_text(candidate)
    git(worktree, "commit", "-qam", "the crashing candidate")
    ctx = make_ctx()
    assert ctx.incumbent is not None
    ctx = replace(ctx, incumbent=replace(ctx.incumbent, commit=incumbent_sha))
    failed = Proposal(hypothesis="X = 6.5", edits={"target.py": candidate})
    server.push(Reply(text=(
        "HYPOTHESIS: drop the flag\n"
        "target.py\n<<<<<<< SEARCH\nCRASH = True\n=======\n>>>>>>> REPLACE\n"
    )))
    fixed = proposer(server).repair(ctx, failed, "boom")
    assert fixed is not None and "CRASH" not in (fixed.edits["target.py"] or "")
    sent = server.requests[0].prompt_text()
    diff = sent[sent.index("```diff"):]
    assert "-X = 3.0" in diff and "+X = 6.5" in diff and "+CRASH = True" in diff


def test_a_whole_file_block_for_a_file_shown_only_in_excerpt_is_refused(
        server: FakeModelServer, make_ctx: MakeCtx, worktree: Path) -> None:
    # The model saw a few lines of a big file: a FILE block would replace all of it with them.
    body = "\n".join(f"def f{i}(x):\n    return x + {i}  # filler filler filler" for i in range(3000))
    (worktree / "target.py").write_text("X = 3.0\n" + body + "\n")
    whole = "HYPOTHESIS: X = 7\ntarget.py\n<<<<<<< FILE\nX = 7.0\ndef f0(x):\n    return x\n>>>>>>> FILE\n"
    server.push(Reply(text=whole), Reply(text=GOOD))
    proposal = proposer(server, context_tokens=4_000).propose(make_ctx())
    assert "EXCERPT" in server.requests[0].prompt_text()
    feedback = json.dumps(server.requests[1].body["messages"][-1])
    assert "block 1 (target.py)" in feedback and "excerpt" in feedback and "SEARCH" in feedback
    assert proposal is not None
    new = proposal.edits["target.py"] or ""
    assert new.startswith("X = 7.0\n") and "def f2999(x):" in new


def test_a_binary_file_in_scope_is_neither_shown_nor_edited(
        server: FakeModelServer, make_ctx: MakeCtx, worktree: Path) -> None:
    (worktree / "lib" / "weights.py").write_bytes(b"W = 1\n\xff\xfe\0\1\n")
    ctx = make_ctx()
    ctx = dataclasses.replace(ctx, scope_files=[*ctx.scope_files, "lib/weights.py"])
    append = "HYPOTHESIS: x\nlib/weights.py\n<<<<<<< SEARCH\n=======\nW = 2\n>>>>>>> REPLACE\n"
    server.push(*[Reply(text=append)] * 3)
    with pytest.raises(FailedProposal) as info:
        proposer(server).propose(ctx)
    assert "refused: a binary (or not UTF-8) file" in info.value.what
    assert "binary or too large to show): lib/weights.py" in server.requests[0].prompt_text()


# --- spending: every call billed as it returns, the limit checked before every call ----------

class Till:
    """A session's meter in miniature: what was billed, when, and a spending limit."""

    def __init__(self, server: FakeModelServer, max_usd: float | None = None) -> None:
        self.server = server
        self.max_usd = max_usd
        self.billed: list[tuple[int, float]] = []  # (requests the server had seen, cost)

    def record(self, usage: Usage) -> None:
        self.billed.append((len(self.server.requests), usage.cost_usd))

    def stop_reason(self) -> str | None:
        spent = sum(cost for _, cost in self.billed)
        if self.max_usd is not None and spent >= self.max_usd:
            return f"spent ${spent:.2f} of ${self.max_usd:.2f}"
        return None

    def meter(self) -> Meter:
        return Meter(record=self.record, stop_reason=self.stop_reason)


def test_each_call_is_billed_through_the_meter_as_it_returns(server: FakeModelServer,
                                                            make_ctx: MakeCtx) -> None:
    server.push(Reply(text=MALFORMED), Reply(text=MALFORMED), Reply(text=GOOD))
    till = Till(server)
    proposal = proposer(server).propose(dataclasses.replace(make_ctx(), meter=till.meter()))
    # Billed one by one, each before the next request went out; none left to bill twice.
    assert [n for n, _ in till.billed] == [1, 2, 3] and proposal.usage == []


def test_a_failed_conversation_billed_through_the_meter_carries_nothing(
        server: FakeModelServer, make_ctx: MakeCtx) -> None:
    server.push(Reply(text=NOT_APPLYING), Reply(text=NOT_APPLYING), Reply(status=500),
                Reply(status=500), Reply(status=500))
    till = Till(server)
    with pytest.raises(ProposerOutage) as info:
        proposer(server).propose(dataclasses.replace(make_ctx(), meter=till.meter()))
    assert [n for n, _ in till.billed] == [1, 2] and info.value.usage == []


def test_a_reply_with_no_choices_is_billed_through_the_meter(server: FakeModelServer,
                                                             make_ctx: MakeCtx) -> None:
    server.push(Reply(empty_choices=True, input_tokens=1000))
    till = Till(server)
    with pytest.raises(FailedProposal, match="no choices") as info:
        proposer(server, "openai").propose(dataclasses.replace(make_ctx(), meter=till.meter()))
    assert len(till.billed) == 1 and till.billed[0][1] > 0 and info.value.usage == []


def test_the_spending_limit_is_checked_before_every_edit_retry(server: FakeModelServer,
                                                               make_ctx: MakeCtx) -> None:
    server.push(*[Reply(text=MALFORMED, input_tokens=400_000)] * 3)  # $1.20 a call
    till = Till(server, max_usd=2.0)
    with pytest.raises(FailedProposal) as info:
        proposer(server).propose(dataclasses.replace(make_ctx(), meter=till.meter()))
    assert len(server.requests) == 2  # the second retry was never sent
    assert info.value.what == "spent $2.41 of $2.00; this proposal stopped before edit retry 2"
    assert info.value.where == "[limits] max_usd"
    assert info.value.hypothesis == "oops"


def test_a_huge_failed_reply_is_echoed_back_cut(server: FakeModelServer,
                                                make_ctx: MakeCtx) -> None:
    from autoresearch.proposers.llm.proposer import MAX_ECHOED_CHARS

    huge = "HYPOTHESIS: h\n" + "word " * 600_000 + "THE END"
    server.push(Reply(text=huge), Reply(text=GOOD))
    proposer(server).propose(make_ctx())
    echoed = server.requests[1].body["messages"][1]["content"][0]["text"]
    assert len(echoed) < MAX_ECHOED_CHARS + 200 and len(server.requests[1].prompt_text()) < 200_000
    assert echoed.startswith("HYPOTHESIS: h") and echoed.endswith("THE END")
    assert "characters of this reply cut" in echoed
