"""What a review's model calls may carry: never the content of a protected file."""

from __future__ import annotations

import json
from pathlib import Path

from autoresearch.config import ProposerConfig, ReviewConfig
from autoresearch.review.change import from_diff_file
from autoresearch.review.context import ReviewSettings
from autoresearch.review.pipeline import run_review
from autoresearch.review.protected import configured_protected
from autoresearch.review.settings import cli_settings
from tests.llm.fake_server import FakeModelServer, Recorded, Reply
from tests.review.conftest import Repo, llm_options

EVAL_SECRET = "HELDOUT_ANSWER_7f3a9"
SCORE_SECRET = "SCORING_WEIGHTS_c41d2"
DOTENV_SECRET = "API_TOKEN_e90b7"


def no_findings(rec: Recorded) -> Reply:
    return Reply(text='{"findings": []}')


def cli_like_settings(root: Path, server: FakeModelServer) -> ReviewSettings:
    """The settings `autoresearch review` builds: the config's protected list included."""
    return cli_settings(ReviewConfig(llm=llm_options(server)), ProposerConfig(), reviewers=None,
                        offline=False, require_llm=True, max_usd=None, inline_cap=None,
                        env={}, protected=configured_protected(root))


def sent(server: FakeModelServer) -> str:
    return "\n".join(json.dumps(r.body) for r in server.requests)


def scoring(secret: str) -> str:
    return "".join(f"WEIGHT_{i} = {i}  # {secret}\n" for i in range(30))


def test_protected_files_tweaked_or_renamed_never_reach_the_model(
        repo: Repo, server: FakeModelServer) -> None:
    repo.commit("init", **{
        "autoresearch.toml": 'protected = ["evaluate.py", "score.py"]\n',
        "evaluate.py": f"ANSWERS = '{EVAL_SECRET}'\n", "score.py": scoring(SCORE_SECRET),
        "app.py": "x = 1\n"})
    repo.branch("feature")
    repo.git("mv", "score.py", "weights.py")
    repo.commit("tweak", **{
        "evaluate.py": f"ANSWERS = '{EVAL_SECRET}'\nMORE = '{EVAL_SECRET}2'\n",
        "weights.py": scoring(SCORE_SECRET) + "EXTRA = 1\n",
        "app.py": "x = 1\ny = x + 1\n"})
    change = repo.change("main")
    assert {f.path: f.status for f in change.files}["weights.py"] == "renamed"
    server._handler = no_findings
    review = run_review(change, cli_like_settings(repo.path, server))
    assert server.requests, "the review never called the model"
    assert "y = x + 1" in sent(server)  # the unprotected file was reviewed
    assert EVAL_SECRET not in sent(server)
    assert SCORE_SECRET not in sent(server)
    note = next(n for n in review.notes if "protected" in n)
    assert "evaluate.py (matches evaluate.py)" in note
    assert "weights.py (renamed from score.py, which matches score.py)" in note


def test_an_untracked_dotenv_in_a_diff_never_reaches_the_model(
        repo: Repo, server: FakeModelServer, tmp_path: Path) -> None:
    """No config at all: a .env is withheld by default, even ignored and named by --diff."""
    repo.commit("init", **{".gitignore": ".env\n", "app.py": "x = 1\n"})
    (repo.path / ".env").write_text(f"TOKEN={DOTENV_SECRET}\n")
    (repo.path / "app.py").write_text("x = 1\ny = x + 1\n")
    patch = tmp_path / "change.diff"
    patch.write_text(repo.git("diff") + "\n" + (
        "diff --git a/.env b/.env\n--- a/.env\n+++ b/.env\n@@ -1 +1 @@\n"
        f"-TOKEN=old\n+TOKEN={DOTENV_SECRET}\n"))
    change = from_diff_file(repo.path, str(patch))
    assert {f.path for f in change.files} == {".env", "app.py"}
    server._handler = no_findings
    review = run_review(change, cli_like_settings(repo.path, server))
    assert "y = x + 1" in sent(server)
    assert DOTENV_SECRET not in sent(server)
    assert any(".env (matches **/.env)" in n for n in review.notes)


def test_a_change_to_protected_files_alone_asks_no_model(repo: Repo,
                                                         server: FakeModelServer) -> None:
    repo.commit("init", **{"autoresearch.toml": 'protected = ["evaluate.py"]\n',
                           "evaluate.py": "x = 1\n"})
    repo.branch("feature")
    repo.commit("tweak", **{"evaluate.py": f"x = '{EVAL_SECRET}'\n"})
    server._handler = no_findings
    review = run_review(repo.change("main"), cli_like_settings(repo.path, server))
    assert server.requests == []
    runs = {r.name: r for r in review.reviewers}
    assert "only protected code files changed" in runs["logic"].note


def test_a_diff_naming_a_protected_file_in_another_form_withholds_it(
        repo: Repo, server: FakeModelServer, tmp_path: Path) -> None:
    # `./evaluate.py` reads evaluate.py but matched no protected glob: its whole head text went
    # to the model. It is that file now, by git's name, and withheld like it
    # (test_review_cli_inputs.py has the CLI and the linked-directory spellings).
    from autoresearch.review.diff import ChangedFile
    from autoresearch.review.protected import withheld_files

    repo.commit("init", **{"autoresearch.toml": 'protected = ["evaluate.py"]\n',
                           "evaluate.py": f"ANSWERS = '{EVAL_SECRET}'\n"})
    (repo.path / "evaluate.py").write_text(f"ANSWERS = '{EVAL_SECRET}'\nMORE = 1\n")
    server._handler = no_findings
    diff = repo.git("diff") + "\n"
    for old, new in (("./evaluate.py",) * 2, ("lib/../evaluate.py",) * 2, (".//evaluate.py",) * 2,
                     ("evaluate.py", "./evaluate.py")):
        patch = tmp_path / "change.diff"
        patch.write_text(diff.replace("a/evaluate.py", f"a/{old}")
                         .replace("b/evaluate.py", f"b/{new}"))
        change = from_diff_file(repo.path, str(patch))
        # One file, modified: `a/evaluate.py` and `b/./evaluate.py` are no rename.
        assert [(f.path, f.old_path, f.status) for f in change.files] == [
            ("evaluate.py", "evaluate.py", "modified")], (old, new)
        review = run_review(change, cli_like_settings(repo.path, server))
        assert any("evaluate.py (matches evaluate.py)" in n for n in review.notes)
    assert server.requests == []  # only a protected file changed: no model was asked
    # And a caller that passes such a name is judged on the file it names.
    named = ChangedFile(path="./evaluate.py", old_path=None, status="modified", binary=False,
                        hunks=())
    assert withheld_files([named], ["evaluate.py"]) == {"./evaluate.py": "matches evaluate.py"}
