"""What `check` and `run` say about the knobs found: their names, the markers ignored beside
them, and a warning for each value that lies outside its space.

None of this stops a session (errors are `knob_discovery`'s); it is what the user reads first,
so a mistyped value or space is seen before the budget is spent.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from autoresearch.proposers.knob_files import in_scope_files
from autoresearch.proposers.knob_lines import parse_value
from autoresearch.proposers.knob_unusable_markers import ignored_markers
from autoresearch.proposers.knobs import Knob, read_source, read_text


def describe_knobs(knobs: Sequence[Knob], root: Path | None = None,
                   scope: Sequence[str] = ()) -> str:
    """Every knob, by name (`check` shows it whole; `run`'s header shortens it), then the
    `# knob:` markers of the in-scope files under `root` that are no knob (a line tune cannot
    rewrite, a file that is not UTF-8): they were dropped without a word once any knob existed."""
    said = f"{len(knobs)} knob(s): {', '.join(k.key for k in knobs)}"
    if root is None:
        return said
    files = in_scope_files(root, scope)
    unused = ignored_markers(root, files)
    if unused:
        said += (f"; {len(unused)} `# knob:` marker(s) ignored: " + "; ".join(unused[:5])
                 + (f" and {len(unused) - 5} more" if len(unused) > 5 else ""))
    return said + "".join(f"\n! {warning}" for warning in outside_their_space(root, knobs))


def outside_their_space(root: Path, knobs: Sequence[Knob]) -> list[str]:
    """A warning for each knob whose value in `root` lies outside its space. Not an error: the
    session runs, measured from the file as it is, but the baseline then sits where tune never
    proposes, and the user most likely mistyped the value or the space."""
    texts: dict[str, str] = {}
    warnings = []
    for knob in knobs:
        if knob.file not in texts:
            texts[knob.file] = read_text(root / knob.file)
        written = read_source(texts[knob.file], knob)
        why = knob.space.why_outside(parse_value(written, knob.dialect)[1])
        if why is None:
            continue
        widen = (f"add {written} to the choices" if knob.space.kind == "choice" else
                 f"widen the range to take in {written}" if why.startswith(("below", "above"))
                 else f"change the space so that {written} is one of its values")
        warnings.append(
            f"{knob.file}:{knob.line}: knob {knob.name} = {written} lies outside its space "
            f"{knob.space} ({why}): the baseline runs it as written, but tune proposes only "
            "values inside the space, so no later experiment comes back to it"
            f"\n  fix:   {widen}, or set {knob.name} to a value inside the space and commit")
    return warnings
