"""A fake coding-agent CLI, installed on PATH as `claude`, `codex`, `aider` and `myagent`.

It imitates each CLI's invocation and output format, and does what FAKE_AGENT_MODE says:
    improve    set X = 7.0 in target.py (the toy optimum)
    protected  edit the protected score.py
    outside    create notes.md (outside the scope)
    commit     set X = 6.9, then `git commit` on the detached HEAD, as an honest agent allowed
               to run git does (folded back into the working tree: the change is the proposal)
    twocommits set X = 6.5 and commit, then set X = 6.9 and commit, then add lib/new.py uncommitted
    switch     `git switch` to the session branch, set X = 6.9 (refused; HEAD detached again)
    refs       set X = 6.9, create a branch and a tag, move the session branch (refused, undone)
    stash      set X = 6.9, `git stash`, set X = 6.8 (refused: stashes are git too)
    stashdrop  set X = 6.9, drop the newest of the user's stashes (refused; it comes back)
    userstash  change target.py in the user's checkout and `git stash` it there (the user's)
    hide       set X = 6.9, `git update-index --assume-unchanged score.py`, tamper score.py
    hook       set X = 6.9, install a post-checkout hook in the repository's git dir
    ignored    set X = 6.9, rewrite the git-ignored data/offset.txt the evaluation reads, and add
               lib/.gitignore (`*`) hiding a new lib/hidden.py
    pycache    set X = 7.0 and import target (writes __pycache__/, a regenerable cache)
    others     set X = 7.0 while another session's ref moves (allowed while that session, `other`,
               is live: its own process moves it)
    worktree   `git worktree add` the session branch at FAKE_AGENT_WORKTREE, tamper score.py there
               and commit it onto the branch, leave a `__pycache__/` there and lock it (refused:
               the worktree removed, as it holds nothing but a cache, the branch put back)
    rewrite    set X = 6.9, move session `b`'s branch to a commit with a tampered score.py and
               create refs/autoresearch/b/evil (refused unless `b` is live)
    main       set X = 6.9 and move the user's checked-out `main` (put back; the session stops)
    stray      set X = 6.9, commit on its detached HEAD and move the user's branch `side` there
               (put back, the commit saved under refs/autoresearch/<tag>/saved/)
    nothing    change nothing
    hang       start a child that ignores SIGTERM, then sleep (the timeout must kill both)
    persist    start a child that leaves the session (setsid), ignores SIGTERM and rewrites
               target.py every 20 ms forever, then sleep: what must not outlive the orchestrator
    auth       fail like an unauthenticated CLI
    jsonauth   exit 0 with Claude Code's error result for a refused login (is_error, no change)
    maxturns   set X = 5.0, then stop with Claude Code's `error_max_turns` result (exit 0)
    ratelimit  exit 0 with Claude Code's usage-limit error result (no change)
    turnfailed Codex: set X = 5.0, then a `turn.failed` event (exit 0)
    answer     change nothing and only answer (its text is the reason)
    ask        print an approval prompt and read the answer from stdin: with stdin closed
               (EOF) it declines and changes nothing, as a CLI without a tty does
    askwait    print an approval prompt, write the agent's pid to FAKE_AGENT_PIDFILE, and wait
               for an answer that never comes
    flood      set X = 7.0 while printing FAKE_AGENT_FLOOD_MB MB of stream-json events
    nancost    add 0.5 to X, and report its cost as NaN (JSON admits it)
    negcost    add 0.5 to X, and report a cost of -50 USD
    paid       add 0.5 to X (at the reported cost of every call, 0.0123 USD)
aider commits its edit itself (as the real aider does) unless `--no-auto-commits` is its last
word on it, printing "Commit <sha> <message>" like aider.
    repair     replace 'import missing_module' in target.py by 'import math'
    crash      append `CRASH = True` to target.py (the evaluation then fails)
    linkrepair replace `CRASH = True` by `X = 6.5` in target.py, and link lib/notes.py to the
               protected secrets.txt (a repair that would smuggle the secret out)
    binary     set X = 7.0 and write lib/blob.py holding NUL bytes (binary, new: refused)
    badname    set X = 7.0 and create lib/b<0xff>.py, a name that is not UTF-8 (refused)
With FAKE_AGENT_GO set, each call first writes its pid to FAKE_AGENT_PIDFILE and waits (at most
120 s) until the file FAKE_AGENT_GO exists: what the test does meanwhile (a commit of the user's)
happens while the agent is at work.
With FAKE_AGENT_MODES naming a file of modes (one a line), each call takes the next line instead.
Every call appends {"argv": [...], "prompt": "..."} as a JSON line to FAKE_AGENT_LOG.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def prompt_from(argv: list[str]) -> str:
    if "--message-file" in argv:
        return Path(argv[argv.index("--message-file") + 1]).read_text()
    if "--prompt-file" in argv:
        return Path(argv[argv.index("--prompt-file") + 1]).read_text()
    return sys.stdin.read()


def act(mode: str) -> None:
    target = Path("target.py")
    if mode == "improve":
        target.write_text(target.read_text().replace("X = 3.0", "X = 7.0"))
    elif mode == "flood":
        target.write_text(target.read_text().replace("X = 3.0", "X = 7.0").replace(
            "X = 6.9", "X = 7.0"))
    elif mode == "commit":
        target.write_text(target.read_text().replace("X = 3.0", "X = 6.9").replace(
            "X = 7.0", "X = 6.9"))
    elif mode in ("protected", "commitprotected"):
        Path("score.py").write_text(Path("score.py").read_text() + "# tampered\n")
    elif mode == "outside":
        Path("notes.md").write_text("notes\n")
    elif mode == "repair":
        target.write_text(target.read_text().replace("import missing_module", "import math"))
    elif mode == "crash":
        target.write_text(target.read_text() + "CRASH = True\n")
    elif mode == "linkrepair":
        target.write_text(target.read_text().replace("CRASH = True", "X = 6.5"))
        Path("lib").mkdir(exist_ok=True)
        Path("lib/notes.py").symlink_to(Path("..") / "secrets.txt")
    elif mode in ("binary", "badname"):
        target.write_text(target.read_text().replace("X = 3.0", "X = 7.0"))
        Path("lib").mkdir(exist_ok=True)
        if mode == "binary":
            Path("lib/blob.py").write_bytes(b"X = 1\n\0\1\2\n")
        else:
            with open(b"lib/b\xff.py", "wb") as fh:
                fh.write(b"Y = 1\n")
    elif mode == "hang":
        # The child's pid goes to FAKE_AGENT_PIDFILE written whole (.part, then renamed) once it
        # ignores SIGTERM, and the agent writes its half-written change only after that: a test
        # that sees the file knows both are set up (on a loaded machine they took seconds).
        pidfile = os.environ["FAKE_AGENT_PIDFILE"]
        child = subprocess.Popen([sys.executable, "-c", (
            "import signal, time, os\n"
            "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
            f"with open({pidfile + '.part'!r}, 'w') as out:\n"
            "    out.write(str(os.getpid()))\n"
            f"os.replace({pidfile + '.part'!r}, {pidfile!r})\n"
            "time.sleep(600)\n")])
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        while not os.path.exists(pidfile) and child.poll() is None:
            time.sleep(0.01)
        target.write_text("X = 'half-written'\n")
        child.wait()
        time.sleep(600)
    elif mode == "persist":
        if os.fork() == 0:
            os.setsid()
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            pidfile = os.environ["FAKE_AGENT_PIDFILE"]
            Path(pidfile + ".tmp").write_text(str(os.getpid()))
            os.rename(pidfile + ".tmp", pidfile)
            while True:
                with contextlib.suppress(OSError):
                    target.write_text("X = 'written by an orphan'\n")
                time.sleep(0.02)
        time.sleep(600)
    elif mode == "others":
        target.write_text(target.read_text().replace("X = 3.0", "X = 7.0"))
        git("update-ref", "refs/autoresearch/other/discarded/other-0001", "HEAD")
    elif mode in ("worktree", "rewrite"):
        other_worktree_tricks(mode, target)
    elif mode in ("switch", "refs", "stash", "stashdrop", "userstash", "hide", "hook", "ignored",
                  "main", "stray", "fetch"):
        git_tricks(mode, target)
    elif mode == "checkout":
        # Through the worktree to the user's own checkout it lives in.
        target.write_text(target.read_text().replace("X = 3.0", "X = 7.0"))
        root = Path(git("rev-parse", "--path-format=absolute", "--git-common-dir")).parent
        (root / "target.py").write_text("X = 7.0  # edited in your checkout\n")
        (root / "agent-notes.md").write_text("notes\n")
    elif mode in ("nancost", "negcost", "paid"):
        x = float(target.read_text().split("X = ", 1)[1].split()[0])
        target.write_text(target.read_text().replace(f"X = {x}", f"X = {x + 0.5}"))
    elif mode == "pycache":
        target.write_text(target.read_text().replace("X = 3.0", "X = 7.0"))
        subprocess.run([sys.executable, "-c", "import sys; sys.dont_write_bytecode = False; "
                        "import target"], check=True)
    if mode == "commit":
        git("commit", "-qam", "Set X to 6.9, just below the optimum\n\nA smaller step.")
    elif mode == "commitprotected":  # the tamper committed on its detached HEAD
        git("commit", "-qam", "tidy the scoring")
    elif mode == "twocommits":
        target.write_text(target.read_text().replace("X = 3.0", "X = 6.5"))
        git("commit", "-qam", "first step")
        target.write_text(target.read_text().replace("X = 6.5", "X = 6.9"))
        git("commit", "-qam", "second step")
        Path("lib").mkdir(exist_ok=True)
        Path("lib/new.py").write_text("Y = 1\n")
    elif mode in ("maxturns", "turnfailed"):
        target.write_text(target.read_text().replace("X = 3.0", "X = 5.0").replace(
            "X = 6.9", "X = 5.0"))


def claude_error(mode: str) -> dict[str, object]:
    """Claude Code's result object for a run that failed although the CLI exits 0."""
    base: dict[str, object] = {"type": "result", "duration_ms": 900, "num_turns": 1,
                               "session_id": "s1", "total_cost_usd": 0.004,
                               "usage": {"input_tokens": 300, "output_tokens": 20}}
    if mode == "maxturns":  # no `result` text; is_error false in some versions
        return {**base, "subtype": "error_max_turns", "is_error": False, "num_turns": 3}
    text = {"jsonauth": "Invalid API key · Please run /login",
            "ratelimit": "Claude AI usage limit reached|"
                         + os.environ.get("FAKE_AGENT_RESET", "1765000000")}[mode]
    return {**base, "subtype": "success", "is_error": True, "result": text,
            "total_cost_usd": 0}


def auto_commits(argv: list[str]) -> bool:
    """aider's own default: commit every edit; the last of the two flags wins."""
    flags = [a for a in argv if a in ("--auto-commits", "--no-auto-commits")]
    return not flags or flags[-1] == "--auto-commits"


def flood() -> None:
    """Claude Code's `stream-json`: an event per message, megabytes of them on a long run."""
    size = int(float(os.environ.get("FAKE_AGENT_FLOOD_MB", "8")) * 1024 * 1024)
    event = json.dumps({"type": "assistant", "session_id": "s1", "message": {
        "role": "assistant", "content": [{"type": "text", "text": "thinking " * 100}]}}) + "\n"
    out = sys.stdout
    written = 0
    while written < size:
        out.write(event)
        written += len(event)
    out.flush()


def git(*args: str, input_text: str | None = None) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "a", "GIT_AUTHOR_EMAIL": "a@a",
           "GIT_COMMITTER_NAME": "a", "GIT_COMMITTER_EMAIL": "a@a"}
    return subprocess.run(["git", *args], env=env, check=True, capture_output=True,
                          text=True, input=input_text).stdout.strip()


def session_branch() -> str:
    branches = git("for-each-ref", "--format=%(refname:short)", "refs/heads/autoresearch/")
    return branches.splitlines()[0]


def git_tricks(mode: str, target: Path) -> None:
    """Everything an agent with a shell could do with git or ignored files to fool the harness."""
    def set_x(value: str) -> None:
        text = target.read_text()
        for old in ("X = 3.0", "X = 7.0", "X = 6.9"):
            text = text.replace(old, f"X = {value}")
        target.write_text(text)

    if mode == "switch":
        git("switch", "-q", session_branch())
        set_x("6.9")
        return
    set_x("6.9")
    if mode == "refs":
        git("branch", "agent-branch")
        git("tag", "agent-tag")
        git("commit", "-qam", "agent commit on the side")
        git("update-ref", f"refs/heads/{session_branch()}", "HEAD")
    elif mode == "main":
        git("commit", "-qam", "agent commit on main")
        git("update-ref", "refs/heads/main", "HEAD")
    elif mode == "stray":
        git("commit", "-qam", "agent commit on a branch of the user's")
        git("update-ref", "refs/heads/side", "HEAD")
    elif mode == "fetch":  # as the user would from their checkout while the agent works
        root = Path(git("rev-parse", "--path-format=absolute", "--git-common-dir")).parent
        git("-C", str(root), "fetch", "-q", "origin")
    elif mode == "stash":
        git("stash", "-q")
        set_x("6.8")
    elif mode == "stashdrop":
        git("stash", "drop", "-q")
    elif mode == "userstash":
        root = Path(git("rev-parse", "--path-format=absolute", "--git-common-dir")).parent
        (root / "target.py").write_text("X = 1.0  # edited in your checkout\n")
        git("-C", str(root), "stash", "-q")
    elif mode == "hide":
        git("update-index", "--assume-unchanged", "score.py")
        Path("score.py").write_text("print('score: 0')\n")
    elif mode == "hook":
        hooks = Path(git("rev-parse", "--path-format=absolute", "--git-common-dir")) / "hooks"
        hooks.mkdir(exist_ok=True)
        hook = hooks / "post-checkout"
        hook.write_text("#!/bin/sh\necho tampered >> score.py\n")
        hook.chmod(0o755)
    elif mode == "ignored":
        Path("data").mkdir(exist_ok=True)
        Path("data/offset.txt").write_text("-1000\n")
        Path("lib").mkdir(exist_ok=True)
        Path("lib/.gitignore").write_text("*\n")
        Path("lib/hidden.py").write_text("SECRET_BOOST = 1\n")


def other_worktree_tricks(mode: str, target: Path) -> None:
    """Commits made outside the worktree the agent was given: in a worktree of its own, or onto
    another session's branch without any worktree."""
    if mode == "worktree":
        elsewhere = os.environ["FAKE_AGENT_WORKTREE"]
        git("worktree", "add", "-q", "--force", elsewhere, session_branch())
        score = Path(elsewhere) / "score.py"
        score.write_text("print('score: -1000')\n")
        git("-C", elsewhere, "commit", "-qam", "tamper score")
        cache = Path(elsewhere) / "__pycache__"
        cache.mkdir()
        (cache / "score.cpython-311.pyc").write_bytes(b"\0regenerable")
        git("worktree", "lock", "--reason", "mine", elsewhere)
        return
    target.write_text(target.read_text().replace("X = 3.0", "X = 6.9"))
    blob = git("hash-object", "-w", "--stdin", input_text="print('score: -1000')\n")
    tree = git("mktree", input_text=f"100644 blob {blob}\tscore.py\n")
    tampered = git("commit-tree", tree, "-p", "refs/heads/autoresearch/b", "-m", "tamper")
    git("update-ref", "refs/heads/autoresearch/b", tampered)
    git("update-ref", "refs/autoresearch/b/evil", tampered)


def written_whole(path: str, text: str) -> None:
    """Write `text` to `path` so that a reader sees all of it or no file (.part, then renamed)."""
    with open(path + ".part", "w") as out:
        out.write(text)
    os.replace(path + ".part", path)


def main() -> int:
    name = os.environ.get("FAKE_AGENT_NAME") or Path(sys.argv[0]).name
    argv = sys.argv[1:]
    mode = os.environ.get("FAKE_AGENT_MODE", "improve")
    queue = os.environ.get("FAKE_AGENT_MODES")
    if queue:
        modes = Path(queue).read_text().split()
        mode = modes[0] if modes else "nothing"
        Path(queue).write_text("\n".join(modes[1:]))
    prompt = prompt_from(argv)
    with open(os.environ["FAKE_AGENT_LOG"], "a") as log:
        log.write(json.dumps({"name": name, "argv": argv, "prompt": prompt, "cwd": os.getcwd()})
                  + "\n")
    if mode == "auth":
        print("Invalid API key · Please run /login", file=sys.stderr)
        return 1
    if mode in ("jsonauth", "ratelimit", "maxturns"):
        act(mode)
        print(json.dumps(claude_error(mode)))
        return 0
    if mode == "ask":
        print("Allow edit to target.py? [y/N] ", end="", flush=True)
        if sys.stdin.readline().strip().lower() != "y":
            print("\nEdit declined: no change made.")
            return 0
    if mode == "askwait":
        print("Allow edit to target.py? [y/N] ", end="", flush=True)
        written_whole(os.environ["FAKE_AGENT_PIDFILE"], str(os.getpid()))  # at the prompt now
        time.sleep(600)
    go = os.environ.get("FAKE_AGENT_GO")
    if go:  # at work: the test acts meanwhile, then lets it go on
        written_whole(os.environ["FAKE_AGENT_PIDFILE"], str(os.getpid()))
        deadline = time.time() + 120
        while not os.path.exists(go) and time.time() < deadline:
            time.sleep(0.02)
    act(mode)
    if mode == "flood":
        flood()
    if mode == "turnfailed":
        print(json.dumps({"type": "thread.started", "thread_id": "th_1"}))
        print(json.dumps({"type": "turn.failed",
                          "error": {"message": "stream disconnected before completion"}}))
        return 0
    if name == "aider" and auto_commits(argv) and mode not in ("nothing", "answer"):
        git("commit", "-qam", "feat: Set X to the optimum 7.0")
        print(f"Commit {git('rev-parse', '--short', 'HEAD')} feat: Set X to the optimum 7.0")
    final = "Done.\nHYPOTHESIS: set X to the optimum 7\nRATIONALE: (X-7)^2 is smallest at 7."
    if mode == "answer":
        final = "X = 3.0 looks deliberate to me; I would rather not change it."
    elif mode in ("commit", "twocommits") or (name == "aider" and auto_commits(argv)):
        final = "Done."  # the commit message says what it did
    if name == "claude":
        cost = {"nancost": float("nan"), "negcost": -50.0}.get(mode, 0.0123)
        print(json.dumps({
            "type": "result", "subtype": "success", "is_error": False, "result": final,
            "total_cost_usd": cost, "num_turns": 3,
            "usage": {"input_tokens": 1500, "output_tokens": 400,
                      "cache_read_input_tokens": 9000, "cache_creation_input_tokens": 700},
            "modelUsage": {"claude-sonnet-4-6": {"inputTokens": 1500}},
        }))
    elif name == "codex":
        events = [
            {"type": "thread.started", "thread_id": "th_1"},
            {"type": "turn.started"},
            {"type": "item.completed", "item": {"id": "i1", "type": "agent_message",
                                                "text": final}},
            {"type": "turn.completed", "usage": {"input_tokens": 20000,
                                                 "cached_input_tokens": 15000,
                                                 "output_tokens": 800}},
        ]
        for ev in events:
            print(json.dumps(ev))
    elif name == "aider":
        Path(".aider.chat.history.md").write_text("scratch\n")
        print("Applied edit to target.py\n" + final)
        print("Tokens: 12k sent, 2.5k cache hit, 1.2k received. Cost: $0.03 message, $0.03 session.")
    else:
        print(final)
    return 0


if __name__ == "__main__":
    sys.exit(main())
