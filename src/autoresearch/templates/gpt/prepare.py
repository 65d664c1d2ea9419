"""Data, tokenizer, dataloader and evaluation for the GPT workload. FIXED: never edited by the agent.

Everything that defines *what is measured* lives here, so that an experiment in train.py can only
change how well the model learns, never the yardstick:

- the corpus and its deterministic train / val / test split,
- the tokenizer (byte-level BPE trained here, or plain bytes),
- the constants: sequence length, default time budget, evaluation size,
- the dataloader, and `evaluate_bpb`, the objective.

In a session, score.py runs train.py in a process of its own and scores the model train.py
hands over (`hand_over`, below) with this file's evaluation, in score.py's process.

Run it once before the first experiment (train.py also calls `prepare()`, which is a no-op when
the cache is valid):

    python prepare.py                       # build or verify the cache, print a summary
    python prepare.py --check               # verify only; exit 1 if missing or corrupt
    python prepare.py --download-climbmix 4 --dest ~/data/climbmix   # needs a network

Environment (all optional; set them for every run, or edit the defaults below before a session):

    AUTORESEARCH_DATA         "stdlib" (default) or a directory of text files / parquet shards
    AUTORESEARCH_TOKENIZER    "bpe" (default) or "bytes"
    AUTORESEARCH_VOCAB_SIZE   BPE vocabulary size (default: 1024 on CPU, 8192 on CUDA)
    AUTORESEARCH_CACHE        cache root (default: ~/.cache/autoresearch/gpt)
    AUTORESEARCH_DEVICE       "cpu", "cuda", "cuda:1", ... (default: cuda when available)
    AUTORESEARCH_TIME_BUDGET  training seconds (default: 60 on CPU, 300 on CUDA)
    AUTORESEARCH_EVAL_BYTES   bytes of text scored per split (default: see eval_bytes_for)
    AUTORESEARCH_CLIMBMIX_URL where --download-climbmix fetches shards (default: CLIMBMIX_URL)

Only torch, numpy and the standard library are needed (pyarrow only to read parquet).
"""

from __future__ import annotations

import argparse
import codecs
import contextlib
import gzip
import hashlib
import heapq
import http.client
import json
import math
import os
import re
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def _usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _yield_threads_on_a_busy_cpu() -> None:
    """On a CPU busy with other work, make torch's threads wait by sleeping, not spinning.

    OpenMP threads spin at every barrier by default. With other processes on the same cores a
    spinning thread burns the time slice its partner needs to reach the barrier, and the run
    crawls: a 10 s run on this 2-core machine at load average 13 made 2 steps and took 87 s in
    all; with OMP_WAIT_POLICY=PASSIVE, 13 steps and 45 s. On a quiet machine spinning is the
    faster policy, so it is only changed when the 1-minute load average is at least one more
    than the usable cores (a session's own runs stay under that), and never over an explicit
    setting. It must be set before torch is imported.
    """
    if "OMP_WAIT_POLICY" in os.environ or not hasattr(os, "getloadavg"):
        return
    if os.getloadavg()[0] >= _usable_cores() + 1:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"


_yield_threads_on_a_busy_cpu()

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

# ---------------------------------------------------------------------------------------------
# Constants. Two profiles, because a 2-core CPU and an H100 differ by ~1000x in compute: the
# CPU profile is sized so that 60 s of training beats xz on the stdlib validation split.


@dataclass(frozen=True)
class Profile:
    seq_len: int  # context length used by the evaluation (and, by default, training)
    vocab_size: int  # BPE vocabulary size, including the one special token (BOS)
    time_budget: float  # default training seconds when AUTORESEARCH_TIME_BUDGET is unset
    eval_bytes: int  # bytes of text scored per split at the default budget (capped by the split)


PROFILES = {
    "cpu": Profile(seq_len=128, vocab_size=1024, time_budget=60.0, eval_bytes=2**19),
    "cuda": Profile(seq_len=2048, vocab_size=8192, time_budget=300.0, eval_bytes=2**26),
}

CACHE_FORMAT = 2  # bump when the on-disk layout changes; old caches are then rebuilt
SPLIT_SALT = b"autoresearch-gpt-split-v1"  # changing it changes every split: never do
VAL_PERCENT = 5  # share of documents (files, pieces of big files, parquet rows) in val
TEST_PERCENT = 5  # share in the held-out test split, never shown to the proposer
STORED_EVAL_BYTES = 2**26  # val/test are tokenized up to this many bytes (big corpora)
TOKENIZER_TRAIN_CHARS = 50_000_000  # BPE is trained on at most this much of the train split
# A text file of a user's directory larger than this is cut into pieces (at line ends) that
# are assigned to splits one by one: one big file would otherwise land whole in one split.
PIECE_BYTES = 2**16
# The stdlib corpora this file was measured on (docs/gpt-workload.md quotes figures for them).
# Another id is a different corpus (another Python release, or a patched stdlib): bpb figures
# are comparable only within one corpus id.
KNOWN_STDLIB_CORPORA = {"stdlib-py311-ab2106e403a937d0": "CPython 3.11.7"}
CLIMBMIX_URL = "https://huggingface.co/datasets/karpathy/climbmix-400b-shuffle/resolve/main"


def _env(name: str, default: str) -> str:
    value = os.environ.get(name, "").strip()
    return value or default


def _count_env(name: str, default: int, least: int) -> int:
    """A whole-number setting from the environment, at least `least`: said plainly when it is
    not one (`AUTORESEARCH_VOCAB_SIZE=abc` was a ValueError traceback in every run)."""
    text = _env(name, str(default))
    try:
        value = int(text)
    except ValueError:
        raise SystemExit(f"prepare: {name}={text!r} is not a whole number; unset it for the "
                         f"default ({default})") from None
    if value < least:
        raise SystemExit(f"prepare: {name}={value} is below {least}; unset it for the default "
                         f"({default})")
    return value


def detect_device() -> torch.device:
    """CUDA when available, else CPU; AUTORESEARCH_DEVICE overrides."""
    name = os.environ.get("AUTORESEARCH_DEVICE", "").strip()
    if name:
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


DEVICE = detect_device()
PROFILE = PROFILES["cuda" if DEVICE.type == "cuda" else "cpu"]
MAX_SEQ_LEN = PROFILE.seq_len
TIME_BUDGET = float(_env("AUTORESEARCH_TIME_BUDGET", str(PROFILE.time_budget)))
MIN_CPU_EVAL_BYTES = 2**16


def eval_bytes_for(budget: float) -> int:
    """Bytes of text scored per split: the evaluation's cost follows the budget on a CPU.

    The evaluation is not on the training clock, and on a busy CPU it slows down as much as
    training does, so a fixed size would dominate short runs (and their timeout). On CPU it
    scores the profile's 512 KiB at the default 60 s budget, proportionally less for a shorter
    budget (never under 64 KiB), never more; a 20 s run scores 170 KiB per split. On CUDA the
    profile's 64 MiB, whatever the budget. Comparable results share one budget anyway.
    """
    if DEVICE.type == "cuda":
        return PROFILE.eval_bytes
    share = min(1.0, max(0.0, budget) / PROFILE.time_budget)
    scaled = int(PROFILE.eval_bytes * share) // 1024 * 1024  # whole KiB
    return max(MIN_CPU_EVAL_BYTES, min(PROFILE.eval_bytes, scaled))


# At least 1 KiB: `AUTORESEARCH_EVAL_BYTES=0` scored about one token as the val_bpb.
EVAL_BYTES = _count_env("AUTORESEARCH_EVAL_BYTES", eval_bytes_for(TIME_BUDGET), 1024)
DATA = _env("AUTORESEARCH_DATA", "stdlib")
TOKENIZER = _env("AUTORESEARCH_TOKENIZER", "bpe")
VOCAB_SIZE = _count_env("AUTORESEARCH_VOCAB_SIZE", PROFILE.vocab_size, 256)  # the bytes, then merges
SPLITS = ("train", "val", "test")


def cache_root() -> Path:
    """Outside the repository by default, so that every worktree shares one cache."""
    return Path(_env("AUTORESEARCH_CACHE", "~/.cache/autoresearch/gpt")).expanduser()


# ---------------------------------------------------------------------------------------------
# The corpus: a sorted file list, each file fingerprinted, each document assigned to a split by
# a salted hash of its name. A document is a file, or one row of a parquet shard.


@dataclass(frozen=True)
class Corpus:
    kind: str  # "stdlib" or "dir"
    root: Path
    files: tuple[tuple[str, str], ...]  # (relative posix path, fingerprint), sorted by path
    corpus_id: str  # names the cache directory; changes whenever any file changes
    # Files read through gzip or a UTF-16/UTF-32 byte order mark rather than as they are.
    converted: frozenset[str] = frozenset()
    skipped: tuple[str, ...] = ()  # files of a user's directory left out as not text, sorted


def split_of(key: str) -> str:
    """Deterministic split of one document, stable across machines and file orderings."""
    digest = hashlib.sha256(SPLIT_SALT + b":" + key.encode("utf-8", "surrogateescape")).digest()
    bucket = int.from_bytes(digest[:8], "big") % 100
    if bucket < VAL_PERCENT:
        return "val"
    if bucket < VAL_PERCENT + TEST_PERCENT:
        return "test"
    return "train"


def _is_stdlib_source(rel: Path) -> bool:
    # Tests are excluded (they are large, repetitive and not what the library "is");
    # _sysconfigdata_* differs between builds of the same Python, which would change the hash.
    skip_dirs = {"test", "tests", "idle_test", "__pycache__", "site-packages", "dist-packages"}
    if any(part in skip_dirs or part.startswith("config-") for part in rel.parts[:-1]):
        return False
    name = rel.name
    return name.endswith(".py") and not name.startswith(("test_", "_sysconfigdata"))


def _list_stdlib() -> Corpus:
    root = Path(sysconfig.get_paths()["stdlib"]).resolve()
    files = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if path.is_file() and _is_stdlib_source(rel):
            files.append((rel.as_posix(), hashlib.sha256(path.read_bytes()).hexdigest()))
    files.sort()
    version = f"py{sys.version_info.major}{sys.version_info.minor}"
    listing = "".join(f"{name}\t{digest}\n" for name, digest in files).encode()
    return Corpus("stdlib", root, tuple(files), f"stdlib-{version}-{_short_hash(listing)}")


def _list_directory(root: Path) -> Corpus:
    if not root.is_dir():
        raise SystemExit(f"AUTORESEARCH_DATA={root}: not a directory (or use 'stdlib')")
    files, converted, skipped = [], set(), []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if not path.is_file() or any(part.startswith(".") for part in rel.parts):
            continue
        if path.suffix != ".parquet":
            head = _head(path)
            if _bom_codec(head) is None and b"\0" in head:
                skipped.append(rel.as_posix())
                continue
            if _is_gzip(path) or _bom_codec(head) is not None:
                converted.add(rel.as_posix())
        # Size and mtime, not a content hash: a user's corpus may be gigabytes, and this runs
        # at every start. Touching a file therefore rebuilds the cache, which is the safe side.
        stat = path.stat()
        files.append((rel.as_posix(), f"{stat.st_size}:{stat.st_mtime_ns}"))
    if not files:
        raise SystemExit(f"AUTORESEARCH_DATA={root}: no text or parquet files found"
                         + (f" ({_skipped_names(skipped)} are not text)" if skipped else ""))
    # surrogateescape: a file name that is not UTF-8 (`caf\xe9.txt`) is listed as its own bytes
    # (it was a UnicodeEncodeError, and every run crashed); a UTF-8 name encodes as before. A
    # gzipped or UTF-16 file is fingerprinted by its own size and mtime, like any other.
    listing = "".join(f"{name}\t{fp}\n" for name, fp in files).encode("utf-8", "surrogateescape")
    return Corpus("dir", root, tuple(files), f"dir-{_short_hash(listing)}",
                  frozenset(converted), tuple(skipped))


# A NUL byte in the first 8 KiB of a file's text marks it as binary, unless the text starts with
# a UTF-16 or UTF-32 byte order mark (UTF-16 puts a NUL beside every ASCII character). The
# UTF-32 marks come first: the little-endian one begins with UTF-16's.
HEAD_BYTES = 8192
_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
         (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))


def _bom_codec(data: bytes) -> str | None:
    return next((codec for bom, codec in _BOMS if data.startswith(bom)), None)


def _is_gzip(path: Path) -> bool:
    return path.suffix.lower() == ".gz"


def _head(path: Path) -> bytes:
    """The first HEAD_BYTES bytes of a file's content (decompressed, for a .gz file)."""
    if _is_gzip(path):
        return _gunzip(path, HEAD_BYTES)
    with path.open("rb") as f:
        return f.read(HEAD_BYTES)


def _gunzip(path: Path, limit: int = -1) -> bytes:
    try:
        with gzip.open(path, "rb") as f:
            return f.read(limit)
    except (OSError, EOFError, zlib.error) as exc:  # not gzip, truncated, or corrupt
        raise SystemExit(f"prepare: {path}: not a readable gzip file ({type(exc).__name__}: "
                         f"{exc}). Compress it again (gzip -k FILE), or move it out of the "
                         "corpus directory.") from None


def _text_bytes(path: Path) -> bytes:
    """A converted file's text as UTF-8: decompressed, then decoded by its byte order mark.

    UTF-16 text is re-encoded so that the rest (pieces cut at line ends, the tokenizer, and
    the bytes bpb is counted on) sees UTF-8 like every other file; a malformed code unit
    becomes U+FFFD. Other files are returned as they are.
    """
    data = _gunzip(path) if _is_gzip(path) else path.read_bytes()
    codec = _bom_codec(data)
    if codec is None:
        return data
    return data.decode(codec, "replace").encode("utf-8", "surrogateescape")


def skipped_note(corpus: Corpus) -> str | None:
    """What was left out of a user's directory as not text, for a warning (None: nothing)."""
    if not corpus.skipped:
        return None
    count = len(corpus.skipped)
    return (f"prepare: warning: {count} file{'s' if count > 1 else ''} under {corpus.root} "
            f"{'were' if count > 1 else 'was'} skipped as not text (a NUL byte in the first "
            f"8 KiB and no UTF-16/UTF-32 byte order mark): {_skipped_names(corpus.skipped)}. "
            "Text is read as UTF-8 (or as its bytes), as UTF-16/UTF-32 with a byte order mark, "
            "or gzipped (.gz); save such files in one of those forms to include them.")


def _skipped_names(names: list[str] | tuple[str, ...], shown: int = 5) -> str:
    listed = ", ".join(names[:shown])
    return listed + (f" and {len(names) - shown} more" if len(names) > shown else "")


def _short_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def resolve_corpus() -> Corpus:
    if DATA == "stdlib":
        return _list_stdlib()
    return _list_directory(Path(DATA).expanduser().resolve())


def _decode(data: bytes) -> str:
    # surrogateescape keeps invalid UTF-8 bytes as lone surrogates, so that encoding back with
    # the same handler restores the exact bytes: the tokenizer and bpb see the file as it is.
    return data.decode("utf-8", "surrogateescape")


def iter_documents(corpus: Corpus, split: str) -> Iterator[str]:
    """Yield the documents of one split, in the corpus's sorted order."""
    for name, _ in corpus.files:
        path = corpus.root / name
        if path.suffix == ".parquet":
            for row, text in enumerate(_parquet_texts(path)):
                if split_of(f"{name}#{row}") == split:
                    yield text
        elif name in corpus.converted:  # its text's size is only known once it is read
            yield from _split_documents(name, _text_bytes(path), split)
        elif corpus.kind == "dir" and path.stat().st_size > PIECE_BYTES:
            yield from _split_documents(name, path.read_bytes(), split)
        elif split_of(name) == split:
            yield _decode(path.read_bytes())


def _split_documents(name: str, data: bytes, split: str) -> Iterator[str]:
    """The documents of `split` in one text file of a user's directory: the file itself, or
    each piece of it when it is over PIECE_BYTES."""
    if len(data) <= PIECE_BYTES:
        if split_of(name) == split:
            yield _decode(data)
        return
    for piece, chunk in enumerate(_pieces(data)):
        if split_of(f"{name}#{piece}") == split:
            yield _decode(chunk)


def _pieces(data: bytes) -> Iterator[bytes]:
    """Consecutive pieces of about PIECE_BYTES bytes, each ending at a line end, or, in a line
    that runs on past twice that, at PIECE_BYTES: bytes, not characters (a 1 MB Chinese text
    was cut into a third as many pieces as the KiB promise, too few for three splits), and a
    file of one long line is still many documents (it was one). A character cut in two is
    whole again when its pieces are encoded back (surrogateescape): bpb sees the same bytes."""
    start = 0
    while start < len(data):
        end = data.find(b"\n", start + PIECE_BYTES, start + 2 * PIECE_BYTES)
        if end >= 0:
            end += 1
        elif len(data) - start > 2 * PIECE_BYTES:
            end = start + PIECE_BYTES
        else:
            end = len(data)
        yield data[start:end]
        start = end


def check_splits(corpus: Corpus) -> None:
    """Fail early, before any tokenizer is trained, when a split would hold no text (an empty
    file as its only document passed, and every run then trained its whole budget to fail
    scoring: "evaluation needs at least two tokens")."""
    for split in SPLITS:
        if not any(doc.strip() for doc in iter_documents(corpus, split)):
            raise SystemExit(
                f"prepare: the {split} split of {corpus.root} is empty: the corpus has too few "
                f"documents ({len(corpus.files)} files; each file, each {PIECE_BYTES // 1024} KiB "
                "piece of a larger text file and each parquet row is one). Add more text."
            )


def check_parquet_shards(corpus: Corpus) -> None:
    """Open every parquet shard and check its 'text' column before any text is read: a shard
    whose 'text' held numbers was found only when the tokenizer met its first row, after every
    shard before it had been read, as a TypeError traceback that named no file."""
    for name, _ in corpus.files:
        if name.endswith(".parquet"):
            _open_shard(corpus.root / name)


def _open_shard(path: Path) -> tuple[Any, bool]:
    """The parquet shard at `path`, opened, and whether its 'text' column holds bytes (to be
    decoded like a text file) rather than strings."""
    try:
        import pyarrow as pa  # optional: only parquet corpora need it
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise SystemExit(f"{path}: reading parquet needs pyarrow (pip install pyarrow)") from exc
    # A truncated download or a file that only has the name fails on opening (no footer):
    # pyarrow's error, which names no file.
    try:
        shard = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise _unreadable_parquet(path, exc) from None
    return shard, _text_column_holds_bytes(path, shard.schema_arrow)


def _text_column_holds_bytes(path: Path, schema: Any) -> bool:
    """True for a binary 'text' column, False for strings; anything else is refused.

    Binary is read as UTF-8, invalid bytes kept as they are, exactly as a text file is: a
    writer that stores text as bytes (`df["text"].str.encode(...)`, some dataset tools) loses
    nothing. Numbers, lists, structs or a column of nulls are no documents: refused, with
    the type, rather than tokenized as their printed form.
    """
    import pyarrow as pa

    how = ("prepare.py reads one document per row from a column of strings named 'text' "
           "(or of UTF-8 bytes)")
    if "text" not in schema.names:
        raise SystemExit(f"prepare: {path}: no 'text' column (its columns: "
                         f"{_skipped_names(schema.names, 10) or 'none'}). {how}: rename the "
                         "column holding the text to 'text' (pyarrow: table.rename_columns), "
                         "or move the file out of the corpus directory.")
    if (count := schema.names.count("text")) > 1:  # pyarrow's own error names no file
        raise SystemExit(f"prepare: {path}: {count} columns are named 'text'. {how}: write the "
                         "shard again with one, or move the file out of the corpus directory.")
    column = schema.field("text").type
    values = column.value_type if pa.types.is_dictionary(column) else column  # categorical
    is_string_view = getattr(pa.types, "is_string_view", lambda _: False)  # pyarrow >= 16
    is_binary_view = getattr(pa.types, "is_binary_view", lambda _: False)
    if pa.types.is_string(values) or pa.types.is_large_string(values) or is_string_view(values):
        return False
    if pa.types.is_binary(values) or pa.types.is_large_binary(values) or is_binary_view(values):
        return True
    hint = (" (join each row's pieces into one string)" if _is_list_type(pa, values)
            else " (it has no value in any row)" if pa.types.is_null(values) else "")
    raise SystemExit(f"prepare: {path}: its 'text' column holds {column}, not text{hint}. "
                     f"{how}: write the shard again with each row's text as one string, e.g. "
                     "pyarrow.parquet.write_table(pyarrow.table({'text': list_of_strings}), "
                     "path), or move the file out of the corpus directory.")


def _is_list_type(pa: Any, data_type: Any) -> bool:
    kinds = ("is_list", "is_large_list", "is_fixed_size_list", "is_list_view",
             "is_large_list_view")  # the views only from pyarrow 16 on
    return any(getattr(pa.types, kind, lambda _: False)(data_type) for kind in kinds)


def _parquet_texts(path: Path) -> Iterator[str]:
    shard, holds_bytes = _open_shard(path)
    import pyarrow as pa  # imported by _open_shard, or it said that pyarrow is missing

    batches = shard.iter_batches(columns=["text"])
    while True:
        try:  # a damaged page further in fails here, once the file opened
            batch = next(batches, None)
        except (pa.ArrowException, OSError) as exc:
            raise _unreadable_parquet(path, exc) from None
        if batch is None:
            return
        for value in batch.column(0).to_pylist():
            if value is None:  # a missing row is an empty document
                yield ""
            else:
                yield _decode(value) if holds_bytes else value


def _unreadable_parquet(path: Path, exc: Exception) -> SystemExit:
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else "no detail"
    return SystemExit(f"prepare: {path}: not a readable parquet file ({type(exc).__name__}: "
                      f"{reason}). Download or write it again (a download cut short leaves such "
                      "a file), or move it out of the corpus directory.")


# ---------------------------------------------------------------------------------------------
# Tokenizer. Byte-level BPE: text is first cut into chunks (words with their leading space, runs
# of digits, runs of punctuation, whitespace), then byte pairs are merged greedily inside chunks.
# The pattern covers every character (letters and _ / up to 3 digits / other non-space / space),
# so encoding is lossless. Token ids: 0..255 are bytes, then merges in order, then BOS last.

CHUNK_PATTERN = re.compile(r" ?[^\W\d]+| ?\d{1,3}| ?[^\s\w]+|\s+(?!\S)|\s+")
Pair = tuple[int, int]


class Tokenizer:
    def __init__(self, merges: list[Pair] | None) -> None:
        """merges=None is the plain-bytes tokenizer (256 byte tokens + BOS)."""
        self.kind = "bytes" if merges is None else "bpe"
        self.merges = list(merges or [])
        self.ranks: dict[Pair, int] = {pair: 256 + i for i, pair in enumerate(self.merges)}
        self.vocab: list[bytes] = [bytes([i]) for i in range(256)]
        for a, b in self.merges:
            self.vocab.append(self.vocab[a] + self.vocab[b])
        self.bos_id = len(self.vocab)  # separates documents; it is never a scored target
        self.vocab_size = self.bos_id + 1
        self._cache: dict[str, tuple[int, ...]] = {}

    def encode(self, text: str) -> list[int]:
        if self.kind == "bytes":
            return list(text.encode("utf-8", "surrogateescape"))
        ids: list[int] = []
        cache = self._cache
        for chunk in CHUNK_PATTERN.findall(text):
            piece = cache.get(chunk)
            if piece is None:
                piece = self._encode_chunk(chunk.encode("utf-8", "surrogateescape"))
                if len(cache) < 2_000_000:  # bounded: a big corpus has a long tail of chunks
                    cache[chunk] = piece
            ids.extend(piece)
        return ids

    def _encode_chunk(self, data: bytes) -> tuple[int, ...]:
        # Apply the earliest-learned merge present, repeatedly: the same result as replaying the
        # training merges in order, because a merge's parts are always learned before it.
        ids = list(data)
        while len(ids) > 1:
            best = min(zip(ids, ids[1:], strict=False), key=lambda p: self.ranks.get(p, 1 << 30))
            new_id = self.ranks.get(best)
            if new_id is None:
                break
            ids = _merge(ids, best, new_id)
        return tuple(ids)

    def decode(self, ids: Iterable[int]) -> str:
        return _decode(b"".join(self.vocab[i] for i in ids if i != self.bos_id))

    def token_bytes(self) -> list[int]:
        """Bytes per token, counted from the raw bytes (not a decoded string); BOS counts 0.

        Decoding a token that holds part of a multi-byte character yields U+FFFD, whose length
        has nothing to do with the bytes the token covers; counting that way makes bpb wrong.
        """
        return [len(b) for b in self.vocab] + [0]

    def to_json(self) -> str:
        return json.dumps({"kind": self.kind, "merges": self.merges})

    @classmethod
    def from_json(cls, text: str) -> Tokenizer:
        data = json.loads(text)
        if data["kind"] == "bytes":
            return cls(None)
        return cls([(int(a), int(b)) for a, b in data["merges"]])


def _merge(ids: list[int], pair: Pair, new_id: int) -> list[int]:
    out: list[int] = []
    a, b = pair
    i, n = 0, len(ids)
    while i < n:
        if i + 1 < n and ids[i] == a and ids[i + 1] == b:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def train_bpe(texts: Iterable[str], vocab_size: int) -> Tokenizer:
    """Learn vocab_size - 257 merges (fewer if pairs run out) from chunk frequencies.

    Incremental: each merge touches only the chunks that contain the pair, and a lazy max-heap
    (stale entries skipped) yields the most frequent pair, ties broken by the smaller pair, so
    that training is deterministic.
    """
    chunk_counts: Counter[str] = Counter()
    for text in texts:
        chunk_counts.update(CHUNK_PATTERN.findall(text))
    words = [list(chunk.encode("utf-8", "surrogateescape")) for chunk in chunk_counts]
    freqs = list(chunk_counts.values())

    pair_counts: dict[Pair, int] = defaultdict(int)
    where: dict[Pair, set[int]] = defaultdict(set)
    for i, word in enumerate(words):
        for pair in zip(word, word[1:], strict=False):
            pair_counts[pair] += freqs[i]
            where[pair].add(i)
    heap = [(-count, pair) for pair, count in pair_counts.items()]
    heapq.heapify(heap)

    merges: list[Pair] = []
    while len(merges) < vocab_size - 257 and heap:
        neg_count, pair = heapq.heappop(heap)
        count = pair_counts.get(pair, 0)
        if count != -neg_count:
            continue  # stale entry: the pair's count changed since it was pushed
        if count < 2:
            break  # merging a pair seen once only memorizes the corpus
        new_id = 256 + len(merges)
        merges.append(pair)
        touched: set[Pair] = set()
        for i in where.pop(pair):
            old = words[i]
            new = _merge(old, pair, new_id)
            if len(new) == len(old):
                continue  # this chunk lost the pair to an earlier merge
            delta: Counter[Pair] = Counter(zip(new, new[1:], strict=False))
            delta.subtract(zip(old, old[1:], strict=False))
            for p, d in delta.items():
                if d:
                    pair_counts[p] += d * freqs[i]
                    touched.add(p)
                    if d > 0:
                        where[p].add(i)
            words[i] = new
        for p in touched:
            if pair_counts[p] > 0:
                heapq.heappush(heap, (-pair_counts[p], p))
            else:
                del pair_counts[p]
    return Tokenizer(merges)


# ---------------------------------------------------------------------------------------------
# The cache: <root>/<corpus_id>/<tokenizer_id>/ holds tokenizer.json, {train,val,test}.npy and
# meta.json, which is written last and records every artifact's size and sha256. A cache is
# valid only if meta.json parses and every artifact matches it; otherwise it is rebuilt. Each
# file is written to a temporary name and renamed, and builders take a file lock, so concurrent
# runs (several candidates starting at once) wait for one build instead of racing.


@dataclass
class Prepared:
    corpus: Corpus
    directory: Path
    meta: dict[str, Any]
    tokenizer: Tokenizer
    built: bool = False  # this process built the cache (and said so)


_PREPARED: Prepared | None = None


def tokenizer_id() -> str:
    if TOKENIZER == "bytes":
        return "bytes"
    if TOKENIZER != "bpe":
        raise SystemExit(f"AUTORESEARCH_TOKENIZER={TOKENIZER!r}: expected 'bpe' or 'bytes'")
    if not 258 <= VOCAB_SIZE <= 65536:
        raise SystemExit(f"AUTORESEARCH_VOCAB_SIZE={VOCAB_SIZE}: expected 258..65536")
    return f"bpe{VOCAB_SIZE}"


def prepare(verbose: bool = True) -> Prepared:
    """Return the prepared data, building the cache first if it is missing or corrupt."""
    global _PREPARED
    if _PREPARED is not None:
        return _PREPARED
    corpus = resolve_corpus()
    directory = cache_root() / corpus.corpus_id / tokenizer_id()
    meta = _verify(directory)
    built = False
    if meta is None:
        directory.mkdir(parents=True, exist_ok=True)
        with _file_lock(directory.parent / f".{directory.name}.lock"):
            meta = _verify(directory)  # another process may have built it while we waited
            if meta is None:
                meta, built = _build(corpus, directory, verbose), True
    tokenizer = Tokenizer.from_json((directory / "tokenizer.json").read_text())
    _PREPARED = Prepared(corpus, directory, meta, tokenizer, built)
    return _PREPARED


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _verify(directory: Path) -> dict[str, Any] | None:
    try:
        meta: dict[str, Any] = json.loads((directory / "meta.json").read_text())
        if meta.get("format") != CACHE_FORMAT:
            return None
        for name, info in meta["artifacts"].items():
            path = directory / name
            if path.stat().st_size != info["bytes"] or _sha256_file(path) != info["sha256"]:
                return None
        return meta
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # Windows: no lock; atomic renames of identical content stay safe
        yield
        return
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _atomic_write(path: Path, write: Any) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _build(corpus: Corpus, directory: Path, verbose: bool) -> dict[str, Any]:
    start = time.time()
    log = print if verbose else (lambda *a, **k: None)
    log(f"prepare: building {directory} ({len(corpus.files)} files)")
    with contextlib.suppress(FileNotFoundError):  # a crash mid-build must not look valid
        (directory / "meta.json").unlink()

    if note := skipped_note(corpus):
        log(note)
    check_parquet_shards(corpus)
    check_splits(corpus)
    if corpus.kind == "stdlib" and corpus.corpus_id not in KNOWN_STDLIB_CORPORA:
        known = ", ".join(f"{k} ({v})" for k, v in KNOWN_STDLIB_CORPORA.items())
        log(f"prepare: note: {corpus.corpus_id} is not a measured stdlib corpus ({known}); "
            "bpb figures are comparable only within one corpus id")
    if TOKENIZER == "bytes":
        tokenizer = Tokenizer(None)
    else:
        tokenizer = train_bpe(_take_chars(iter_documents(corpus, "train")), VOCAB_SIZE)
        log(f"prepare: trained BPE, {tokenizer.vocab_size} tokens ({time.time() - start:.1f}s)")
    artifacts: dict[str, dict[str, Any]] = {}

    def save(name: str, write: Any) -> None:
        _atomic_write(directory / name, write)
        path = directory / name
        artifacts[name] = {"bytes": path.stat().st_size, "sha256": _sha256_file(path)}

    save("tokenizer.json", lambda f: f.write(tokenizer.to_json().encode()))
    dtype = np.uint16 if tokenizer.vocab_size <= 1 << 16 else np.uint32
    splits: dict[str, dict[str, int]] = {}
    for split in SPLITS:
        limit = None if split == "train" else STORED_EVAL_BYTES
        parts, docs, nbytes, ntokens = [], 0, 0, 0
        for text in iter_documents(corpus, split):
            ids = [tokenizer.bos_id, *tokenizer.encode(text)]
            parts.append(np.asarray(ids, dtype=dtype))
            docs += 1
            nbytes += len(text.encode("utf-8", "surrogateescape"))
            ntokens += len(ids)
            if limit is not None and nbytes >= limit:
                break
        if docs == 0:
            raise SystemExit(f"prepare: the {split} split is empty; the corpus is too small")
        tokens = np.concatenate(parts)
        save(f"{split}.npy", lambda f, t=tokens: np.save(f, t, allow_pickle=False))
        splits[split] = {"documents": docs, "bytes": nbytes, "tokens": int(tokens.size)}
        log(f"prepare: {split}: {docs} documents, {nbytes:,} bytes, {tokens.size:,} tokens")
    for warning in small_split_warnings(corpus, splits):
        log(warning)

    if corpus.kind == "stdlib":  # the pinned file list, for the curious and for audits
        listing = {"root": str(corpus.root), "files": [list(f) for f in corpus.files]}
        save("manifest.json", lambda f: f.write(json.dumps(listing, indent=0).encode()))
    meta = {
        "format": CACHE_FORMAT,
        "corpus_id": corpus.corpus_id,
        "tokenizer": tokenizer_id(),
        "vocab_size": tokenizer.vocab_size,
        "splits": splits,
        "artifacts": artifacts,
        "build_seconds": round(time.time() - start, 2),
    }
    _atomic_write(directory / "meta.json", lambda f: f.write(json.dumps(meta, indent=1).encode()))
    log(f"prepare: done in {time.time() - start:.1f}s")
    return meta


def small_split_warnings(corpus: Corpus, splits: dict[str, dict[str, int]]) -> list[str]:
    """The warnings of small_split_warning for both scored splits, val then test."""
    return [warning for split in ("val", "test")
            if (warning := small_split_warning(corpus, split, splits[split]["bytes"]))]


def small_split_warning(corpus: Corpus, split: str, split_bytes: int) -> str | None:
    """A warning when the val or test split holds less than half the text the evaluation scores.

    val_bpb (or test_bpb) is then scored on all of that split, and on a few KiB it is mostly
    noise: two experiments differ by chance as much as by what they changed, and a test split
    that small cannot confirm what val showed. The stdlib's val (361 kB) is 70 % of the
    512 KiB scored at the default CPU budget, its test (750 kB) more than all: neither is
    warned about there.
    """
    if 2 * split_bytes >= EVAL_BYTES:
        return None
    share = {"val": VAL_PERCENT, "test": TEST_PERCENT}[split]
    sized_by = ("AUTORESEARCH_EVAL_BYTES" if os.environ.get("AUTORESEARCH_EVAL_BYTES", "").strip()
                else f"eval_bytes_for({TIME_BUDGET:g} s budget) on {DEVICE.type}")
    where = "the stdlib corpus" if corpus.kind == "stdlib" else str(corpus.root)
    return (f"prepare: warning: the {split} split of {where} holds only {_size(split_bytes)} of "
            f"text, while the evaluation is sized to score {_size(EVAL_BYTES)} ({sized_by}): "
            f"{split}_bpb measured on so little is mostly noise. Add text to the corpus: about "
            f"{share} % of its documents go to {split} (each file, each "
            f"{PIECE_BYTES // 1024} KiB piece of a bigger text file, each parquet row), chosen "
            f"by split_of(name) in prepare.py, so more files, or bigger ones, give more {split} "
            "text; split_of('<relative path>') tells which split a file goes to ('<path>#<n>' "
            "for the n-th piece of a big file).")


def _size(nbytes: int) -> str:
    if nbytes < 1024:
        return f"{nbytes} byte{'' if nbytes == 1 else 's'}"
    value, unit = (nbytes / 1024, "KiB") if nbytes < 1024**2 else (nbytes / 1024**2, "MiB")
    return f"{value:.1f}".removesuffix(".0") + f" {unit}"


def _take_chars(texts: Iterable[str]) -> Iterator[str]:
    remaining = TOKENIZER_TRAIN_CHARS
    for text in texts:
        if remaining <= 0:
            return
        yield text[:remaining]
        remaining -= len(text)


def load_tokens(split: str) -> np.ndarray:
    """The split as one token stream: BOS, document, BOS, document, ... (memory-mapped)."""
    prepared = prepare(verbose=False)
    tokens: np.ndarray = np.load(prepared.directory / f"{split}.npy", mmap_mode="r")
    return tokens


# ---------------------------------------------------------------------------------------------
# Dataloader: random windows of seq_len + 1 tokens from the train stream (with replacement),
# seeded, so that the same seed reproduces the same batches.


def make_dataloader(
    batch_size: int, seq_len: int, device: torch.device, seed: int = 0, split: str = "train"
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    tokens = load_tokens(split)
    last_start = len(tokens) - seq_len - 1
    if last_start < 0:
        raise SystemExit(f"the {split} split has {len(tokens)} tokens, fewer than seq_len + 1")
    rng = np.random.default_rng(seed)
    while True:
        starts = rng.integers(0, last_start + 1, size=batch_size)
        rows = np.stack([tokens[s : s + seq_len + 1] for s in starts]).astype(np.int64)
        batch = torch.from_numpy(rows)
        if device.type == "cuda":
            batch = batch.pin_memory().to(device, non_blocking=True)
        else:
            batch = batch.to(device)
        yield batch[:, :-1], batch[:, 1:]


# ---------------------------------------------------------------------------------------------
# Evaluation. bits per byte = total cross-entropy in nats over the scored targets divided by
# (ln 2 x the bytes those targets stand for). It does not depend on the vocabulary, so models with
# different tokenizers compare fairly. BOS targets are in neither sum. The scored targets are the
# shortest prefix of the split that covers EVAL_BYTES bytes, so every tokenizer is scored on the
# same text (to within one token).


@torch.no_grad()
def evaluate_bpb(model: torch.nn.Module, split: str = "val", batch_size: int = 0) -> float:
    """Bits per byte of `model` on the first EVAL_BYTES bytes of a split.

    Contract with train.py: model(x), x a LongTensor (B, T) with T <= MAX_SEQ_LEN, returns
    logits (B, T, vocab_size), and position t may only look at x[:, : t + 1].
    """
    changed = [f"{name} = {globals()[name]!r} (fixed: {value!r})"
               for name, value in _FIXED.items() if globals()[name] != value]
    if changed:
        raise SystemExit(f"evaluate_bpb: the evaluation's constants were changed: "
                         f"{', '.join(changed)}. prepare.py defines the measurement; leave them.")
    return score_split(model, split, next(model.parameters()).device, batch_size)


@torch.no_grad()
def score_split(model: torch.nn.Module, split: str, device: torch.device,
                batch_size: int = 0) -> float:
    """Bits per byte of `model` on a split, once it passes the causality check."""
    tokens = load_tokens(split)
    batch_size = batch_size or max(1, 8192 // MAX_SEQ_LEN)
    total_nats, total_bytes = score_tokens(model, tokens, device, batch_size)
    check_causal(model, tokens, device, batch_size)
    return bits_per_byte(total_nats, total_bytes)


# What the measurement is, as read at import: evaluate_bpb refuses to score when train.py has
# reassigned any of them (a smaller EVAL_BYTES or a shorter context would change the yardstick).
_FIXED = {"MAX_SEQ_LEN": MAX_SEQ_LEN, "EVAL_BYTES": EVAL_BYTES}


# The causality check's probe: CAUSAL_ROWS rows of the stream, each with its own cut point p.
# Fixed seed: the same model is refused or passed on every run, and a refusal can be replayed.
CAUSAL_ROWS = 16
CAUSAL_SEED = 1234


def causal_cuts(seq: int, rows: int = CAUSAL_ROWS) -> list[int]:
    """The cut point of each probe row: x[row, p:] is changed, logits[row, :p] must not move.

    First p = seq (the row is left whole: its logits move only if the model reads other rows)
    next to p = 0 (the whole row changes: what a look across rows would read), then p = 1 and
    2 (a look-ahead from the first positions, where most attention variants differ), a few
    spread to the end (seq - 1: a look-ahead only at the last positions), then seeded random
    ones. One cut per row, and a leak is seen at whatever distance it reaches: a model that
    attends inside 32-token chunks moves position 0 when tokens 1.. change.
    """
    fixed = [seq, 0, 1, 2, seq // 4, seq // 2, (3 * seq) // 4, seq - 1]
    rng = np.random.default_rng(CAUSAL_SEED)
    spare = max(0, rows - len(fixed))
    return (fixed + [int(p) for p in rng.integers(1, max(2, seq), size=spare)])[: max(1, rows)]


@torch.no_grad()
def check_causal(
    model: torch.nn.Module, tokens: np.ndarray, device: torch.device, batch_size: int,
    rows: int = CAUSAL_ROWS,
) -> None:
    """Refuse a model whose predictions look at the tokens they predict.

    The scored rows are consecutive pieces of one stream, so a model that attends to later
    positions, or across the rows of a batch, would read its own targets and score far too
    well. Each row of the probe is a window of the stream and has its own cut point p (see
    causal_cuts): the probe changes x[row, p:] to random other tokens, and logits[row, :p]
    must stay as they were. One clean and one changed forward of `rows` rows (more and
    smaller ones when batch_size, the memory bound, is below that; score.py probes as many
    rows as the handed-over model takes at once, padding would cost as much): on the CPU
    default model
    0.16 s at best, 0.7 s at load 3 on 2 cores (scoring val: ~7 s), under half the cost of the
    half-row check on 64 rows that it replaced.
    """
    seq = min(MAX_SEQ_LEN, len(tokens))
    if seq < 2:
        return
    cuts = causal_cuts(seq, rows)
    vocab = prepare(verbose=False).tokenizer.vocab_size  # ids the model's embedding accepts
    stride = (len(tokens) - seq) // len(cuts)  # windows spread over the stream
    windows = [np.asarray(tokens[r * stride : r * stride + seq], dtype=np.int64)
               for r in range(len(cuts))]
    clean_x = torch.from_numpy(np.stack(windows))
    probe_x = clean_x.clone()
    rng = torch.Generator().manual_seed(CAUSAL_SEED)
    for row, p in enumerate(cuts):
        # A random non-zero shift modulo the vocabulary: every changed token is another token.
        shift = torch.randint(1, max(2, vocab), (seq - p,), generator=rng)
        probe_x[row, p:] = (probe_x[row, p:] + shift) % vocab
    was_training = model.training
    model.eval()
    # The rows that share a batch stay together (p = seq next to p = 0 in the first), so that
    # a look across the rows of a batch is seen; a smaller batch_size only takes more forwards.
    per_batch = max(1, batch_size)
    rel_tolerance = 1e-2 if _low_precision(model, device) else 1e-4
    leaks = []
    for first in range(0, len(cuts), per_batch):
        rows = slice(first, first + per_batch)
        clean = model(clean_x[rows].to(device)).float()
        moved = model(probe_x[rows].to(device)).float()
        for offset, p in enumerate(cuts[rows]):
            if p == 0:
                continue
            position = first_moved(clean[offset, :p], moved[offset, :p], rel_tolerance)
            if position is not None:
                leaks.append((position, p))
    model.train(was_training)
    if leaks:
        position, p = min(leaks)
        where = ("other rows of the batch changed" if p == seq
                 else f"the tokens from position {p} on changed")
        raise SystemExit(
            f"evaluate_bpb: the model is not causal: the prediction at position {position} "
            f"moved when {where} (probe rows of {seq} tokens, cut points {sorted(set(cuts))}). "
            "Position t may only use x[row, : t + 1]."
        )


def first_moved(before: torch.Tensor, after: torch.Tensor, rel_tolerance: float) -> int | None:
    """The first position whose logits moved beyond rounding between two forwards, or None.

    A row's logits do not depend on the other rows' values, and kernels of one shape are
    deterministic, so honest rows match to rounding; a look-ahead moves logits by O(1) (the
    reviewer's chunked attention: 8 on logits of 150 at position 0).
    """
    tolerance = rel_tolerance * (1.0 + float(before.abs().max()))
    bad = ((after - before).abs().amax(dim=-1) > tolerance).nonzero()
    return int(bad[0]) if len(bad) else None


def _low_precision(model: torch.nn.Module, device: torch.device) -> bool:
    """Whether the forward runs in 16-bit (autocast, half weights) or TF32 arithmetic.

    Then logits carry ~1e-3 relative rounding that may differ between kernels; in plain fp32
    it is ~1e-6, and a tolerance 100 times tighter sees smaller leaks.
    """
    try:
        autocast = torch.is_autocast_enabled(device.type)
    except TypeError:  # torch < 2.4: no device argument
        autocast = torch.is_autocast_enabled() or torch.is_autocast_cpu_enabled()
    half = any(p.dtype in (torch.float16, torch.bfloat16) for p in model.parameters())
    tf32 = device.type == "cuda" and torch.get_float32_matmul_precision() != "highest"
    return autocast or half or tf32


def bits_per_byte(total_nats: float, total_bytes: int) -> float:
    return total_nats / (math.log(2) * total_bytes)


def score_tokens(
    model: torch.nn.Module, tokens: np.ndarray, device: torch.device, batch_size: int = 0,
    probe: np.random.Generator | None = None,
) -> tuple[float, int]:
    """(nats, bytes) summed over the targets of a token stream that cover EVAL_BYTES bytes.

    The targets are cut into non-overlapping rows of MAX_SEQ_LEN tokens (the last row may be
    shorter), so that every scored target is scored exactly once. With `probe`, every scored
    batch is also checked for causality (probe_scored_batch) with cuts drawn from it.
    """
    sizes = prepare(verbose=False).tokenizer.token_bytes()
    covered = np.cumsum(np.asarray(sizes, dtype=np.int64)[np.asarray(tokens[1:])])
    if len(covered) == 0:
        raise SystemExit("evaluation needs at least two tokens")
    targets = min(int(np.searchsorted(covered, EVAL_BYTES)) + 1, len(covered))
    stream = torch.from_numpy(np.asarray(tokens[: targets + 1], dtype=np.int64))
    seq = MAX_SEQ_LEN
    batch_size = batch_size or max(1, 8192 // seq)
    token_bytes = torch.tensor(sizes, device=device)
    was_training = model.training
    model.eval()
    total_nats = torch.zeros((), dtype=torch.float64, device=device)
    total_bytes = torch.zeros((), dtype=torch.int64, device=device)
    full_rows, rest = divmod(targets, seq)
    batches = [
        (first, min(full_rows, first + batch_size), seq)
        for first in range(0, full_rows, batch_size)
    ]
    if rest:
        batches.append((full_rows, full_rows + 1, rest))  # the short last row, on its own
    for first, last, length in batches:
        start = first * seq
        rows = last - first
        x = stream[start : start + rows * length].view(rows, length).to(device)
        y = stream[start + 1 : start + 1 + rows * length].view(rows, length).to(device)
        logits = model(x)
        if probe is not None:
            probe_scored_batch(model, x, logits.float(), probe, len(sizes))
        nats = F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), reduction="none")
        nbytes = token_bytes[y.flatten()]
        total_nats += torch.where(nbytes > 0, nats, 0.0).sum(dtype=torch.float64)
        total_bytes += nbytes.sum()
    model.train(was_training)
    return float(total_nats.item()), int(total_bytes.item())


@torch.no_grad()
def probe_scored_batch(model: torch.nn.Module, x: torch.Tensor, logits: torch.Tensor,
                       rng: np.random.Generator, vocab: int) -> None:
    """Refuse a model whose predictions on this scored batch read what they predict.

    check_causal probes fixed windows at fixed cut points, which a model can be written to
    pass (it may peek everywhere but there, or only when a batch does not look like the probe).
    Here the batch probed is the one just scored and the cuts are drawn afresh each time
    (score.py seeds `rng` from the operating system): each row is left whole (half of them, so
    that reading another row shows) or changed from a cut p, p = 0 for a quarter of those;
    logits[row, :p] must not move. A look one token ahead at a position t is seen when some
    row's cut is t + 1, so a model that peeks anywhere is caught over the many rows scored.
    """
    rows, length = x.shape
    changed = x.clone()
    cuts = []
    for row in range(rows):
        if rng.random() < 0.5 or length < 2:
            cuts.append(length)
            continue
        p = 0 if rng.random() < 0.25 else int(rng.integers(1, length))
        shift = torch.from_numpy(rng.integers(1, max(2, vocab), size=length - p)).to(x.device)
        changed[row, p:] = (changed[row, p:] + shift) % vocab
        cuts.append(p)
    moved = model(changed).float()
    rel_tolerance = 1e-2 if _low_precision(model, x.device) else 1e-4
    for row, p in enumerate(cuts):
        if p == 0:
            continue
        position = first_moved(logits[row, :p], moved[row, :p], rel_tolerance)
        if position is not None:
            where = ("other rows of the batch changed" if p == length
                     else f"the tokens from position {p} on changed")
            raise SystemExit(f"score.py: the model is not causal: in a scored batch, the "
                             f"prediction at position {position} moved when {where}. "
                             "Position t may only use x[row, : t + 1].")


# ---------------------------------------------------------------------------------------------
# Hand-over. Under score.py (the verify command), train.py does not score its own model: it
# exports the model's forward with torch.export (a graph of tensor operations and its weights,
# none of train.py's Python) and score.py scores that graph in a process of its own.

MODEL_FILE_ENV = "AUTORESEARCH_MODEL_FILE"  # set by score.py: where the exported model goes


def hand_over(model: torch.nn.Module, rows: int = CAUSAL_ROWS) -> bool:
    """Export `model` for score.py, for batches of `rows` rows of MAX_SEQ_LEN tokens.

    False, and nothing saved, when train.py runs on its own (not under score.py): it then
    evaluates itself with evaluate_bpb. `rows` bounds the evaluation's memory, as evaluate_bpb's
    batch_size does. The forward must be exportable: no Python branch on a tensor's values.
    """
    path = os.environ.get(MODEL_FILE_ENV, "").strip()
    if not path:
        return False
    device = next(model.parameters()).device
    example = torch.zeros(max(1, rows), MAX_SEQ_LEN, dtype=torch.long, device=device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            program = torch.export.export(model, (example,))
    except Exception as exc:  # torch's own messages say which line could not be exported
        raise SystemExit(f"hand_over: torch.export could not export the model's forward "
                         f"(model(x), x of shape {tuple(example.shape)}): {type(exc).__name__}: "
                         f"{exc}") from exc
    finally:
        model.train(was_training)
    torch.export.save(program, path)
    return True


class FixedRows(torch.nn.Module):
    """An exported forward, whose input shape is fixed, as a model of any (B, T <= MAX_SEQ_LEN).

    Each call is cut into batches of the exported row count; missing rows are zeros and each
    row is filled up to MAX_SEQ_LEN with zeros after its tokens. That changes no logit of a
    causal model at the positions kept, and the causality check (run through this same
    wrapper) refuses a model for which it would.
    """

    def __init__(self, forward: torch.nn.Module, rows: int) -> None:
        super().__init__()
        self.forward_of_program = forward
        self.rows = rows

    def train(self, mode: bool = True) -> FixedRows:
        self.training = mode  # exported in eval mode: nothing inside to switch
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        count, length = x.shape
        pieces = []
        for first in range(0, count, self.rows):
            chunk = x[first : first + self.rows]
            padded = torch.zeros(self.rows, MAX_SEQ_LEN, dtype=torch.long, device=x.device)
            padded[: len(chunk), :length] = chunk
            logits = self.forward_of_program(padded)
            if not isinstance(logits, torch.Tensor) or tuple(logits.shape[:2]) != padded.shape:
                got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits)
                raise SystemExit(f"score.py: the handed-over model returned {got} for input "
                                 f"{tuple(padded.shape)}; it must return logits (rows, "
                                 f"{MAX_SEQ_LEN}, vocab_size)")
            pieces.append(logits[: len(chunk), :length])
        return torch.cat(pieces)


def warm_up_loading() -> None:
    """Import what torch.export.load needs (~2 s, most of it torch._dynamo), so that score.py
    can do it while train.py starts rather than after it ends. Only a head start: a torch
    without that module loads as well, importing what it needs then."""
    with contextlib.suppress(ImportError):
        import torch._export.serde.serialize  # noqa: F401


def load_handed_over(path: Path, script: str) -> tuple[FixedRows, int]:
    """The model train.py exported to `path`, and the number of its parameters."""
    if not path.is_file():
        raise SystemExit(f"score.py: {script} ended without handing its model over; it must "
                         "end with prepare.hand_over(model), as the template's train.py does")
    _refuse_pickled(path, script)
    try:
        # The weights and sample inputs are read as tensors only, never as pickled objects.
        os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"
        program = torch.export.load(str(path))
    except Exception as exc:
        raise SystemExit(f"score.py: the model {script} handed over does not load: "
                         f"{type(exc).__name__}: {exc}") from None
    args, kwargs = program.example_inputs or ((), {})
    shape = tuple(args[0].shape) if len(args) == 1 and not kwargs else ()
    if len(shape) != 2 or shape[1] != MAX_SEQ_LEN or args[0].dtype != torch.long:
        raise SystemExit(f"score.py: the model {script} handed over takes {_signature(args)}; "
                         f"it must take one LongTensor of shape (rows, {MAX_SEQ_LEN}), as "
                         "prepare.hand_over(model) exports it")
    # A forward with a memory could leak while it is scored and not while it is probed (or the
    # other way round). Made functional, every change of state it makes is an output of its own.
    stateful = f"score.py: the model {script} handed over changes its own state when called"
    try:
        program = program.run_decompositions({})
    except Exception as exc:
        raise SystemExit(f"{stateful}? it could not be made functional: {type(exc).__name__}: "
                         f"{exc}") from None
    outputs = [spec.kind.name for spec in program.graph_signature.output_specs]
    if outputs != ["USER_OUTPUT"]:
        raise SystemExit(f"{stateful} (its outputs: {', '.join(outputs)}); a scored forward "
                         "must return logits and depend only on the tokens it is given")
    params = sum(program.state_dict[name].numel() for name in program.graph_signature.parameters)
    return FixedRows(program.module(), int(shape[0])).to(DEVICE), params


# What an archive of plain tensors holds in its weights and constants directories: its two
# configs and raw tensor files. torch.export.load unpickles an entry marked `use_pickle`, and
# picks by file name ("opaque_obj_*" is unpickled whatever its config says; a legacy
# "<model>.pt" is read whole): unpickling runs whatever code the pickle names.
_RAW_TENSOR = re.compile(r"(?:^|/)data/(?:weights/(?:weight_\d+|model_weights_config\.json)"
                         r"|constants/(?:tensor_\d+|model_constants_config\.json))$")


def _refuse_pickled(path: Path, script: str) -> None:
    """Refuse an archive that holds anything but raw tensors where torch.export.load reads
    weights and constants, or whose configs ask for unpickling: unpickling would run code in
    score.py's process. hand_over never writes such entries for a model of plain tensors."""
    import zipfile

    refused = f"score.py: the model {script} handed over holds"
    try:
        with zipfile.ZipFile(path) as archive:
            for name in archive.namelist():
                held = re.search(r"(?:^|/)data/(?:weights|constants)/.", name)
                if held and not _RAW_TENSOR.search(name):
                    raise SystemExit(f"{refused} {name}: only raw tensors are loaded")
                if name.endswith(("model_weights_config.json", "model_constants_config.json")):
                    config = json.loads(archive.read(name)).get("config", {})
                    pickled = sorted(
                        key for key, meta in config.items()
                        if not isinstance(meta, dict) or meta.get("use_pickle")
                        or not re.fullmatch(r"(?:weight|tensor)_\d+", str(meta.get("path_name"))))
                    if pickled:
                        raise SystemExit(f"{refused} pickled entries ({', '.join(pickled[:5])}): "
                                         "only tensors are loaded")
    except (zipfile.BadZipFile, OSError, ValueError, AttributeError) as exc:
        raise SystemExit(f"score.py: the model {script} handed over is not a torch.export "
                         f"archive: {type(exc).__name__}: {exc}") from None


def _signature(args: tuple[Any, ...]) -> str:
    shown = (f"{type(a).__name__} {tuple(getattr(a, 'shape', ()))}" for a in args)
    return "(" + ", ".join(shown) + ")"


def held_fixed(records: dict[str, bytes]) -> None:
    """Refuse to score on a data cache whose meta.json (the hashes its files are verified
    against) changed since score.py read it, before train.py started: train.py could have
    rewritten a split and its meta.json together. A cache built during the run (the first run
    on a new machine) had no record: it is held fixed from the next run on."""
    meta = prepare(verbose=False).directory / "meta.json"
    before = records.get(str(meta))
    if before is None:
        print(f"score.py: the data cache {meta.parent} was built while train.py ran; it is "
              "held fixed from the next run on", flush=True)
    elif meta.read_bytes() != before:
        raise SystemExit(f"score.py: the data cache's {meta} changed while train.py ran: "
                         "nothing was scored. Run `python prepare.py` to check the cache.")


def score_handed_over(path: Path, script: str,
                      records: dict[str, bytes] | None = None) -> dict[str, float]:
    """val_bpb and test_bpb of the model at `path`, every scored val batch probed for
    causality with cuts drawn from the operating system's randomness."""
    if records is not None:
        held_fixed(records)
    model, params = load_handed_over(path, script)
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if DEVICE.type == "cuda"
                else contextlib.nullcontext())
    probe = np.random.default_rng(int.from_bytes(os.urandom(16), "little"))
    with torch.no_grad(), autocast:
        # The fixed check first (it names the leak it sees, reproducibly), then the scored
        # batches of val probed. Without state (refused above) the forward is one function:
        # test is scored without a probe.
        tokens = load_tokens("val")
        check_causal(model, tokens, DEVICE, model.rows, max(CAUSAL_ROWS, model.rows))
        val = score_tokens(model, tokens, DEVICE, model.rows, probe)
        test = score_tokens(model, load_tokens("test"), DEVICE, model.rows)
        scores = {"val_bpb": bits_per_byte(*val), "test_bpb": bits_per_byte(*test)}
    for name, value in scores.items():
        if not math.isfinite(value):
            raise SystemExit(f"score.py: {name} is {value}: the trained model is broken")
    return {**scores, "num_params_M": params / 1e6}


# ---------------------------------------------------------------------------------------------
# Command line.


def download_climbmix(shards: int, dest: Path) -> None:
    """Fetch the first `shards` parquet shards of Karpathy's climbmix (needs a network).

    AUTORESEARCH_CLIMBMIX_URL replaces CLIMBMIX_URL (a mirror, or a local copy served over
    HTTP). A shard is written under a temporary name and renamed once all of it arrived, so a
    failed download leaves the shards before it and nothing of its own.
    """
    base = _env("AUTORESEARCH_CLIMBMIX_URL", CLIMBMIX_URL).rstrip("/")
    dest.mkdir(parents=True, exist_ok=True)
    for index in range(shards):
        name = f"shard_{index:05d}.parquet"
        target = dest / name
        if target.exists():
            print(f"{name}: already there")
            continue
        print(f"{name}: downloading", flush=True)
        url = f"{base}/{name}"
        try:
            response = urllib.request.urlopen(url, timeout=60)
        except ValueError as exc:  # no scheme, or one urllib does not know
            raise SystemExit(f"prepare: --download-climbmix: {url} is not a URL that can be "
                             f"fetched ({exc}); check AUTORESEARCH_CLIMBMIX_URL, or unset it "
                             f"for {CLIMBMIX_URL}") from None
        except _NETWORK_ERRORS as exc:
            raise SystemExit(_download_failed(url, exc, dest, index)) from None
        with response:
            try:
                _atomic_write(target, lambda f, r=response: _copy_stream(r, f))
            except _ReadFailed as failed:
                raise SystemExit(_download_failed(url, failed.cause, dest, index)) from None
            except OSError as exc:  # writing: the disk is full, or dest is not writable
                raise SystemExit(f"prepare: --download-climbmix: writing {target} failed "
                                 f"({type(exc).__name__}: {exc}); nothing partial was kept"
                                 ) from None
    print(f"done; now run: AUTORESEARCH_DATA={dest} python prepare.py")


# What a fetch can fail with: no route or name (URLError), a refused or reset connection, a
# timeout (all OSError), a malformed answer or one cut short (HTTPException).
_NETWORK_ERRORS = (OSError, http.client.HTTPException)


class _ReadFailed(Exception):
    """The download, not the write, failed while a shard was copied to disk."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


def _copy_stream(source: Any, target: Any) -> None:
    # A connection closed early ends read() quietly: without the length check a cut-short
    # shard would be renamed into place as if whole.
    expected = source.headers.get("Content-Length")
    copied = 0
    while True:
        try:
            block = source.read(1 << 20)
        except _NETWORK_ERRORS as exc:
            raise _ReadFailed(exc) from exc
        if not block:
            break
        target.write(block)
        copied += len(block)
    if expected is not None and expected.isdigit() and copied != int(expected):
        raise _ReadFailed(http.client.IncompleteRead(b"", int(expected) - copied))


def _download_failed(url: str, exc: BaseException, dest: Path, index: int) -> str:
    host = urllib.parse.urlsplit(url).netloc or url
    if isinstance(exc, urllib.error.HTTPError):  # reached: the address, not the network
        reason = f"the server answered HTTP {exc.code} {exc.reason}"
        why = f"{host} has no such shard there (AUTORESEARCH_CLIMBMIX_URL sets the address)"
    else:
        reason = (f"the connection closed with {exc.expected:,} bytes still to come"
                  if isinstance(exc, http.client.IncompleteRead)
                  else f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}")
        why = (f"This machine may have no network, or cannot reach {host} "
               "(AUTORESEARCH_CLIMBMIX_URL sets another address)")
    kept = f"; the {index} shard(s) before it are complete" if index else ""
    return (f"prepare: --download-climbmix: downloading {url} failed ({reason}). {why}. "
            f"Nothing partial was kept in {dest}{kept}. No network is needed "
            "for the default corpus (AUTORESEARCH_DATA=stdlib) or for a corpus of your own: "
            "AUTORESEARCH_DATA=/path/to/a/directory of text files or parquet shards with a "
            "'text' column (docs/gpt-workload.md, section Data).")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="verify the cache, build nothing")
    parser.add_argument("--download-climbmix", type=int, metavar="N", help="fetch N shards")
    parser.add_argument("--dest", type=Path, help="directory for --download-climbmix")
    args = parser.parse_args()
    if args.download_climbmix:
        if args.dest is None:
            parser.error("--download-climbmix needs --dest")
        download_climbmix(args.download_climbmix, args.dest.expanduser())
        return
    corpus = resolve_corpus()
    directory = cache_root() / corpus.corpus_id / tokenizer_id()
    if args.check:
        meta = _verify(directory)
        print(f"{directory}: {'valid' if meta else 'missing or corrupt'}")
        for warning in _corpus_warnings(corpus, meta):
            print(warning)
        raise SystemExit(0 if meta else 1)
    prepared = prepare()
    if not prepared.built:  # a build has said it already
        for warning in _corpus_warnings(corpus, prepared.meta):
            print(warning)
    print(f"corpus:    {corpus.corpus_id} ({corpus.kind}, {corpus.root})")
    print(f"cache:     {prepared.directory}")
    print(f"tokenizer: {prepared.meta['tokenizer']}, vocab_size {prepared.tokenizer.vocab_size}")
    for split, info in prepared.meta["splits"].items():
        per_token = info["bytes"] / max(1, info["tokens"] - info["documents"])
        print(f"{split + ':':10} {info['tokens']:,} tokens, {per_token:.2f} bytes/token")
    print(f"device:    {DEVICE} (seq_len {MAX_SEQ_LEN}, eval_bytes {EVAL_BYTES:,})")


def _corpus_warnings(corpus: Corpus, meta: dict[str, Any] | None) -> list[str]:
    """What prepare.py says about a corpus whose cache is already built: files left out as
    not text, and a val or test split too small for this budget's evaluation."""
    warnings = [note] if (note := skipped_note(corpus)) else []
    return warnings + (small_split_warnings(corpus, meta["splits"]) if meta else [])


if __name__ == "__main__":
    main()
