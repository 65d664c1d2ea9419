"""A priced model whose server reports no token usage (no `usage` object: llama.cpp forks,
proxies, old Ollama): its calls are recorded as 0 tokens and $0, and `status` and `show` say the
cost is unknown rather than showing $0.0000. The real CLI against the fake model server."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tests.conftest import git, run_cli
from tests.llm.fake_server import FakeModelServer, Reply

GOOD = ("HYPOTHESIS: move X to the optimum at 7\nRATIONALE: (X - 7)^2.\n\n"
        "target.py\n<<<<<<< SEARCH\nX = 3.0\n=======\nX = 7.0\n>>>>>>> REPLACE\n")


def one_line(text: str) -> str:
    return " ".join(text.split())


def session_with(repo: Path, reply: Reply) -> None:
    """A two-experiment session (baseline, one model call) with gpt-4.1 (priced) on the fake
    server's OpenAI API, every reply `reply`."""
    with FakeModelServer(handler=lambda r: reply) as server:
        config = repo / "autoresearch.toml"
        config.write_text(config.read_text() + textwrap.dedent(f"""
            [proposer]
            name = "llm"
            provider = "openai"
            base_url = "{server.openai_url}"
            model = "gpt-4.1"
            """))
        (repo / "program.md").write_text("Minimise score = (X - 7)^2 by changing X.\n")
        git(repo, "add", "-A")
        git(repo, "commit", "-qm", "use the llm proposer")
        result = run_cli(repo, "run", "--tag", "u", "--iterations", "2", timeout=180)
        assert result.returncode == 0, result.stdout + result.stderr
        assert len(server.requests) == 1


@pytest.mark.parametrize("command", [("status",), ("show", "2")])
def test_a_priced_model_without_reported_usage_has_an_unknown_cost(toy_repo: Path,
                                                                   command: tuple[str, ...]) -> None:
    session_with(toy_repo, Reply(text=GOOD, usage=False))
    result = run_cli(toy_repo, *command, timeout=60)
    shown = one_line(result.stdout)
    assert result.returncode == 0, result.stdout + result.stderr
    assert ("unknown: none of the 1 model call reported its token usage (the server sent none), "
            "so they are recorded as 0 tokens and $0 and [limits] max_usd cannot stop them") in shown
    assert "$0.0000" not in shown


def test_a_reported_usage_is_priced_as_before(toy_repo: Path) -> None:
    session_with(toy_repo, Reply(text=GOOD, input_tokens=1000, output_tokens=500))
    shown = one_line(run_cli(toy_repo, "status", timeout=60).stdout)
    # gpt-4.1 at $2 / $8 per million tokens.
    assert "cost $0.0060 over 1 model calls (1000 in / 500 out tokens" in shown
    assert "unknown" not in shown.split("cost", 1)[1].split(")", 1)[0]
    shown = one_line(run_cli(toy_repo, "show", "2", timeout=60).stdout)
    assert "spend $0.0060 over 1 model call (1,000 in, 500 out tokens)" in shown
