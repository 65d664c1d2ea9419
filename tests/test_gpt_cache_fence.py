"""The GPT template's data cache fenced with `[verify] inputs`, as its autoresearch.toml says.

The cache is outside the repository, so protected does not cover it: a run rewrote val.npy and
meta.json (prepare.py's hash check then passes), scored, and put both back. The template's
config explains the `inputs` line that fences it (commented out: the path is only known once
prepare.py has built the cache); this checks that the line, filled in, loads, that honest use
of the cache leaves it as it was, and that the write-then-restore is seen.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest

from tests.test_gpt_workload import TEMPLATE, CausalModel, load_prepare, workload  # noqa: F401

np = pytest.importorskip("numpy")


def test_the_commented_inputs_line_fences_the_cache(
    workload: dict[str, str], tmp_path: Path  # noqa: F811
) -> None:
    from autoresearch.config import load_config
    from autoresearch.evaluation_inputs import EvaluationInputs

    env = {**workload, "AUTORESEARCH_CACHE": str(tmp_path / "cache")}
    directory = load_prepare(env).prepare(verbose=False).directory  # what `cache:` prints

    text = (TEMPLATE / "autoresearch.toml").read_text()
    line = re.search(r"^# (inputs = \[\"[^\"]+\"\])$", text, re.M)
    assert line, "the template's config explains no `inputs` line"
    enabled = re.sub(r'"[^"]+"', json.dumps(str(directory)), line.group(1))
    config_text = text.replace(line.group(0), enabled, 1)
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "autoresearch.toml").write_text(config_text)
    config = load_config(repo / "autoresearch.toml")
    assert config.verify.inputs == [str(directory)]
    inputs = EvaluationInputs.collect(repo, config.verify.inputs)
    assert {p.name for p in inputs._listing()} >= {"val.npy", "meta.json", "train.npy"}

    # An honest run reads the cache: loading, training batches and scoring write nothing.
    prepare = load_prepare(env)
    vocab = prepare.prepare(verbose=False).tokenizer.vocab_size
    next(prepare.make_dataloader(4, 16, prepare.DEVICE))
    prepare.evaluate_bpb(CausalModel(vocab), "val", batch_size=4)
    assert inputs.changed() == []

    # The reviewer's cache poisoning: val.npy and its meta.json rewritten, then put back.
    val, meta = directory / "val.npy", directory / "meta.json"
    original_val, original_meta = val.read_bytes(), meta.read_bytes()
    np.save(val, np.zeros(1000, dtype=np.uint16))
    record = json.loads(original_meta)
    record["artifacts"]["val.npy"] = {"bytes": val.stat().st_size,
                                      "sha256": hashlib.sha256(val.read_bytes()).hexdigest()}
    meta.write_text(json.dumps(record))
    val.write_bytes(original_val)
    meta.write_bytes(original_meta)
    changed = inputs.changed()
    assert f"{val} (written)" in changed and f"{meta} (written)" in changed
