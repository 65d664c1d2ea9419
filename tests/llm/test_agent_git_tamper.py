"""An agent (or anything else) tampering with git itself cannot change what the harness commits,
measures or records, and a refused proposal leaves the worktree clean for the next one.

The repository is the tamper audit's (FINDINGS_tamper.md): `evaluate.py` and `data/**` are
protected, the scope is `params.py` and `lib/**`, and the loss is |X - 3| exactly (the baseline
has X = 4, loss 1). Each agent is a `custom` shell script; a counter file tells it which call it
is. HOME and XDG_CONFIG_HOME point at throw-away directories, so the user's own git configuration
is never read or written.
"""

from __future__ import annotations

import dataclasses
import os
import sqlite3
import stat
import textwrap
from pathlib import Path

import pytest

from autoresearch import gitops
from autoresearch.gitops.commits import commit_change
from autoresearch.gitops.history import file_at
from autoresearch.gitops.status import changed_paths
from autoresearch.proposers.agent import AgentProposer
from autoresearch.proposers.base import ProposalContext
from autoresearch.proposers.faults import FailedProposal
from tests.conftest import git, make_repo, run_cli
from tests.llm.conftest import MakeCtx, make_config

EVALUATE = textwrap.dedent("""\
    import params
    target = float(open("data/points.txt").read())
    print(f"loss: {abs(params.X - target)}")
    """)
CONFIG = textwrap.dedent("""\
    scope = ["params.py", "lib/**"]
    protected = ["evaluate.py", "data/**"]
    [verify]
    command = "{python} evaluate.py"
    budget_seconds = 5
    timeout_seconds = 20
    [metric]
    name = "loss"
    direction = "minimize"
    [decision]
    repeats = 1
    deterministic = true
    max_consecutive_rejections = 50
    [proposer]
    name = "agent"
    agent = "custom"
    command = "bash AGENT"
    agent_timeout_seconds = 30
    """)


def script(path: Path, body: str) -> Path:
    """An agent: `n` is the number of this call (1, 2, ...), counted in `<path>.n`."""
    path.write_text("#!/bin/bash\nset -e\nC=" + f"{path}.n\n" + textwrap.dedent("""\
        n=$(( $(cat $C 2>/dev/null || echo 0) + 1 )); echo $n > $C
        """) + textwrap.dedent(body))
    return path


def tamper_repo(tmp_path: Path, agent_body: str) -> tuple[Path, dict[str, str]]:
    """The audit's repository driven by the agent `agent_body`, and the environment of a run
    (a throw-away HOME: a global git config the test or the agent writes is never the user's)."""
    agent = script(tmp_path / "agent.sh", agent_body)
    repo = make_repo(tmp_path / "repo", {
        "evaluate.py": EVALUATE, "params.py": "X = 4.0\n", "data/points.txt": "3.0\n",
        "lib/__init__.py": "# helper\n", "program.md": "Make the loss small.\n",
        "autoresearch.toml": CONFIG.replace("AGENT", str(agent))})
    home = tmp_path / "home"
    (home / ".config").mkdir(parents=True)
    return repo, {"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config")}


def experiments(repo: Path) -> list[tuple[str, str, float | None, str]]:
    """(id, status, objective, reason) of every experiment, in order."""
    with sqlite3.connect(repo / ".autoresearch" / "ledger.db") as conn:
        return conn.execute("SELECT id, status, objective, COALESCE(decision_reason, '') "
                            "FROM experiments ORDER BY seq").fetchall()


def slot(repo: Path, tag: str) -> Path:
    return repo / ".autoresearch" / "worktrees" / tag


def assert_clean_slot(repo: Path, tag: str) -> None:
    wt = slot(repo, tag)
    assert gitops.links_to(repo, wt)
    assert git(wt, "status", "--porcelain", "--untracked-files=all") == ""
    assert git(wt, "rev-parse", "HEAD") == git(repo, "rev-parse", f"autoresearch/{tag}")


# --- 1. no hook, fsmonitor or other planted git config runs in the harness's git calls --------

HOOK = """#!/bin/sh
echo "$0" >> MARKER
# what the audit's hook did: make the worktree hold the optimum after each commit or checkout
if grep -q "X = 5.0" params.py 2>/dev/null; then echo "X = 3.0" > params.py; fi
exit 0
"""
HOOKS = ("post-checkout", "post-commit", "pre-commit", "commit-msg", "prepare-commit-msg",
         "reference-transaction", "post-index-change", "post-rewrite", "pre-auto-gc")


def plant_hooks(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A hooks directory whose every hook (and an fsmonitor) logs itself to a marker file and
    rewrites params.py to the optimum; returns (hooks dir, fsmonitor, marker)."""
    marker = tmp_path / "hooks-ran.log"
    hooks = tmp_path / "evilhooks"
    hooks.mkdir()
    for name in HOOKS:
        (hooks / name).write_text(HOOK.replace("MARKER", str(marker)))
        (hooks / name).chmod(0o755)
    fsmonitor = tmp_path / "fsmonitor.sh"
    fsmonitor.write_text(HOOK.replace("MARKER", str(marker)) + "exit 1\n")
    fsmonitor.chmod(0o755)
    return hooks, fsmonitor, marker


@pytest.mark.slow
@pytest.mark.parametrize("where", ["global", "repository"])
def test_hooks_planted_in_any_git_config_never_run_and_cannot_change_the_measurement(
        tmp_path: Path, where: str) -> None:
    # The agent proposes X = 5.0 (loss 2, worse than the baseline's 1); the hooks would make the
    # worktree hold X = 3.0 (loss 0) after the harness's commit and checkouts.
    repo, env = tamper_repo(tmp_path, """
        echo "X = 5.0" > params.py
        echo "Hypothesis: set X to 5"
        """)
    hooks, fsmonitor, marker = plant_hooks(tmp_path)
    settings = ["core.hooksPath", str(hooks), "core.fsmonitor", str(fsmonitor)]
    if where == "global":
        config = Path(env["HOME"]) / ".gitconfig"
        config.write_text(f"[core]\n\thooksPath = {hooks}\n\tfsmonitor = {fsmonitor}\n")
    else:
        for key, value in zip(settings[::2], settings[1::2], strict=True):
            git(repo, "config", key, value)
    result = run_cli(repo, "run", "--tag", "h", "-n", "2", env=env, timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    assert not marker.exists(), marker.read_text()  # not one hook, not the fsmonitor
    exps = experiments(repo)
    assert [(e[1], e[2]) for e in exps] == [("keep", 1.0), ("discard", 2.0)], exps
    assert git(repo, "show", "refs/autoresearch/h/discarded/h-0002:params.py") == "X = 5.0"
    assert_clean_slot(repo, "h")


AGENT_PLANTS_GLOBAL_HOOKS = """
    echo "X = 5.0" > params.py
    if [ $n = 1 ]; then
        printf '[core]\\n\\thooksPath = %s\\n' "$EVIL_HOOKS" >> "$HOME/.gitconfig"
    fi
    echo "Hypothesis: set X to 5 ($n)"
    """


@pytest.mark.slow
def test_an_agent_planting_a_hook_in_the_global_config_is_rejected_and_the_config_put_back(
        tmp_path: Path) -> None:
    """The audit's finding 1 as it was played: the agent adds core.hooksPath to ~/.gitconfig."""
    repo, env = tamper_repo(tmp_path, AGENT_PLANTS_GLOBAL_HOOKS)
    hooks, _, marker = plant_hooks(tmp_path)
    gitconfig = Path(env["HOME"]) / ".gitconfig"
    gitconfig.write_text("[alias]\n\tst = status\n")  # the user's own, kept byte for byte
    result = run_cli(repo, "run", "--tag", "g", "-n", "3", env={**env, "EVIL_HOOKS": str(hooks)},
                     timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    exps = experiments(repo)
    assert [e[1] for e in exps] == ["keep", "rejected", "discard"], exps
    assert f"git's file {gitconfig} was changed" in exps[1][3]
    assert exps[2][2] == 2.0  # the next proposal is measured as committed
    assert gitconfig.read_text() == "[alias]\n\tst = status\n"
    assert not marker.exists()
    assert_clean_slot(repo, "g")


# --- 5. a repointed `.git` link ---------------------------------------------------------------

AGENT_REPOINTS_GIT = """
    echo "X = 3.$n" > params.py
    if [ $n = 1 ]; then
        GD=$(git rev-parse --path-format=absolute --git-common-dir)
        rm -rf "$FAKE"; cp -a "$GD" "$FAKE"
        echo "gitdir: $FAKE/worktrees/$(basename $(git rev-parse --git-dir))" > .git
    fi
    echo "Hypothesis: X 3.$n"
    """


@pytest.mark.slow
def test_a_repointed_worktree_link_is_rejected_put_back_and_every_commit_stays_in_the_repo(
        tmp_path: Path) -> None:
    repo, env = tamper_repo(tmp_path, AGENT_REPOINTS_GIT)
    env["FAKE"] = str(tmp_path / "fakegit")
    result = run_cli(repo, "run", "--tag", "g", "-n", "4", env=env, timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    exps = experiments(repo)
    assert [e[1] for e in exps] == ["keep", "rejected", "keep", "discard"], exps
    assert "the worktree's link to its repository" in exps[1][3]
    assert exps[2][2] == pytest.approx(0.2)  # X = 3.2, committed and kept in the real repo
    assert git(repo, "show", "autoresearch/g:params.py") == "X = 3.2"
    assert_clean_slot(repo, "g")
    # Whatever repoints the link between sessions (a verify run, an older release's session),
    # the resume makes the worktree again rather than committing into the copy.
    (slot(repo, "g") / ".git").write_text(f"gitdir: {tmp_path / 'fakegit'}/worktrees/g\n")
    result = run_cli(repo, "run", "--tag", "g", "-n", "5", env=env, timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    exps = experiments(repo)
    assert [e[1] for e in exps] == ["keep", "rejected", "keep", "discard", "discard"], exps
    assert "running" not in {e[1] for e in exps}
    assert git(repo, "cat-file", "-t", f"refs/autoresearch/g/discarded/{exps[4][0]}") == "commit"
    assert_clean_slot(repo, "g")


# --- 6. a nested repository ---------------------------------------------------------------------

AGENT_NESTS_A_REPO = """
    echo "X = 3.$n" > params.py
    if [ $n = 1 ]; then
        mkdir -p lib/sub && cd lib/sub && git init -q . && echo x > f && git add f
        git -c user.name=a -c user.email=a@b commit -qm nested
    fi
    echo "Hypothesis: X 3.$n"
    """


@pytest.mark.slow
def test_a_nested_repository_is_rejected_by_name_and_removed_so_later_proposals_run(
        tmp_path: Path) -> None:
    repo, env = tamper_repo(tmp_path, AGENT_NESTS_A_REPO)
    result = run_cli(repo, "run", "--tag", "s", "-n", "4", env=env, timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    exps = experiments(repo)
    assert [e[1] for e in exps] == ["keep", "rejected", "keep", "discard"], exps
    assert "nested git repository" in exps[1][3] and "lib/sub" in exps[1][3]
    assert not (slot(repo, "s") / "lib" / "sub").exists()
    assert_clean_slot(repo, "s")


def test_a_slot_reset_removes_a_nested_repository_left_in_it(tmp_path: Path) -> None:
    """Whatever left one there (an older release, a verify run), the next reset removes it,
    and git-ignored files too: what one commit's run left must not be what a later one runs
    (shared data is linked again before each run: [verify] share)."""
    repo = make_repo(tmp_path / "repo", {"a.py": "A = 1\n", ".gitignore": "data/\n"})
    wt = tmp_path / "wt"
    gitops.ensure_detached_worktree(repo, wt, git(repo, "rev-parse", "HEAD"))
    make_repo(wt / "lib" / "sub", {"f": "x\n"})
    (wt / "data").mkdir()
    (wt / "data" / "prepared.bin").write_text("left by a run\n")
    gitops.checkout(wt, "HEAD")
    assert not (wt / "lib").exists()
    assert not (wt / "data").exists()
    assert (wt / "a.py").read_text() == "A = 1\n"


# --- 7. the index -------------------------------------------------------------------------------

AGENT_GIT_MV = """
    echo "X = 3.$n" > params.py
    if [ $n = 1 ]; then git mv lib/__init__.py lib/helpers.py; fi
    if [ $n = 2 ]; then echo "# notes" > lib/notes.py; git add lib/notes.py; fi
    echo "Hypothesis: X 3.$n"
    """


@pytest.mark.slow
def test_a_change_staged_with_git_mv_or_add_is_an_ordinary_proposal(tmp_path: Path) -> None:
    repo, env = tamper_repo(tmp_path, AGENT_GIT_MV)
    result = run_cli(repo, "run", "--tag", "m", "-n", "3", env=env, timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    exps = experiments(repo)
    assert [e[1] for e in exps] == ["keep", "keep", "discard"], exps
    kept = git(repo, "ls-tree", "-r", "--name-only", "autoresearch/m").split()
    assert "lib/helpers.py" in kept and "lib/__init__.py" not in kept
    parked = git(repo, "ls-tree", "-r", "--name-only", "refs/autoresearch/m/discarded/m-0003")
    assert "lib/notes.py" in parked.split()
    assert_clean_slot(repo, "m")


# --- 8. git's control files and the user's global configuration --------------------------------

@pytest.fixture
def linked(tmp_path: Path, make_ctx: MakeCtx, worktree: Path,
           monkeypatch: pytest.MonkeyPatch) -> ProposalContext:
    """The session's linked worktree of the user's repository (`worktree`), and a throw-away
    HOME holding a global config of the user's (which includes another file) and a system one."""
    home = tmp_path / "home"
    (home / ".config" / "git").mkdir(parents=True)
    (home / ".gitconfig").write_text("[alias]\n\tst = status\n[include]\n\tpath = extra\n")
    (home / "extra").write_text("")  # included by the global one (empty: no origin lists it)
    (home / "system-gitconfig").write_text("")
    monkeypatch.setenv("GIT_CONFIG_SYSTEM", str(home / "system-gitconfig"))
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.delenv("GIT_CONFIG_GLOBAL", raising=False)
    git(worktree, "branch", "autoresearch/t")
    wt = worktree / ".autoresearch" / "worktrees" / "t"
    git(worktree, "worktree", "add", "-q", "--detach", str(wt), "autoresearch/t")
    return dataclasses.replace(make_ctx(), worktree=wt)


def custom_agent(path: Path, body: str) -> AgentProposer:
    agent = script(path, body)
    return AgentProposer(make_config(), {"agent": "custom", "command": f"bash {agent}"})


def snapshot(paths: list[Path]) -> dict[Path, bytes | None]:
    return {p: p.read_bytes() if p.is_file() else None for p in paths}


def test_every_git_control_file_an_agent_plants_is_named_put_back_and_refused(
        tmp_path: Path, linked: ProposalContext, worktree: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    gd = worktree / ".git"
    home = Path(os.environ["HOME"])
    planted = [gd / "info" / "attributes", gd / "info" / "exclude", gd / "config",
               gd / "info" / "grafts", gd / "objects" / "info" / "alternates",
               home / ".gitconfig", home / ".config" / "git" / "config",
               home / ".config" / "git" / "attributes", home / ".config" / "git" / "ignore",
               home / "extra", home / "system-gitconfig", gd / "hooks" / "post-checkout"]
    before = snapshot(planted)
    head = git(linked.worktree, "rev-parse", "HEAD")
    marker = tmp_path / "filter-ran.log"
    monkeypatch.setenv("MARKER", str(marker))
    agent = custom_agent(tmp_path / "agent.sh", """
        GD=$(git rev-parse --path-format=absolute --git-common-dir)
        sed -i 's/X = 3.0/X = 6.0/' target.py
        mkdir -p $GD/info $GD/objects/info $HOME/.config/git
        printf '*.py text eol=crlf filter=evil\\n' >> $GD/info/attributes
        printf 'target.py\\n' >> $GD/info/exclude
        printf '[filter "evil"]\\n\\tclean = sh -c "echo ran >> $MARKER; cat"\\n' >> $GD/config
        printf '\\tsmudge = sh -c "echo ran >> $MARKER; cat"\\n' >> $GD/config
        printf '%s\\n' "$(git rev-parse HEAD)" >> $GD/info/grafts
        printf '/tmp/elsewhere/objects\\n' >> $GD/objects/info/alternates
        printf '[core]\\n\\thooksPath = /tmp/evil\\n' >> $HOME/.gitconfig
        printf '[core]\\n\\tfsmonitor = /tmp/evil.sh\\n' >> $HOME/.config/git/config
        printf '* filter=evil\\n' >> $HOME/.config/git/attributes
        printf 'lib/\\n' >> $HOME/.config/git/ignore
        printf '[core]\\n\\thooksPath = /tmp/evil\\n' >> $HOME/extra
        printf '[core]\\n\\thooksPath = /tmp/evil\\n' >> $GIT_CONFIG_SYSTEM
        printf '#!/bin/sh\\n' > $GD/hooks/post-checkout; chmod +x $GD/hooks/post-checkout
        echo "Hypothesis: plant everything"
        """)
    with pytest.raises(FailedProposal) as info:
        agent.propose(linked)
    what = info.value.what
    for path in planted:
        assert f"git's file {path} was changed" in what, (path, what)
    assert snapshot(planted) == before  # byte for byte, and absent ones absent again
    assert git(linked.worktree, "rev-parse", "HEAD") == head
    assert git(linked.worktree, "status", "--porcelain", "--untracked-files=all") == ""
    # Nothing of it is left to act on the next, honest proposal.
    honest = custom_agent(tmp_path / "honest.sh", """
        sed -i 's/X = 3.0/X = 6.0/' target.py
        echo "Hypothesis: X to 6"
        """)
    assert honest.propose(linked) is not None
    change = commit_change(linked.worktree, "x\n", changed_paths(linked.worktree))
    assert file_at(worktree, change.sha, "target.py") == (
        linked.worktree / "target.py").read_text()
    assert "X = 6.0" in (linked.worktree / "target.py").read_text()
    assert not marker.exists()  # the planted filter never ran in the harness's git calls


def test_a_symlinked_global_config_is_restored_through_its_link(
        tmp_path: Path, linked: ProposalContext) -> None:
    """A dotfiles checkout links ~/.gitconfig elsewhere: the link stays a link, and the file it
    points at gets its content back."""
    home = Path(os.environ["HOME"])
    dotfiles = tmp_path / "dotfiles-gitconfig"
    dotfiles.write_text("[user]\n\tname = me\n")
    (home / ".gitconfig").unlink()
    (home / ".gitconfig").symlink_to(dotfiles)
    agent = custom_agent(tmp_path / "agent.sh", """
        sed -i 's/X = 3.0/X = 6.0/' target.py
        printf '[core]\\n\\thooksPath = /tmp/evil\\n' >> $HOME/.gitconfig
        """)
    with pytest.raises(FailedProposal):
        agent.propose(linked)
    assert (home / ".gitconfig").is_symlink() and os.readlink(home / ".gitconfig") == str(dotfiles)
    assert dotfiles.read_text() == "[user]\n\tname = me\n"


def test_a_worktree_link_replaced_by_a_repository_of_its_own_is_put_back(
        tmp_path: Path, linked: ProposalContext, worktree: Path) -> None:
    link = (linked.worktree / ".git").read_bytes()
    agent = custom_agent(tmp_path / "agent.sh", """
        sed -i 's/X = 3.0/X = 6.0/' target.py
        rm .git && git init -q . && git add -A
        git -c user.name=a -c user.email=a@b commit -qm own
        """)
    with pytest.raises(FailedProposal) as info:
        agent.propose(linked)
    assert "the worktree's link to its repository" in info.value.what
    assert (linked.worktree / ".git").read_bytes() == link
    assert stat.S_ISREG((linked.worktree / ".git").lstat().st_mode)
    assert gitops.links_to(worktree, linked.worktree)
    assert git(linked.worktree, "status", "--porcelain", "--untracked-files=all") == ""


def test_parallel_guards_never_write_a_siblings_plant_back(
        tmp_path: Path, linked: ProposalContext, worktree: Path) -> None:
    """Slot B's run starts while slot A's agent has planted a config: A's guard puts it back,
    and B's, whose "before" holds the plant, must neither write it again nor let it pass."""
    from autoresearch.gitops.control_files import GitFiles

    config = worktree / ".git" / "config"
    good = config.read_bytes()
    a = GitFiles.take(linked.worktree)
    config.write_bytes(good + b'[core]\n\tfsmonitor = /tmp/evil.sh\n')  # A's agent
    b = GitFiles.take(linked.worktree)
    assert a.restore() == [config] and config.read_bytes() == good
    assert config in b.changed()  # refused too: the harness cannot tell whose it was
    b.restore()
    assert config.read_bytes() == good
    c = GitFiles.take(linked.worktree)  # a later run starts clean
    assert c.changed() == [] and c.restore() == []


REPOINTING_Y = textwrap.dedent("""\
    import os, shutil, subprocess
    Y = 3.0
    SLEEP = 2.5
    # Candidate code that points its worktree's .git at a fresh copy of the repository.
    fake = os.environ["FAKE_GITDIR"]
    if os.path.isfile(".git") and fake not in open(".git").read():
        name = os.path.basename(open(".git").read().split("gitdir:")[1].strip())
        common = subprocess.run(["git", "rev-parse", "--path-format=absolute",
                                 "--git-common-dir"], capture_output=True, text=True).stdout
        copy = os.path.join(fake, str(os.getpid()))
        shutil.copytree(common.strip(), copy, symlinks=True)
        open(".git", "w").write(f"gitdir: {copy}/worktrees/{name}\\n")
    """)


@pytest.mark.slow
def test_a_candidate_whose_runs_repoint_git_is_a_crash_and_nothing_lands_elsewhere(
        tmp_path: Path) -> None:
    """A parallel session: slot 2's candidate (Y) repoints its slot's .git in every run. Git's
    files are fenced around each run: the link is put back before the harness runs git again,
    and the run does not count, so the candidate is a crash, and every commit of the session,
    slot 1's keep included, is in this repository (one in the copy could be neither measured
    nor kept)."""
    from tests.conftest import use_script
    from tests.test_parallel import CONFIG as TWO_KNOBS
    from tests.test_parallel import SCORE as TWO_KNOBS_SCORE

    repo = make_repo(tmp_path / "repo", {"x.py": "X = 3.0\n", "y.py": "Y = 0.0\n",
                                         "score.py": TWO_KNOBS_SCORE,
                                         "autoresearch.toml": TWO_KNOBS})
    use_script(repo, [
        {"hypothesis": "X to 5", "edits": {"x.py": "X = 5.0\nSLEEP = 1.0\n"}},
        {"hypothesis": "Y to 3", "edits": {"y.py": REPOINTING_Y}},
    ])
    (tmp_path / "fake").mkdir()
    result = run_cli(repo, "run", "--tag", "t", "--iterations", "3", "--workers", "2",
                     env={"FAKE_GITDIR": str(tmp_path / "fake")}, timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    with sqlite3.connect(repo / ".autoresearch" / "ledger.db") as conn:
        exps = conn.execute("SELECT status, hypothesis, COALESCE(decision_reason, '') "
                            "FROM experiments ORDER BY seq").fetchall()
    assert [(e[0], e[1]) for e in exps] == [("keep", "baseline"), ("keep", "X to 5"),
                                            ("crash", "Y to 3")], exps
    assert "the run changed git's own files: the worktree's link to its repository" in exps[2][2]
    assert git(repo, "show", "autoresearch/t:x.py").startswith("X = 5.0")
    assert "Y = 3.0" not in git(repo, "show", "autoresearch/t:y.py")
    for slot in (repo / ".autoresearch" / "worktrees" / "t").iterdir():
        assert str(tmp_path / "fake") not in (slot / ".git").read_text()  # links put back
