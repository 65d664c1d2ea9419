"""A fake coding-agent CLI, installed on PATH as `claude`, `codex`, `aider` and `myagent`.

It imitates each CLI's invocation and output format, and does what FAKE_AGENT_MODE says:
    improve    set X = 7.0 in target.py (the toy optimum)
    protected  edit the protected score.py
    outside    create notes.md (outside the scope)
    commit     set X = 6.9, then `git commit` (the harness must undo the commit)
    nothing    change nothing
    hang       start a child that ignores SIGTERM, then sleep (the timeout must kill both)
    auth       fail like an unauthenticated CLI
    repair     replace 'import missing_module' in target.py by 'import math'
With FAKE_AGENT_MODES naming a file of modes (one a line), each call takes the next line instead.
Every call appends {"argv": [...], "prompt": "..."} as a JSON line to FAKE_AGENT_LOG.
"""

from __future__ import annotations

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
    elif mode == "commit":
        target.write_text(target.read_text().replace("X = 3.0", "X = 6.9").replace(
            "X = 7.0", "X = 6.9"))
    elif mode == "protected":
        Path("score.py").write_text(Path("score.py").read_text() + "# tampered\n")
    elif mode == "outside":
        Path("notes.md").write_text("notes\n")
    elif mode == "repair":
        target.write_text(target.read_text().replace("import missing_module", "import math"))
    elif mode == "hang":
        child = subprocess.Popen([sys.executable, "-c", (
            "import signal, time, os, pathlib\n"
            "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
            f"pathlib.Path({os.environ['FAKE_AGENT_PIDFILE']!r}).write_text(str(os.getpid()))\n"
            "time.sleep(600)\n")])
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        target.write_text("X = 'half-written'\n")
        child.wait()
        time.sleep(600)
    if mode == "commit":
        env = {**os.environ, "GIT_AUTHOR_NAME": "a", "GIT_AUTHOR_EMAIL": "a@a",
               "GIT_COMMITTER_NAME": "a", "GIT_COMMITTER_EMAIL": "a@a"}
        subprocess.run(["git", "commit", "-qam", "agent commit"], env=env, check=True)


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
    act(mode)
    final = "Done.\nHYPOTHESIS: set X to the optimum 7\nRATIONALE: (X-7)^2 is smallest at 7."
    if name == "claude":
        print(json.dumps({
            "type": "result", "subtype": "success", "is_error": False, "result": final,
            "total_cost_usd": 0.0123, "num_turns": 3,
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
