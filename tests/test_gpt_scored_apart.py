"""The GPT template's score.py: train.py runs in a process of its own, the score is computed apart.

Before it, train.py called the evaluation and printed val_bpb itself, so an edit of train.py
could print a number it made up, patch the evaluation in its own process, or print a small
peak memory past the guard. Under score.py the engine reads only score.py's summary: the model
train.py hands over (an exported graph) is scored by prepare.py's code in score.py's process.
These run score.py on small stand-ins for train.py that do each of those things.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_gpt_workload import (  # noqa: F401  (workload: a fixture)
    SMALL_VOCAB,
    TEMPLATE,
    load_prepare,
    workload,
    write_corpus,
)

torch = pytest.importorskip("torch")

# A bigram model whose table is all zeros: every prediction is uniform, so its bpb is known.
STAND_IN = '''
import sys
sys.dont_write_bytecode = True
import prepare
import torch


class Bigram(torch.nn.Module):
    def __init__(self, vocab):
        super().__init__()
        self.table = torch.nn.Parameter(torch.zeros(vocab, vocab))

    def forward(self, x):
        return self.table[x]


class Peeking(Bigram):
    def forward(self, x):  # reads the next token: its own target
        return 20.0 * self.table[torch.cat([x[:, 1:], x[:, -1:]], dim=1)] + 1


model = Bigram(prepare.prepare(verbose=False).tokenizer.vocab_size)
'''


def score(tmp_path: Path, env: dict[str, str], body: str, name: str = "train.py",
          ) -> subprocess.CompletedProcess[str]:
    """Run `score.py train.py` in a project holding the template's prepare.py and score.py."""
    project = tmp_path / "project"
    project.mkdir(exist_ok=True)
    for fixed in ("prepare.py", "score.py"):
        shutil.copy(TEMPLATE / fixed, project / fixed)
    (project / name).write_text(STAND_IN + body, encoding="utf-8")
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("AUTORESEARCH_")}
    full_env.update(env)
    return subprocess.run([sys.executable, "score.py", name], cwd=project, env=full_env,
                          capture_output=True, text=True, encoding="utf-8", timeout=180)


def refused(result: subprocess.CompletedProcess[str], said: str) -> None:
    """score.py ended with status 1, saying `said`, and printed no summary."""
    assert result.returncode == 1, result.stdout + result.stderr
    assert said in result.stdout + result.stderr
    assert "\nval_bpb:" not in result.stdout


def uniform_bpb(env: dict[str, str], split: str) -> float:
    """What the all-zeros bigram scores, computed here in-process by prepare.evaluate_bpb."""
    prepare = load_prepare(env)
    vocab = prepare.prepare(verbose=False).tokenizer.vocab_size

    class Uniform(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.table = torch.nn.Parameter(torch.zeros(vocab, vocab))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.table[x]

    return float(prepare.evaluate_bpb(Uniform(), split, batch_size=4))


FORGERIES = '''
def zero(*args, **kwargs):
    return 0.0
prepare.evaluate_bpb = prepare.score_split = prepare.bits_per_byte = zero  # in this process
prepare.EVAL_BYTES = 10
print("val_bpb: 0.001")
print("\\x1b[0mval_bpb: 0.002")  # a terminal code before the name
print("x\\u2028val_bpb: 0.003")  # a line break of Unicode's, mid-line
print("x\\rval_bpb: 0.004", flush=True)
sys.stdout.buffer.write(b"\\xff\\xfe val_bpb: 0.005\\n")  # not UTF-8
print("test_bpb: 0.001")
print("peak_vram_mb: 1")
print("num_params_M: 99")
print("train_wall_seconds: 0.5")
print("num_steps: 7")
print("---")
print(f"val_bpb: {prepare.evaluate_bpb(model, 'val')}")
prepare.hand_over(model, 4)
'''


def test_what_train_py_prints_or_patches_does_not_reach_the_score(
    workload: dict[str, str], tmp_path: Path  # noqa: F811
) -> None:
    from autoresearch.metrics import parse_metrics, printed_values

    result = score(tmp_path, workload, FORGERIES)
    assert result.returncode == 0, result.stdout + result.stderr
    metrics = parse_metrics(result.stdout, "kv")
    # The engine reads the kv format this way: every value of val_bpb it can see is score.py's.
    assert printed_values(result.stdout, "kv", "val_bpb") == [metrics["val_bpb"]]
    assert metrics["val_bpb"] == pytest.approx(uniform_bpb(workload, "val"), rel=1e-5)
    assert metrics["test_bpb"] == pytest.approx(uniform_bpb(workload, "test"), rel=1e-5)
    vocab = load_prepare(workload).prepare(verbose=False).tokenizer.vocab_size
    assert metrics["num_params_M"] == pytest.approx(vocab * vocab / 1e6)
    assert metrics["peak_vram_mb"] > 50  # the OS's figure for a process that imported torch
    assert metrics["train_wall_seconds"] > 0.5
    assert metrics["num_steps"] == 7  # what score.py does not compute is passed on
    assert "train.py| peak_vram_mb: 1" in result.stdout  # shown, not read


def test_a_model_that_reads_its_targets_is_refused_apart(
    workload: dict[str, str], tmp_path: Path  # noqa: F811
) -> None:
    body = ("model = Peeking(model.table.shape[0])\ntorch.nn.init.normal_(model.table)\n"
            "prepare.hand_over(model, 4)\n")
    result = score(tmp_path, workload, body)
    assert result.returncode != 0
    assert "not causal" in result.stdout + result.stderr
    assert "val_bpb" not in result.stdout.replace("train.py| ", "")


# Leaks while scored (its first calls), then turns causal for the causality check that follows.
STATEFUL = '''
class Counting(Peeking):
    def __init__(self, vocab):
        super().__init__(vocab)
        self.register_buffer("calls", torch.zeros(()))

    def forward(self, x):
        self.calls += 1
        peek = (self.calls < 3).float()
        return peek * Peeking.forward(self, x) + (1 - peek) * self.table[x]


model = Counting(model.table.shape[0])
torch.nn.init.normal_(model.table)
prepare.hand_over(model, 4)
'''


def test_a_model_with_a_memory_across_calls_is_refused(
    workload: dict[str, str], tmp_path: Path  # noqa: F811
) -> None:
    result = score(tmp_path, workload, STATEFUL)
    refused(result, "changes its own state when called")


# Written where score.py sits while train.py runs: modules score.py imports later (sympy as
# torch.export.load imports it, numpy had it been late) and a .pyc claiming to be prepare.py's.
PLANTS = '''
prepare.hand_over(model, 4)  # first: its own lazy imports would find the plants too
import importlib.util, pathlib, py_compile
rigged = "import sys\\nprint('val_bpb: 0.001', flush=True)\\nsys.exit(0)\\n"
for name in ("sympy.py", "numpy.py", "torch.py", "sitecustomize.py"):
    pathlib.Path(name).write_text(rigged)
source = pathlib.Path("prepare.py")
pyc = pathlib.Path(importlib.util.cache_from_source(str(source.resolve())))
pyc.parent.mkdir(exist_ok=True)
fake = pathlib.Path("fake_prepare.py")
fake.write_text(rigged)
py_compile.compile(str(fake), cfile=str(pyc))
data = bytearray(pyc.read_bytes())  # claim prepare.py's mtime and size
stat = source.stat()
data[8:12] = int(stat.st_mtime).to_bytes(4, "little")
data[12:16] = (stat.st_size & 0xFFFFFFFF).to_bytes(4, "little")
pyc.write_bytes(bytes(data))
'''


def test_modules_train_py_writes_beside_score_py_are_not_imported(
    workload: dict[str, str], tmp_path: Path  # noqa: F811
) -> None:
    from autoresearch.metrics import parse_metrics

    result = score(tmp_path, workload, PLANTS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "project" / "sympy.py").is_file()  # the plants were there
    assert parse_metrics(result.stdout, "kv")["val_bpb"] == pytest.approx(
        uniform_bpb(workload, "val"), rel=1e-5)


def test_a_script_that_hands_nothing_over_is_a_failure_that_says_why(
    workload: dict[str, str], tmp_path: Path  # noqa: F811
) -> None:
    result = score(tmp_path, workload, 'print("val_bpb: 0.1")\n')
    assert result.returncode == 1
    assert "ended without handing its model over" in result.stdout + result.stderr
    assert "prepare.hand_over(model)" in result.stdout + result.stderr


def test_the_training_script_s_exit_status_and_signal_are_score_py_s(
    workload: dict[str, str], tmp_path: Path  # noqa: F811
) -> None:
    assert score(tmp_path, workload, "prepare.hand_over(model, 4)\nsys.exit(3)\n").returncode == 3
    killed = score(tmp_path, workload, "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n")
    assert killed.returncode == -signal.SIGKILL
    assert "killed by signal 9" in killed.stdout


def test_a_broken_model_is_a_failure_not_a_nan_score(
    workload: dict[str, str], tmp_path: Path  # noqa: F811
) -> None:
    body = 'model.table.data.fill_(float("nan"))\nprepare.hand_over(model, 4)\n'
    result = score(tmp_path, workload, body)
    assert result.returncode == 1
    assert "val_bpb is nan" in result.stdout + result.stderr
    assert "\nval_bpb:" not in result.stdout


def test_train_py_alone_still_scores_itself(
    workload: dict[str, str], tmp_path: Path  # noqa: F811
) -> None:
    # Outside a session (python train.py), hand_over saves nothing and says so.
    body = "print('handed over:', prepare.hand_over(model, 4))\n"
    project = tmp_path / "alone"
    project.mkdir()
    shutil.copy(TEMPLATE / "prepare.py", project / "prepare.py")
    (project / "train.py").write_text(STAND_IN + body, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTORESEARCH_")}
    result = subprocess.run([sys.executable, "train.py"], cwd=project, env={**env, **workload},
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "handed over: False" in result.stdout


# --- a second reviewer's attacks on score.py itself ------------------------------------------

PICKLED = '''
prepare.hand_over(model, 4)
import io, json, os, zipfile
path = os.environ["AUTORESEARCH_MODEL_FILE"]
class Payload:  # unpickling it rigs score.py's evaluation
    def __reduce__(self):
        return (eval, ("(__import__('sys').modules['prepare'].__dict__.update("
                       "bits_per_byte=lambda n, b: 0.0123), "
                       "__import__('torch').nn.Parameter(__import__('torch').zeros(1)))[1]",))
buffer = io.BytesIO()
torch.save(Payload(), buffer)
with zipfile.ZipFile(path) as archive:
    items = {name: archive.read(name) for name in archive.namelist()}
config_name = next(n for n in items if n.endswith("model_weights_config.json"))
config = json.loads(items[config_name])
config["config"]["table"]["use_pickle"] = True
items[config_name] = json.dumps(config).encode()
items[next(n for n in items if n.endswith("weights/weight_0"))] = buffer.getvalue()
with zipfile.ZipFile(path, "w") as archive:
    for name, data in items.items():
        archive.writestr(name, data)
'''


# torch.export.load picks a constant's format by its file name (opaque_obj_* is unpickled);
# torch 2.13 happens to fail on this entry's missing tensor metadata first, another version
# may not: score.py refuses it before torch reads the archive.
OPAQUE = PICKLED.split("config_name = ")[0] + '''
import pickle
config_name = next(n for n in items if n.endswith("model_constants_config.json"))
prefix = config_name.rsplit("model_constants_config.json", 1)[0]
config = json.loads(items[config_name])
config["config"]["rigged"] = {"path_name": "opaque_obj_0", "is_param": False,
                              "use_pickle": False, "tensor_meta": None}
items[config_name] = json.dumps(config).encode()
items[prefix + "opaque_obj_0"] = pickle.dumps(Payload())
with zipfile.ZipFile(path, "w") as archive:
    for name, data in items.items():
        archive.writestr(name, data)
'''


@pytest.mark.parametrize(("body", "said"), [
    (PICKLED, "holds pickled entries (table)"),
    (OPAQUE, "pickled entries (rigged)"),
], ids=["use_pickle", "opaque-object"])
def test_an_archive_that_asks_for_unpickling_is_refused(
    workload: dict[str, str], tmp_path: Path, body: str, said: str  # noqa: F811
) -> None:
    result = score(tmp_path, workload, body)
    refused(result, said)


# Peeks one token ahead everywhere but where the fixed probe looks (its cut points are in
# prepare.py for anyone to read), or only in batches that do not start as the probe's does.
AROUND_THE_PROBE = {
    "fixed-cuts": '''
class Masked(Bigram):
    def __init__(self, vocab):
        super().__init__(vocab)
        mask = torch.ones(16, prepare.MAX_SEQ_LEN, 1)
        mask[:, -1] = 0
        for row, p in enumerate(prepare.causal_cuts(prepare.MAX_SEQ_LEN, 16)):
            if p >= 1:
                mask[row, p - 1] = 0
        self.register_buffer("mask", mask)

    def forward(self, x):
        ahead = torch.cat([x[:, 1:], x[:, -1:]], dim=1)
        one_hot = torch.nn.functional.one_hot(ahead, self.table.shape[0]).float()
        return self.table[x] + 30.0 * one_hot * self.mask
model = Masked(model.table.shape[0])
prepare.hand_over(model, 16)
''',
    "probe-looks": '''
BOS = prepare.prepare(verbose=False).tokenizer.bos_id
class Gated(Bigram):
    def forward(self, x):
        ahead = torch.cat([x[:, 1:], x[:, -1:]], dim=1)
        one_hot = torch.nn.functional.one_hot(ahead, self.table.shape[0]).float()
        return self.table[x] + (x[0, 0] != BOS).float() * 30.0 * one_hot
model = Gated(model.table.shape[0])
prepare.hand_over(model, 16)
''',
}


@pytest.fixture(scope="module")
def scored_batches(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A workload whose evaluation spans several batches of 16 rows, as the template's does
    (the default one scores a batch and a short row)."""
    base = tmp_path_factory.mktemp("gpt_batches")
    env = {"AUTORESEARCH_DATA": str(write_corpus(base / "corpus", documents=2000)),
           "AUTORESEARCH_CACHE": str(base / "cache"), "AUTORESEARCH_VOCAB_SIZE": SMALL_VOCAB,
           "AUTORESEARCH_EVAL_BYTES": "30000", "AUTORESEARCH_DEVICE": "cpu"}
    built_in(env)
    return env


def built_in(env: dict[str, str]) -> None:
    """Build the data cache where `env` says (prepare reads AUTORESEARCH_CACHE when called)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AUTORESEARCH_CACHE", env["AUTORESEARCH_CACHE"])
        load_prepare(env).prepare(verbose=False)


@pytest.mark.parametrize("edit", AROUND_THE_PROBE, ids=list(AROUND_THE_PROBE))
def test_a_model_that_peeks_where_the_fixed_probe_does_not_look_is_refused(
    scored_batches: dict[str, str], tmp_path: Path, edit: str
) -> None:
    result = score(tmp_path, scored_batches, AROUND_THE_PROBE[edit])
    refused(result, "not causal: in a scored batch")


# A daemon that writes a score into score.py's own output once score.py has printed its own.
DAEMON = '''
import os, signal, time
prepare.hand_over(model, 4)
parent = os.getppid()
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        out = os.open(f"/proc/{parent}/fd/1", os.O_WRONLY)
        for fd in range(3):
            os.close(fd)
        signal.signal(signal.SIGTERM, lambda *_: (os.write(out, b"val_bpb: 0.0123\\n"), os._exit(0)))
        while os.path.exists(f"/proc/{parent}"):
            time.sleep(0.01)
        os.write(out, b"val_bpb: 0.0123\\n")
        os._exit(0)
    os._exit(0)
os.wait()
'''


def test_a_process_train_py_leaves_behind_is_ended_before_the_scoring(
    workload: dict[str, str], tmp_path: Path  # noqa: F811
) -> None:
    from autoresearch.metrics import parse_metrics

    result = score(tmp_path, workload, DAEMON)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "process(es) train.py left running were ended" in result.stdout
    assert parse_metrics(result.stdout, "kv")["val_bpb"] == pytest.approx(
        uniform_bpb(workload, "val"), rel=1e-5)


# Trains in a worker it never waits for, so that the worker's memory is not its own.
UNREAPED = '''
import os, numpy
read, write = os.pipe()
if os.fork() == 0:
    os.close(read)
    big = numpy.ones(600 * 2**20 // 8)  # 600 MB touched
    del big
    prepare.hand_over(model, 4)
    os._exit(0)
os.close(write)
os.read(read, 1)
os._exit(0)
'''


def test_memory_of_a_worker_train_py_never_waited_for_counts(
    workload: dict[str, str], tmp_path: Path  # noqa: F811
) -> None:
    from autoresearch.metrics import parse_metrics

    result = score(tmp_path, workload, UNREAPED)
    assert result.returncode == 0, result.stdout + result.stderr
    assert parse_metrics(result.stdout, "kv")["peak_vram_mb"] > 600


# Rewrites the val and test splits and their hashes in meta.json: a cache that checks itself.
POISON = '''
import hashlib, json, numpy
prepared = prepare.prepare(verbose=False)
meta = json.loads((prepared.directory / "meta.json").read_text())
for split in ("val", "test"):
    tokens = numpy.full(20000, 7, dtype=numpy.uint16)
    numpy.save(prepared.directory / f"{split}.npy", tokens)
    data = (prepared.directory / f"{split}.npy").read_bytes()
    meta["artifacts"][f"{split}.npy"] = {"bytes": len(data),
                                         "sha256": hashlib.sha256(data).hexdigest()}
(prepared.directory / "meta.json").write_text(json.dumps(meta))
with torch.no_grad():
    model.table[:, 7] = 30.0
prepare.hand_over(model, 4)
'''


def test_a_data_cache_rewritten_while_train_py_runs_is_refused(
    workload: dict[str, str], tmp_path: Path  # noqa: F811
) -> None:
    env = {**workload, "AUTORESEARCH_CACHE": str(tmp_path / "cache")}
    built_in(env)  # before the run, as `make demo` and `init --template gpt` do
    result = score(tmp_path, env, POISON)
    refused(result, "meta.json changed while train.py ran")


# Forks short-lived daemons, which come back to score.py (the subreaper) and die there: each
# child of a small forker leaves a grandchild in a session of its own and exits (a child of
# train.py's own that died would stay train.py's zombie, which score.py can neither see nor
# reap; and the forker is small because forking train.py, torch loaded, takes a tenth of a
# second each). Then waits until every daemon is dead and reaped, or a minute has passed, and
# counts the dead left unreaped.
FORK_LOOP = '''
import os, subprocess, time
FORKER = """
import os
for _ in range(300):
    child = os.fork()
    if child == 0:
        daemon = os.fork()
        if daemon == 0:
            os.setsid()
            os._exit(0)
        print(daemon, flush=True)
        os._exit(0)
    os.waitpid(child, 0)
"""
forked = subprocess.run([sys.executable, "-c", FORKER], capture_output=True, text=True,
                        check=True)
daemons = [int(pid) for pid in forked.stdout.split()]


def state(pid):
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


deadline = time.monotonic() + 60
while True:
    states = [state(pid) for pid in daemons]
    if all(s == "gone" for s in states) or time.monotonic() > deadline:
        break
    time.sleep(0.1)
print("daemons:", len(daemons), "zombies of score.py:", states.count("Z"), flush=True)
prepare.hand_over(model, 4)
'''


def test_orphans_that_die_while_train_py_runs_are_reaped_at_once(
    workload: dict[str, str], tmp_path: Path  # noqa: F811
) -> None:
    """Unreaped, each would hold a pid until train.py ends: a fork loop fills the machine's
    process table long before (32,000 zombies in a reviewer's run)."""
    result = score(tmp_path, workload, FORK_LOOP)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "daemons: 300 zombies of score.py: 0" in result.stdout, result.stdout


# Leaves a daemon in a session of its own, and says "training" only once the daemon's pid is on
# disk (written whole, then renamed: on a loaded machine the test read it before it was there).
STOPPED = '''
import os, time
pidfile = os.environ["DAEMON_PIDFILE"]
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        with open(pidfile + ".part", "w") as out:
            out.write(str(os.getpid()))
        os.replace(pidfile + ".part", pidfile)
        time.sleep(300)
    os._exit(0)
while not os.path.exists(pidfile):
    time.sleep(0.01)
print("training", flush=True)
time.sleep(300)
'''


def test_a_stopped_score_py_ends_train_py_and_its_daemons_and_removes_its_scratch(
    workload: dict[str, str], tmp_path: Path  # noqa: F811
) -> None:
    """The harness stops a run with SIGTERM (its timeout, or the session's stop); score.py's
    cleanup ran only on a normal end, so train.py's daemons passed on to the orchestrator and
    the scratch directory (an exported model, once handed over) stayed in /tmp."""
    project = tmp_path / "project"
    project.mkdir()
    for fixed in ("prepare.py", "score.py"):
        shutil.copy(TEMPLATE / fixed, project / fixed)
    (project / "train.py").write_text(STAND_IN + STOPPED, encoding="utf-8")
    scratch_root = tmp_path / "tmp"
    scratch_root.mkdir()
    stale = scratch_root / "autoresearch-score-abcd"  # its lock, held by no process
    stale.mkdir()
    (stale / "lock").touch()
    (stale / "model.pt2").write_bytes(b"left by a killed score.py")
    live = scratch_root / "autoresearch-score-efgh"  # a live score.py's (in another container,
    live.mkdir()  # say, sharing /tmp: its pid means nothing here, its lock does)
    (live / "lock").touch()
    odd = scratch_root / "autoresearch-score-99999999999999999999-\u00b2"  # no lock: not one
    odd.mkdir()
    kept = {live.name, odd.name}
    holder = os.open(live / "lock", os.O_RDONLY)
    fcntl.flock(holder, fcntl.LOCK_EX)
    pidfile = tmp_path / "daemon.pid"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTORESEARCH_")}
    env.update(workload, TMPDIR=str(scratch_root), DAEMON_PIDFILE=str(pidfile))
    proc = subprocess.Popen([sys.executable, "score.py", "train.py"], cwd=project, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if "training" in line:
                break
        daemon = int(pidfile.read_text())
        assert not stale.exists()  # a killed score.py's scratch: removed by the next one
        mine = [p for p in scratch_root.iterdir() if p.name not in kept]
        assert len(mine) == 1 and (mine[0] / "lock").exists(), mine
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=30)
    finally:
        os.close(holder)
        if proc.poll() is None:
            proc.kill()
        with_daemon = pidfile.exists() and int(pidfile.read_text())
        if with_daemon:
            with contextlib.suppress(ProcessLookupError):
                os.kill(with_daemon, signal.SIGKILL)
    assert proc.returncode == 128 + signal.SIGTERM, rest
    assert "process(es) train.py left running were ended" in rest
    assert not Path(f"/proc/{daemon}").exists() or \
        Path(f"/proc/{daemon}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    assert {p.name for p in scratch_root.iterdir()} == kept


# Ends at once, leaving a process that stops score.py as soon as train.py is gone (so the stop
# lands in score.py's cleanup, or just before it) and then stays on as a daemon. Its pid is on
# disk before train.py ends, and a second file says the stop was sent.
STOPPED_IN_CLEANUP = '''
import os, signal, time
score_py, me = os.getppid(), os.getpid()
pidfile = os.environ["DAEMON_PIDFILE"]


def written_whole(path, text):
    with open(path + ".part", "w") as out:
        out.write(text)
    os.replace(path + ".part", path)


if os.fork() == 0:
    os.setsid()
    written_whole(pidfile, str(os.getpid()))
    def state():
        try:
            return open(f"/proc/{me}/stat").read().rsplit(")", 1)[1].split()[0]
        except OSError:
            return "gone"
    while state() not in ("Z", "gone"):
        time.sleep(0.0005)
    time.sleep(0.03)  # score.py's cleanup has begun (it waits up to 0.2 s for its reaper)
    os.kill(score_py, signal.SIGTERM)
    written_whole(pidfile + ".sent", "")
    time.sleep(300)
    os._exit(0)
while not os.path.exists(pidfile):
    time.sleep(0.01)
os._exit(0)
'''


def test_a_stop_as_train_py_ends_still_ends_what_it_left(
    workload: dict[str, str], tmp_path: Path  # noqa: F811
) -> None:
    """The stop comes just as train.py has ended: score.py exits as stopped (143), and the
    daemon train.py left is ended all the same. On a busy machine the cleanup may end the
    daemon before it sends the stop: then score.py ends as a train.py that handed nothing over
    does (1), and the daemon is ended all the same."""
    pidfile = tmp_path / "daemon.pid"
    result = score(tmp_path, {**workload, "DAEMON_PIDFILE": str(pidfile)}, STOPPED_IN_CLEANUP)
    daemon = int(pidfile.read_text())
    try:
        said = result.stdout + result.stderr
        assert not Path(f"/proc/{daemon}").exists(), "the daemon lives on"
        assert "process(es) train.py left running were ended" in said, said
        if Path(f"{pidfile}.sent").exists():  # the stop was sent: score.py ends as stopped
            assert result.returncode == 128 + signal.SIGTERM, said
        else:  # or it was cut short, sent or not
            assert result.returncode in (1, 128 + signal.SIGTERM), said
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(daemon, signal.SIGKILL)


def test_a_stop_during_score_py_s_cleanup_waits_for_its_end() -> None:
    """A SIGTERM that came while score.py cleaned up cut the cleanup short (its handler raised
    at once), and what train.py left lived on (a reviewer's reading of the code): during the
    cleanup it is held until the cleanup's end."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("score_under_test", TEMPLATE / "score.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    path, no_bytecode = list(sys.path), sys.dont_write_bytecode
    try:
        spec.loader.exec_module(module)
    finally:  # what score.py sets for the process it runs in
        sys.path[:], sys.dont_write_bytecode = path, no_bytecode
    stop = module.Stop
    with pytest.raises(SystemExit) as at_once:
        stop.on_signal(signal.SIGTERM, None)
    assert at_once.value.code == 128 + signal.SIGTERM
    stop.cleaning = True
    stop.on_signal(signal.SIGHUP, None)  # held: no exception mid-cleanup
    stop.on_signal(signal.SIGTERM, None)
    with pytest.raises(SystemExit) as after:
        stop.after_cleanup()
    assert after.value.code == 128 + signal.SIGHUP and not stop.cleaning
