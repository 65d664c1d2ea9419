"""metrics: the four output formats."""

from __future__ import annotations

import math

import pytest

from autoresearch.metrics import format_metric_help, parse_metric_value, parse_metrics

# The summary block Karpathy's autoresearch train.py prints at the end of a run.
TRAIN_PY_SUMMARY = """\
step 00950 (99.1%) | loss: 3.012345 | lrm: 0.10 | dt: 312ms | tok/sec: 1,680,000 | mfu: 39.8%
---
val_bpb:          0.997900
training_seconds: 300.1
total_seconds:    325.9
peak_vram_mb:     45060.2
mfu_percent:      39.80
total_tokens_M:   499.6
num_steps:        953
num_params_M:     50.3
depth:            8
"""


def test_kv_reads_train_py_summary() -> None:
    got = parse_metrics(TRAIN_PY_SUMMARY, "kv")
    assert got == {
        "val_bpb": 0.9979,
        "training_seconds": 300.1,
        "total_seconds": 325.9,
        "peak_vram_mb": 45060.2,
        "mfu_percent": 39.8,
        "total_tokens_M": 499.6,
        "num_steps": 953.0,
        "num_params_M": 50.3,
        "depth": 8.0,
    }


def test_kv_last_wins_and_odd_values() -> None:
    text = "\n".join(
        [
            "loss: 5",
            "loss: 4.5",
            "lr: 3e-4",
            "eps: -1.5E+2",
            "x: .5",
            "a.b/c-d: 1",
            "bad: nan",
            "big: inf",
            "small: -inf",
            "noise: 1.0 extra",  # not the shape: ignored
            "1abc: 3",  # not an identifier
            "time: 12:30",
            "thousands: 1_000",
            "  indented :  7  ",
        ]
    )
    got = parse_metrics(text, "kv")
    assert got["loss"] == 4.5 and got["lr"] == 3e-4 and got["eps"] == -150.0
    assert got["x"] == 0.5 and got["a.b/c-d"] == 1.0 and got["indented"] == 7.0
    assert math.isnan(got["bad"]) and got["big"] == math.inf and got["small"] == -math.inf
    for absent in ("noise", "1abc", "time", "thousands"):
        assert absent not in got


def test_kv_handles_carriage_returns_and_empty() -> None:
    assert parse_metrics("progress 10%\rprogress 100%\rval: 2\r\n", "kv") == {"val": 2.0}
    assert parse_metrics("", "kv") == {}


def test_metric_line() -> None:
    text = "METRIC val_bpb=1.5\nsomething METRIC x=1\nMETRIC val_bpb=0.99 mem_gb=4.2 junk tag=abc\n"
    assert parse_metrics(text, "metric-line") == {"val_bpb": 0.99, "mem_gb": 4.2}


def test_json_last_object_line_flattened() -> None:
    text = "\n".join(
        [
            '{"val_bpb": 2.0}',
            '{"val_bpb": 0.99, "ok": true, "name": "x", "n": 3, "sub": {"a": {"b": 1e-3}}, "l": [1]}',
            "[1, 2]",
            "{not json",
            "trailing text",
        ]
    )
    assert parse_metrics(text, "json") == {"val_bpb": 0.99, "n": 3.0, "sub.a.b": 1e-3}


def test_json_nan_and_nothing() -> None:
    assert math.isnan(parse_metrics('{"loss": NaN}', "json")["loss"])
    assert parse_metrics("no json here", "json") == {}


def test_regex_one_group_or_named_value() -> None:
    text = "epoch 1 acc=0.5\nepoch 2 acc=0.75\nepoch 3 acc=n/a\nbest loss 1.2e-3 at step 9\n"
    got = parse_metrics(
        text,
        "regex",
        {"acc": r"acc=(\S+)", "loss": r"best (?P<what>\w+) (?P<value>[\d.e-]+)"},
    )
    assert got == {"acc": 0.75, "loss": 1.2e-3}  # last *numeric* match wins


def test_regex_errors_name_the_metric() -> None:
    with pytest.raises(ValueError, match="metric 'acc'.*invalid regex"):
        parse_metrics("x", "regex", {"acc": "acc=("})
    with pytest.raises(ValueError, match="metric 'loss'.*exactly one capture group"):
        parse_metrics("x", "regex", {"loss": r"(a)(b)"})
    with pytest.raises(ValueError, match="metric 'loss'.*exactly one capture group"):
        parse_metrics("x", "regex", {"loss": r"loss \d+"})


def test_unknown_format() -> None:
    with pytest.raises(ValueError, match="unknown metric format"):
        parse_metrics("x", "yaml")  # type: ignore[arg-type]


def test_parse_metric_value() -> None:
    assert parse_metric_value(" 1e3 ") == 1000.0
    assert parse_metric_value("Infinity") == math.inf
    assert parse_metric_value("1_000") is None
    assert parse_metric_value("abc") is None


def test_format_metric_help() -> None:
    assert format_metric_help("kv") == "expected lines like `val_bpb: 0.99`"
    assert "METRIC loss=0.99" in format_metric_help("metric-line", "loss")
    assert '{"val_bpb": 0.99}' in format_metric_help("json")
    assert r"acc=(\d+)" in format_metric_help("regex", "acc", r"acc=(\d+)")


def test_a_coloured_metric_line_is_read_as_the_terminal_shows_it() -> None:
    from autoresearch.metric_discovery import candidates
    from autoresearch.metrics import parse_metrics

    # loguru/rich with FORCE_COLOR, or a log captured from a terminal.
    text = "\x1b[32mval_loss: 1.25\x1b[0m\n\x1b]0;training\x07step 10: loss 2.5\n"
    assert parse_metrics(text, "kv") == {"val_loss": 1.25}
    assert "val_loss" in [c.name for c in candidates(text)]


@pytest.mark.parametrize(("text", "name", "value"), [
    ("step 10 | loss 2.50 | val loss 2.60\n", "loss", 2.50),
    ("acc 0.91 (prev acc 0.88)\n", "acc", 0.91),
    ("val loss 2.60 | best val loss 2.40\n", "val_loss", 2.60),
])
def test_a_label_printed_again_inside_a_longer_one_is_still_offered(
        text: str, name: str, value: float) -> None:
    # `loss` also matches inside `val loss`: its plain pattern read 2.60 back, so `loss` was
    # dropped, and `init --from-log --metric loss` said the log "printed no number called loss".
    from autoresearch.metric_discovery import candidates
    from autoresearch.metrics import parse_metrics

    found = {c.name: c for c in candidates(text)}
    assert name in found, list(found)
    cand = found[name]
    assert cand.value == value
    assert parse_metrics(text * 3, "regex", {name: cand.pattern or ""})[name] == value
