"""Screenshots of the dashboard over real sessions, for looking at (not a test).

    .venv/bin/python -m tests.views.screenshot_session [OUT_DIR]

1. Copies examples/noisy-bowl to a temporary directory, makes it a git repository and runs
   `autoresearch run -n 25` there (the offline `tune` proposer, ~10 s).
2. Runs the scripted `crowded` session of the browser tests: one wild outlier (X = 50 where
   everything else is 8-14) and a run of kept points with long hypotheses.
3. Serves the dashboard of each on 127.0.0.1, screenshots it with Playwright and Debian's
   chromium at 1400 and 820 px wide, and writes `autoresearch report`'s progress.png beside them.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.views.conftest import CROWDED_SCRIPT, ROOT, autoresearch, run_noisy_session, serve

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run"]
def bowl_session(work: Path) -> Path:
    repo = work / "bowl"
    shutil.copytree(ROOT / "examples" / "noisy-bowl", repo)
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "init"]):
        subprocess.run(["git", *args], cwd=repo, check=True, env={
            "GIT_AUTHOR_NAME": "a", "GIT_AUTHOR_EMAIL": "a@example.invalid", "PATH": "/usr/bin:/bin",
            "GIT_COMMITTER_NAME": "a", "GIT_COMMITTER_EMAIL": "a@example.invalid"})
    proc = autoresearch(repo, "run", "-n", "25", timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return repo


def shoot(repo: Path, out: Path, name: str) -> None:
    from playwright.sync_api import sync_playwright

    with serve(repo) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        for width in (1400, 820):
            page = browser.new_page(viewport={"width": width, "height": 1000})
            page.goto(url + "/")
            page.wait_for_selector("#live.on")
            page.wait_for_timeout(600)
            page.screenshot(path=str(out / f"{name}-{width}.png"), full_page=True)
            overflow = page.evaluate("document.documentElement.scrollWidth - innerWidth")
            print(f"{name} at {width} px: horizontal overflow {overflow} px")
            page.close()
        browser.close()
    proc = autoresearch(repo, "report", "--out", str(out / f"{name}-report"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    print(proc.stdout.strip())


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "test-artifacts/visual").resolve()
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        shoot(bowl_session(work), out, "bowl")
        shoot(run_noisy_session(work / "crowded", CROWDED_SCRIPT), out, "crowded")
    print(f"screenshots in {out}")


if __name__ == "__main__":
    main()
