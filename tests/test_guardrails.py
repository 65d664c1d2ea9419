"""Guardrails refuse what may not change, before anything is committed."""

from __future__ import annotations

import os
from pathlib import Path

from autoresearch.globs import matches, select
from autoresearch.guardrails import (
    Rules,
    apply_edits,
    check_changed_paths,
    check_edits,
    hash_files,
    protected_changes,
)

RULES = Rules(scope=["src/**/*.py", "train.py"], protected=["src/eval/*", "autoresearch.toml"])


def test_globs_follow_git_style_semantics() -> None:
    assert matches("train.py", ["train.py"])
    assert matches("src/a/b/c.py", ["src/**/*.py"])
    assert matches("src/c.py", ["src/**/*.py"])
    assert not matches("src/a/c.txt", ["src/**/*.py"])
    assert matches("data/x/y.bin", ["data"])  # a directory covers what is below it
    assert not matches("lib/x.py", ["*.py"])  # * stays within one segment
    assert select(["b.py", "a.py", "c.txt"], ["*.py"]) == ["a.py", "b.py"]


def test_path_rules(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    edits: dict[str, str | None] = {
        "train.py": "ok",
        "src/model/net.py": "ok",
        "src/eval/score.py": "no",
        "../outside.py": "no",
        "/etc/passwd": "no",
        ".git/config": "no",
        "README.md": "no",
        "autoresearch.toml": "no",
    }
    problems = check_edits(tmp_path, edits, RULES)
    text = "\n".join(problems)
    assert not [p for p in problems if p.startswith(("train.py", "src/model/net.py"))]
    assert "src/eval/score.py: protected" in text
    assert "../outside.py: escapes the repository" in text
    assert "/etc/passwd: absolute" in text
    assert ".git/config" in text
    assert "README.md: outside the scope" in text
    assert len(problems) == 6


def test_symlinks_cannot_redirect_writes(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "secret.txt").write_text("x")
    os.symlink(tmp_path / "secret.txt", tmp_path / "src" / "link.py")
    os.symlink("/tmp", tmp_path / "src" / "outdir")
    problems = check_edits(tmp_path, {"src/link.py": "x", "src/outdir/a.py": "x"}, RULES)
    assert len(problems) == 2 and all("symlink" in p for p in problems)


def test_size_and_count_limits(tmp_path: Path) -> None:
    small = Rules(scope=["*.py"], protected=[], max_file_bytes=10, max_files=2)
    problems = check_edits(tmp_path, {"a.py": "x" * 11, "b.py": "", "c.py": ""}, small)
    assert any("3 files" in p for p in problems)
    assert any("exceeds 10" in p for p in problems)
    (tmp_path / "big.py").write_text("x" * 20)
    assert check_changed_paths(tmp_path, ["big.py"], small)


def test_apply_edits_and_protected_hashes(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("fixed")
    hashes = hash_files(tmp_path, ["keep.txt", "gone.txt"])
    apply_edits(tmp_path, {"src/new.py": "print(1)\n", "old.py": None})
    assert (tmp_path / "src/new.py").read_text() == "print(1)\n"
    assert protected_changes(tmp_path, hashes) == []
    (tmp_path / "keep.txt").write_text("tampered")
    (tmp_path / "gone.txt").write_text("appeared")
    assert protected_changes(tmp_path, hashes) == ["gone.txt", "keep.txt"]
