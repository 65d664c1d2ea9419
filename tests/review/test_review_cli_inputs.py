"""What `autoresearch review` makes of what the user hands it, through the real CLI: an empty
change, the paths of its output files, and paths spelled other than git spells them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import cli_env, run_cli
from tests.llm.fake_server import FakeModelServer, Recorded, Reply
from tests.review.conftest import Repo
from tests.review.test_llm_review import scripted

EVAL_SECRET = "HELDOUT_ANSWER_5be21"
SCORE_SECRET = "SCORING_WEIGHTS_90d4e"


# A model that finds one bug in app.py, under git's name for it, and confirms it when asked.
APP_FINDING = {"path": "app.py", "line": 2, "angle": "logic", "category": "logic",
               "severity": "high", "confidence": 0.8, "title": "y is never used",
               "body": "y is computed and dropped.", "quote": "y = x + 1"}


def no_findings(rec: Recorded) -> Reply:
    return Reply(text='{"findings": []}')


def llm_table(server: FakeModelServer) -> str:
    return (f'[review]\nllm = {{ provider = "anthropic", base_url = "{server.anthropic_url}", '
            'model = "claude-sonnet-4-6", max_retries = 0 }\n')


def sent(server: FakeModelServer) -> str:
    return "\n".join(json.dumps(r.body) for r in server.requests)


# --- 1. nothing to review ------------------------------------------------------------------


def test_an_empty_diff_is_nothing_to_review_like_an_empty_range(repo: Repo,
                                                               tmp_path: Path) -> None:
    """`--base X --head X` exited 0 and an empty `--diff` 1: both are an empty change now,
    said in one line, exit 0 even with --fail-on, and the CI files are still written."""
    repo.commit("init", **{"app.py": "x = 1\n"})
    empty = tmp_path / "empty.diff"
    empty.write_text("")
    blank = tmp_path / "blank.diff"
    blank.write_text("\n\n")
    out = tmp_path / "out"
    for args, subject in ((["--base", "main", "--head", "main"], "main against main"),
                          (["--diff", str(empty)], f"diff {empty}"),
                          (["--diff", str(blank)], f"diff {blank}"),
                          (["--diff", "-"], "diff <stdin>")):  # run_cli's stdin is empty
        result = run_cli(repo.path, "review", *args, "--no-record", "--fail-on", "red",
                         "--sarif", str(out / "review.sarif"))
        assert result.returncode == 0, (args, result.stderr)
        said = [line for line in result.stderr.splitlines() if "nothing to review" in line]
        assert len(said) == 1 and said[0].startswith(f"nothing to review: {subject}"), said
        assert said[0].endswith("changes no file"), said
        assert "(0 changed lines in 0 file(s)): no LLM pass" in result.stdout + result.stderr
        assert json.loads((out / "review.sarif").read_text())["runs"][0]["results"] == []
        (out / "review.sarif").unlink()


def test_text_that_is_not_a_diff_is_still_an_error(repo: Repo, tmp_path: Path) -> None:
    repo.commit("init", **{"app.py": "x = 1\n"})
    notes = tmp_path / "notes.txt"
    notes.write_text("these are my notes, not a diff\n")
    result = run_cli(repo.path, "review", "--diff", str(notes), "--no-record")
    assert result.returncode == 1
    assert "it is not a unified diff" in result.stderr and str(notes) in result.stderr
    assert "Traceback" not in result.stderr


# --- 2. output files ------------------------------------------------------------------------


@pytest.fixture
def feature(repo: Repo) -> Repo:
    repo.commit("init", **{"app.py": "x = 1\n"})
    repo.branch("feature")
    repo.commit("more", **{"app.py": "x = 1\ny = x + 1\n"})
    return repo


def test_every_output_creates_its_missing_directories_alike(feature: Repo,
                                                          tmp_path: Path) -> None:
    out = tmp_path / "reports"
    paths = {"--sarif": out / "sarif" / "review.sarif", "--markdown": out / "md" / "review.md",
             "--github": out / "gh" / "body.json", "--json": out / "json" / "all.json"}
    args = [item for option, path in paths.items() for item in (option, str(path))]
    result = run_cli(feature.path, "review", "--base", "main", "--no-record", *args)
    assert result.returncode == 0, result.stderr
    assert json.loads(paths["--sarif"].read_text())["version"] == "2.1.0"
    assert all(path.is_file() for path in paths.values())


@pytest.mark.parametrize("option", ["--sarif", "--markdown", "--github", "--json"])
def test_an_output_that_cannot_be_written_is_refused_before_any_model_call(
        feature: Repo, tmp_path: Path, option: str) -> None:
    """Checked once the review had paid for its model calls, such a path threw the review
    away; now it is refused first, naming the option and the directory, and nothing is spent,
    recorded or written."""
    blocker = tmp_path / "reports"
    blocker.write_text("a file where the directory should be\n")
    fine = tmp_path / "fine" / "all.json"
    other = "--json" if option != "--json" else "--sarif"
    with FakeModelServer(handler=no_findings) as server:
        (feature.path / "autoresearch.toml").write_text(llm_table(server))
        result = run_cli(feature.path, "review", "--base", "main", "--llm",
                         option, str(blocker / "new" / "review.out"), other, str(fine))
        assert server.requests == []
    assert result.returncode == 2, result.stderr
    message = " ".join(result.stderr.split())
    assert f"{option} {blocker / 'new' / 'review.out'}" in message
    assert f"{blocker} is not a directory, so {blocker / 'new'} cannot be created" in message
    assert "Traceback" not in result.stderr
    assert not (feature.path / ".autoresearch").exists()  # nothing recorded
    assert not fine.parent.exists()  # and no other output written


def test_outputs_that_would_overwrite_each_other_or_the_diff_are_refused(
        feature: Repo, tmp_path: Path) -> None:
    directory = tmp_path / "a directory"
    directory.mkdir()
    is_dir = run_cli(feature.path, "review", "--no-record", "--sarif", str(directory))
    assert is_dir.returncode == 2 and "is a directory" in is_dir.stderr
    twice = run_cli(feature.path, "review", "--no-record", "--sarif", str(tmp_path / "r.json"),
                    "--json", f"{tmp_path}/elsewhere/../r.json")
    assert twice.returncode == 2
    assert "--sarif and --json name the same file" in " ".join(twice.stderr.split())
    assert not (tmp_path / "r.json").exists()
    patch = tmp_path / "change.diff"
    patch.write_text(feature.git("diff", "main", "feature") + "\n")
    kept = patch.read_text()
    over = run_cli(feature.path, "review", "--no-record", "--diff", str(patch), "--markdown",
                   str(patch))
    assert over.returncode == 2
    assert "--diff and --markdown name the same file" in " ".join(over.stderr.split())
    assert patch.read_text() == kept


def without_root_privilege() -> list[str]:
    """A command prefix under which file permissions hold: as root, the same user without its
    capabilities (root writes anywhere otherwise); as anyone else, nothing."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: permissions cannot be tested")
    return [setpriv, "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs"]


def test_an_output_where_no_file_can_be_written_is_refused(feature: Repo, tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    read_only = tmp_path / "read-only.md"
    read_only.write_text("kept\n")
    dangling = tmp_path / "dangling"
    os.symlink(tmp_path / "nowhere", dangling)
    locked.chmod(0o500)
    read_only.chmod(0o400)
    try:
        for option, path, problem in (
                ("--json", locked / "new" / "all.json",
                 f"the directory {locked} is not writable, so {locked / 'new'} cannot be "
                 "created"),
                ("--markdown", read_only, "is a file you cannot write to"),
                ("--github", dangling / "body.json",
                 f"its directory {dangling} is a symbolic link to nothing")):
            result = subprocess.run(
                [*without_root_privilege(), sys.executable, "-m", "autoresearch", "review",
                 "--repo", str(feature.path), "--no-record", option, str(path)],
                cwd=feature.path, env=cli_env(), capture_output=True, text=True, timeout=300,
                stdin=subprocess.DEVNULL)
            assert result.returncode == 2, (option, result.stderr)
            assert problem in " ".join(result.stderr.split()), result.stderr
    finally:
        locked.chmod(0o700)
        read_only.chmod(0o600)
    assert read_only.read_text() == "kept\n"


# --- 3. paths spelled other than git spells them ---------------------------------------------


def respelled(diff: str, path: str, spelling: str) -> str:
    return diff.replace(f"a/{path}", f"a/{spelling}").replace(f"b/{path}", f"b/{spelling}")


@pytest.fixture
def protected_repo(repo: Repo) -> Repo:
    """evaluate.py and src/score.py protected; app.py not; `alias` links to src/; each file
    changed in the working tree (not committed)."""
    repo.commit("init", **{"autoresearch.toml": 'protected = ["evaluate.py", "src/score.py"]\n',
                           "evaluate.py": f"ANSWERS = '{EVAL_SECRET}'\n",
                           "src/score.py": f"WEIGHTS = '{SCORE_SECRET}'\n",
                           "app.py": "x = 1\n"})
    os.symlink("src", repo.path / "alias")
    repo.write("evaluate.py", f"ANSWERS = '{EVAL_SECRET}'\nMORE = 1\n")
    repo.write("src/score.py", f"WEIGHTS = '{SCORE_SECRET}'\nEXTRA = 2\n")
    repo.write("app.py", "x = 1\ny = x + 1\n")
    return repo


@pytest.mark.parametrize("spelling", [
    "./{path}", ".//{path}", "lib/../{path}", "{root}/{path}", "alias/../{path}"])
def test_a_diff_naming_files_in_another_spelling_reviews_them_under_their_own_names(
        protected_repo: Repo, tmp_path: Path, spelling: str) -> None:
    """`./evaluate.py` was refused (before that, read and sent to the model, matching no
    protected glob); now every spelling that names a file of the repository is that file: it
    is reviewed, and a protected one is withheld from the model like its git name."""
    repo = protected_repo
    diff = repo.git("diff") + "\n"
    root = str(repo.path.resolve())  # `a//tmp/...`: the absolute path of the file
    for path in ("evaluate.py", "src/score.py", "app.py"):
        # through the linked src/, src/score.py is alias/score.py
        name = path if not path.startswith("src/") or "alias" in spelling \
            else path.replace("src/", "alias/")
        diff = respelled(diff, path, spelling.format(path=name, root=root))
    patch = tmp_path / "change.diff"
    patch.write_text(diff)
    assert "b/evaluate.py" not in diff and "b/src/score.py" not in diff
    with FakeModelServer(handler=scripted([APP_FINDING])) as server:
        (repo.path / "autoresearch.toml").write_text(
            'protected = ["evaluate.py", "src/score.py"]\n' + llm_table(server))
        result = run_cli(repo.path, "review", "--diff", str(patch), "--llm", "--no-record",
                         "--format", "json")
        assert result.returncode == 0, result.stderr
        assert "y = x + 1" in sent(server)  # app.py reached the model
        assert EVAL_SECRET not in sent(server) and SCORE_SECRET not in sent(server)
    data = json.loads(result.stdout)
    assert data["files"] == 3
    # app.py is the file the model's finding names: anchored there and verified, not dropped
    # as a path the change does not touch.
    assert [(f["path"], f["start_line"], f["title"]) for f in data["findings"]] == [
        ("app.py", 2, "y is never used")], data["dropped"]
    note = next(n for n in data["notes"] if "protected" in n)
    assert "evaluate.py (matches evaluate.py)" in note
    assert "src/score.py (matches src/score.py)" in note


@pytest.mark.parametrize("spelling", ["./evaluate.py", "lib/../evaluate.py",
                                      "alias/../evaluate.py", "/evaluate.py"])
def test_a_protected_list_in_another_spelling_protects_the_file(
        protected_repo: Repo, tmp_path: Path, spelling: str) -> None:
    repo = protected_repo
    patch = tmp_path / "change.diff"
    patch.write_text(repo.git("diff") + "\n")
    with FakeModelServer(handler=no_findings) as server:
        (repo.path / "autoresearch.toml").write_text(
            f'protected = ["{spelling}", "alias/score.py"]\n' + llm_table(server))
        result = run_cli(repo.path, "review", "--diff", str(patch), "--llm", "--no-record",
                         "--format", "json")
        assert result.returncode == 0, result.stderr
        assert "y = x + 1" in sent(server)
        assert EVAL_SECRET not in sent(server)
        assert SCORE_SECRET not in sent(server)  # alias/score.py is src/score.py


def test_paths_that_leave_the_repository_are_still_refused(protected_repo: Repo,
                                                          tmp_path: Path) -> None:
    repo = protected_repo
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.py").write_text("TOKEN = 'hunter2-planted'\n")
    os.symlink(outside, repo.path / "linked")
    for name in ("../outside/secret.py", "linked/secret.py", "alias/../../outside/secret.py",
                 str(outside / "secret.py")):
        patch = tmp_path / "change.diff"
        patch.write_text(f"--- a/{name}\n+++ b/{name}\n".replace("a//", "/").replace("b//", "/")
                         + "@@ -1 +1,2 @@\n TOKEN = 'hunter2-planted'\n+print(TOKEN)\n")
        result = run_cli(repo.path, "review", "--diff", str(patch), "--no-record")
        assert result.returncode == 3, (name, result.stderr)
        assert "the diff names a path outside the repository" in result.stderr, name
        assert "hunter2" not in result.stdout
    for name, what in (("src/..", "the repository itself, not a file"), (".", "no file")):
        patch.write_text(f"--- a/{name}\n+++ b/{name}\n@@ -1 +1,2 @@\n x = 1\n+y = 2\n")
        result = run_cli(repo.path, "review", "--diff", str(patch), "--no-record")
        assert result.returncode == 3 and f"the diff names {what}: {name!r}" in result.stderr
        assert "Traceback" not in result.stderr
    inside_git = tmp_path / "git.diff"
    inside_git.write_text("--- a/./.git/config\n+++ b/./.git/config\n@@ -1 +1,2 @@\n"
                          " [core]\n+\tbare = false\n")
    result = run_cli(repo.path, "review", "--diff", str(inside_git), "--no-record")
    assert result.returncode == 3 and "a path inside .git" in result.stderr
    (repo.path / "autoresearch.toml").write_text('protected = ["lib/../../evaluate.py"]\n')
    result = run_cli(repo.path, "review", "--diff", str(inside_git), "--no-record")
    assert result.returncode == 2
    assert "protected pattern 'lib/../../evaluate.py' names a path outside the repository" in \
        " ".join(result.stderr.split())


def test_a_file_named_twice_in_one_diff_is_refused(protected_repo: Repo,
                                                   tmp_path: Path) -> None:
    repo = protected_repo
    part = repo.git("diff", "--", "app.py") + "\n"
    patch = tmp_path / "change.diff"
    patch.write_text(part + respelled(part, "app.py", "./app.py"))
    result = run_cli(repo.path, "review", "--diff", str(patch), "--no-record")
    assert result.returncode == 3
    assert "the diff changes app.py twice (as 'app.py' and './app.py')" in result.stderr
