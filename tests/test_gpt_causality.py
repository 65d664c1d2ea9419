"""The GPT template's causality check (prepare.check_causal): what it refuses and what it passes.

evaluate_bpb scores consecutive rows of one token stream, so a model whose position t reads a
later token of its row (or another row) reads its own targets. An earlier check changed only the
second half of one row and compared only the first half: attention left unmasked inside
32-token chunks passed it, and a session kept that change at +75 % (val_bpb 0.51 against 2.09).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterator

import pytest

from tests.test_gpt_workload import TEMPLATE, load_prepare, workload  # noqa: F401  (fixture)

torch = pytest.importorskip("torch")
F = torch.nn.functional

NOT_CAUSAL = "not causal"


class Attending(torch.nn.Module):
    """Embedding, one self-attention whose output dominates, and a head: the mask decides.

    mask: "causal", "window" (causal, the last 16 tokens), "full" (no mask), or "chunked"
    (the reviewer's case: full attention inside 32-token chunks, the causal mask forgotten).
    """

    def __init__(self, vocab_size: int, mask: str, width: int = 64) -> None:
        super().__init__()
        self.mask = mask
        self.embed = torch.nn.Embedding(vocab_size, width)
        self.head = torch.nn.Linear(width, vocab_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T = x.shape
        h = self.embed(x)
        q = h.view(B, 1, T, -1)
        if self.mask == "chunked" and T % 32 == 0:
            q = h.view(B, T // 32, 32, -1)
            y = F.scaled_dot_product_attention(q, q, q)
        elif self.mask == "full":
            y = F.scaled_dot_product_attention(q, q, q)
        elif self.mask == "window":
            i = torch.arange(T)
            allowed = (i[:, None] >= i[None, :]) & (i[:, None] - i[None, :] < 16)
            y = F.scaled_dot_product_attention(q, q, q, attn_mask=allowed)
        else:
            y = F.scaled_dot_product_attention(q, q, q, is_causal=True)
        return self.head(h + 100 * y.reshape(B, T, -1))


class PeekAt(torch.nn.Module):
    """Causal except at one position, which also reads the token after it."""

    def __init__(self, vocab_size: int, position: int) -> None:
        super().__init__()
        self.position = position
        self.table = torch.nn.Parameter(torch.randn(vocab_size, vocab_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.table[x].clone()
        t = min(self.position, x.size(1) - 2)
        if t >= 0:
            logits[:, t] += 5 * self.table[x[:, t + 1]]
        return logits


@pytest.fixture
def template_head(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., dict[str, object]]]:
    """train.py's definitions (hyperparameters, the model), run without its training: the
    text before `prepare.prepare()` is executed against the test's prepare module."""
    threads = torch.get_num_threads()
    bytecode = sys.dont_write_bytecode

    def load(prepare: object, edits: dict[str, str] | None = None) -> dict[str, object]:
        text = (TEMPLATE / "train.py").read_text().split("\nprepared = prepare.prepare()")[0]
        for old, new in (edits or {}).items():
            assert old in text, old
            text = text.replace(old, new)
        monkeypatch.setitem(sys.modules, "prepare", prepare)
        namespace: dict[str, object] = {"__name__": "gpt_train_head"}
        exec(compile(text, str(TEMPLATE / "train.py"), "exec"), namespace)  # noqa: S102
        return namespace

    yield load
    torch.set_num_threads(threads)  # train.py sets one thread per core
    sys.dont_write_bytecode = bytecode


def template_model(namespace: dict[str, object], vocab_size: int, seq_len: int) -> object:
    """The template's GPT with every weight random: the zero-initialized output projections
    would otherwise make each block the identity, and attention would not show at all."""
    torch.manual_seed(0)
    depth = namespace["DEPTH"]
    head_dim = namespace["HEAD_DIM"]
    assert isinstance(depth, int) and isinstance(head_dim, int)
    ratio = namespace["ASPECT_RATIO"]
    assert isinstance(ratio, int)
    width = math.ceil(depth * ratio / head_dim) * head_dim
    model = namespace["GPT"](vocab_size, depth, width, seq_len)
    with torch.no_grad():
        for p in model.parameters():
            if not p.any():
                p.normal_(std=0.05)
    return model


CHUNKED_EDIT = {  # the reviewer's "faster local attention" proposal, applied to train.py
    """        y = F.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True
        )""": """        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        if T % 32 == 0:  # chunked local attention
            n = T // 32
            y = F.scaled_dot_product_attention(
                q.reshape(B, self.heads, n, 32, HEAD_DIM), k.reshape(B, self.heads, n, 32, HEAD_DIM),
                v.reshape(B, self.heads, n, 32, HEAD_DIM)).reshape(B, self.heads, T, HEAD_DIM)
        else:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)""",
}
WINDOW_EDIT = {  # sliding-window attention done right: causal, and the last 16 tokens only
    "is_causal=True": "attn_mask=(lambda i: (i[:, None] >= i[None, :]) & "
                      "(i[:, None] - i[None, :] < 16))(torch.arange(T, device=x.device))",
}


@pytest.mark.parametrize("mask", ["chunked", "full"])
def test_attention_without_its_causal_mask_is_refused(
    workload: dict[str, str], mask: str  # noqa: F811
) -> None:
    prepare = load_prepare(workload)
    vocab = prepare.prepare(verbose=False).tokenizer.vocab_size
    torch.manual_seed(0)
    # Position 0 reads tokens 1..31 of its chunk: the first cut point after it shows it.
    with pytest.raises(SystemExit, match=rf"{NOT_CAUSAL}: the prediction at position 0 moved "
                                         r"when the tokens from position 1 on changed"):
        prepare.evaluate_bpb(Attending(vocab, mask), "val", batch_size=64)


@pytest.mark.parametrize("mask", ["causal", "window"])
def test_causal_and_sliding_window_attention_pass(
    workload: dict[str, str], mask: str  # noqa: F811
) -> None:
    prepare = load_prepare(workload)
    vocab = prepare.prepare(verbose=False).tokenizer.vocab_size
    torch.manual_seed(0)
    assert 0 < prepare.evaluate_bpb(Attending(vocab, mask), "val", batch_size=64) < 100


@pytest.mark.parametrize("position", [0, 126])
def test_a_look_ahead_at_one_position_is_seen_at_either_end(
    workload: dict[str, str], position: int  # noqa: F811
) -> None:
    # The first position and the one before the last: neither is inside the earlier check's
    # compared first half with a changed token after it.
    prepare = load_prepare(workload)
    assert prepare.MAX_SEQ_LEN == 128
    vocab = prepare.prepare(verbose=False).tokenizer.vocab_size
    torch.manual_seed(0)
    with pytest.raises(SystemExit, match=rf"{NOT_CAUSAL}: the prediction at position "
                                         rf"{position} moved"):
        prepare.evaluate_bpb(PeekAt(vocab, position), "val", batch_size=4)


def test_the_template_model_passes_and_its_unmasked_variants_do_not(
    workload: dict[str, str], template_head: Callable[..., dict[str, object]]  # noqa: F811
) -> None:
    prepare = load_prepare(workload)
    vocab = prepare.prepare(verbose=False).tokenizer.vocab_size
    seq = prepare.MAX_SEQ_LEN
    for edits in ({}, WINDOW_EDIT):
        model = template_model(template_head(prepare, edits), vocab, seq)
        assert 0 < prepare.evaluate_bpb(model, "val", batch_size=64) < 100
    for edits in (CHUNKED_EDIT, {"is_causal=True": "is_causal=False"}):
        model = template_model(template_head(prepare, edits), vocab, seq)
        with pytest.raises(SystemExit, match=rf"{NOT_CAUSAL}: the prediction at position 0"):
            prepare.evaluate_bpb(model, "val", batch_size=64)


def test_the_cut_points_are_fixed_and_cover_both_ends() -> None:
    prepare = load_prepare({"AUTORESEARCH_DEVICE": "cpu"})
    cuts = prepare.causal_cuts(128)
    assert cuts == load_prepare({"AUTORESEARCH_DEVICE": "cpu"}).causal_cuts(128)  # seeded
    assert len(cuts) == prepare.CAUSAL_ROWS
    assert cuts[:2] == [128, 0]  # an untouched row next to a wholly changed one (across rows)
    assert {1, 2, 32, 64, 96, 127} <= set(cuts) and all(0 <= p <= 128 for p in cuts)


def test_refusal_is_reproducible(workload: dict[str, str]) -> None:  # noqa: F811
    messages = []
    for _ in range(2):
        prepare = load_prepare(workload)
        vocab = prepare.prepare(verbose=False).tokenizer.vocab_size
        torch.manual_seed(0)
        with pytest.raises(SystemExit) as refused:
            prepare.evaluate_bpb(Attending(vocab, "chunked"), "val", batch_size=64)
        messages.append(str(refused.value))
    assert messages[0] == messages[1]
