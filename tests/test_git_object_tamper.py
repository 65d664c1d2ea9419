"""A run that swaps the evaluation inside git itself, not in the worktree: a `refs/replace/` ref
for the incumbent (git reads another commit wherever it is named), or the loose object of the
protected file's blob overwritten with another scorer (every commit still names the same id).

Either way, through the real CLI: the run is the candidate's crash, what it planted is put back
before any checkout reads it, the honest candidates after it are not blamed, the user's own
checkout and history read the real evaluation; and a repository whose object was rewritten
before the session is refused before anything is measured.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import zlib
from pathlib import Path

import pytest

from tests.conftest import git, run_cli, use_script
from tests.support.run_attacks import attack_then_two_honest, verdicts

FAKE_SCORE = 'print("score: 0.5")\n'

# Imported by the protected score.py: the candidate's code runs inside the verify command.
PLANT_REPLACE_REF = f"""X = 6.9
import subprocess
def _git(*args, data=None):
    return subprocess.run(["git", *args], input=data, capture_output=True, check=True).stdout
_head = _git("rev-parse", "HEAD").strip().decode()
_blob = _git("hash-object", "-w", "--stdin", data={FAKE_SCORE!r}.encode()).strip().decode()
_rows = []
for _line in _git("ls-tree", _head).decode().splitlines():
    _meta, _name = _line.split("\\t", 1)
    if _name == "score.py":
        _mode, _kind, _ = _meta.split()
        _meta = f"{{_mode}} {{_kind}} {{_blob}}"
    _rows.append(f"{{_meta}}\\t{{_name}}")
_tree = _git("mktree", data=("\\n".join(_rows) + "\\n").encode()).strip().decode()
_fake = _git("commit-tree", _tree, "-p", _head + "~1", "-m", "forged").strip().decode()
_git("replace", "-f", _head, _fake)
"""

# Overwrites the file holding score.py's blob, found without git, as an attacker would.
OVERWRITE_OBJECT = f"""X = 6.9
import hashlib, os, zlib
_real = open("score.py", "rb").read()
_oid = hashlib.sha1(b"blob %d\\0" % len(_real) + _real).hexdigest()
_link = open(".git").read().split("gitdir:", 1)[1].strip()
_common = os.path.normpath(os.path.join(_link, open(os.path.join(_link, "commondir")).read().strip()))
_path = os.path.join(_common, "objects", _oid[:2], _oid[2:])
_fake = {FAKE_SCORE!r}.encode()
os.chmod(_path, 0o644)
os.unlink(_path)
with open(_path, "wb") as _f:
    _f.write(zlib.compress(b"blob %d\\0" % len(_fake) + _fake))
"""


# The same, written in place at the same size (uncompressed zlib, padded), its mode and mtime
# set back: only the ctime tells.
REWRITE_IN_PLACE = OVERWRITE_OBJECT.split("os.chmod(_path")[0] + """_st = os.stat(_path)
for _pad in range(5000):
    _data = _fake + b"#" * _pad + b"\\n"
    _packed = zlib.compress(b"blob %d\\0" % len(_data) + _data, 0)
    if len(_packed) == _st.st_size:
        break
os.chmod(_path, 0o644)
with open(_path, "r+b") as _f:
    _f.write(_packed)
os.chmod(_path, _st.st_mode)
os.utime(_path, ns=(_st.st_atime_ns, _st.st_mtime_ns))
"""


def score_blob(repo: Path) -> str:
    return git(repo, "rev-parse", "HEAD:score.py")


@pytest.mark.parametrize("packed", [False, True])
def test_a_replace_ref_planted_by_a_run_is_its_crash_and_taken_away(toy_repo: Path,
                                                                     packed: bool) -> None:
    # Packed (`git pack-refs --all`), the ref is no file the control-file watch sees.
    real = (toy_repo / "score.py").read_text()
    attack = PLANT_REPLACE_REF + ('_git("pack-refs", "--all")\n' if packed else "")
    found = attack_then_two_honest(toy_repo, attack)
    assert "changed git's own files" in found[1][1] and "refs/replace" in found[1][1], found
    assert git(toy_repo, "replace", "-l") == ""  # put back: the user's git reads no forgery
    assert git(toy_repo, "show", "autoresearch/t:score.py") == real.strip()
    assert git(toy_repo, "status", "--porcelain", "--untracked-files=no") == ""


@pytest.mark.parametrize("attack", ["overwrite", "delete", "in place"])
def test_a_run_that_overwrites_the_protected_files_object_is_its_crash_and_it_is_put_back(
        toy_repo: Path, attack: str) -> None:
    real = (toy_repo / "score.py").read_bytes()
    oid = score_blob(toy_repo)
    change = {"overwrite": OVERWRITE_OBJECT, "in place": REWRITE_IN_PLACE,
              # the object file removed: the next checkout fails
              "delete": OVERWRITE_OBJECT.split("with open(_path")[0]}[attack]
    # Before the seal the honest candidates after it were the ones "modifying protected files".
    found = attack_then_two_honest(toy_repo, change)
    assert "changed git's stored copy of the protected file score.py (put back)" in found[1][1]
    stored = git(toy_repo, "cat-file", "blob", oid)
    assert stored == real.decode().strip()
    assert "score: 0.5" not in git(toy_repo, "show", "autoresearch/t:score.py")
    fsck = git(toy_repo, "fsck", "--no-dangling")
    assert "mismatch" not in fsck, fsck


def git_input(repo: Path, text: str, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, input=text, capture_output=True, text=True,
                          check=True).stdout.strip()


def overwrite_object(repo: Path, oid: str, content: bytes) -> None:
    path = repo / ".git" / "objects" / oid[:2] / oid[2:]
    os.chmod(path, 0o644)
    path.write_bytes(zlib.compress(b"blob %d\0" % len(content) + content))


def test_a_repository_whose_protected_object_was_rewritten_is_refused_before_any_run(
        toy_repo: Path) -> None:
    use_script(toy_repo, [{"hypothesis": "honest", "edits": {"target.py": "X = 6.5\n"}}])
    oid = score_blob(toy_repo)
    assert hashlib.sha1(b"blob %d\0" % len((toy_repo / "score.py").read_bytes())
                        + (toy_repo / "score.py").read_bytes()).hexdigest() == oid
    overwrite_object(toy_repo, oid, FAKE_SCORE.encode())
    result = run_cli(toy_repo, "run", "--tag", "t", "--iterations", "2")
    said = " ".join(result.stderr.split())
    assert result.returncode != 0, result.stdout + result.stderr
    assert "stored copy of the protected file score.py does not hold what its object id says" \
        in said, said
    assert "git fsck" in said and "Traceback" not in said, said
    ledger = toy_repo / ".autoresearch" / "ledger.db"
    assert not ledger.exists() or verdicts(toy_repo) == []


def test_a_replace_ref_there_before_the_session_does_not_change_what_is_measured(
        toy_repo: Path) -> None:
    # The harness reads the commits as they are (GIT_NO_REPLACE_OBJECTS): the baseline is the
    # real score.py's (X = 3.0: (3 - 7)² = 16), not the forged commit's 0.5.
    use_script(toy_repo, [])
    head = git(toy_repo, "rev-parse", "HEAD")
    fake_blob = git_input(toy_repo, FAKE_SCORE, "hash-object", "-w", "--stdin")
    listing = [line.replace(score_blob(toy_repo), fake_blob) if line.endswith("\tscore.py")
               else line for line in git(toy_repo, "ls-tree", head).splitlines()]
    tree = git_input(toy_repo, "\n".join(listing) + "\n", "mktree")
    fake = git(toy_repo, "commit-tree", tree, "-m", "forged")
    git(toy_repo, "replace", head, fake)
    result = run_cli(toy_repo, "run", "--tag", "t", "--iterations", "1")
    assert result.returncode == 0, result.stdout + result.stderr
    with sqlite3.connect(toy_repo / ".autoresearch" / "ledger.db") as conn:
        ((objective,),) = conn.execute("SELECT objective FROM experiments WHERE seq = 1")
    assert objective == 16.0
    assert git(toy_repo, "replace", "-l") == head  # the user's own replace ref is left alone


# Repoints the user's own replace ref of the incumbent (the baseline here) and packs it.
MOVE_USERS_REPLACE_REF = """X = 6.9
import subprocess
def _git(*args):
    return subprocess.run(["git", *args], capture_output=True, check=True).stdout.decode().strip()
_git("replace", "-f", _git("rev-parse", "HEAD~1"), _git("rev-parse", "HEAD"))
_git("pack-refs", "--all")
"""


def test_a_run_that_moves_a_replace_ref_the_user_had_is_its_crash_and_it_is_put_back(
        toy_repo: Path) -> None:
    use_script(toy_repo, [{"hypothesis": "move their replace ref",
                           "edits": {"target.py": MOVE_USERS_REPLACE_REF}}])
    base = git(toy_repo, "rev-parse", "HEAD")
    theirs = git(toy_repo, "commit-tree", git(toy_repo, "rev-parse", "HEAD^{tree}"), "-m", "x")
    git(toy_repo, "replace", base, theirs)  # the user's own, before the session, packed
    git(toy_repo, "pack-refs", "--all")
    result = run_cli(toy_repo, "run", "--tag", "t", "--iterations", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    found = verdicts(toy_repo)
    assert [r[0] for r in found] == ["keep", "crash"], found
    assert f"the replace ref refs/replace/{base} was added or moved (undone)" in found[1][1]
    assert git(toy_repo, "rev-parse", f"refs/replace/{base}") == theirs
