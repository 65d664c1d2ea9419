"""A rate with its 95 % Wilson score interval, as the benchmarks print it (decision_noise.py,
verdict_cli.py): a false-keep rate over a few dozen verdicts needs its uncertainty beside it."""

from __future__ import annotations

import math


def rate(kept: int, total: int, *, aligned: bool = False) -> str:
    """ "1.25 % [0.22, 6.85] (1/80)": `kept` of `total` as a percentage with its 95 % Wilson
    interval; `aligned` pads the percentage (and "n/a") to one width, for columns."""
    if not total:
        return "   n/a" if aligned else "n/a"
    p, z = kept / total, 1.96
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    share = f"{100.0 * p:5.2f}" if aligned else f"{100.0 * p:.2f}"
    return (f"{share} % [{100 * max(0.0, centre - half):.2f}, "
            f"{100 * min(1.0, centre + half):.2f}] ({kept}/{total})")
