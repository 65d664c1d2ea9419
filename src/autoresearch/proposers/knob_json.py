"""JSON files (notebooks too): why tune cannot tune a value in one, and what to write instead.

JSON quotes its keys and has no comments, so no line of it is a knob line and no marker can sit
on one. Both a `[knobs]` entry naming a JSON file (`knob_discovery`) and a marker found in one
(`knob_unusable_markers`) are refused with the same reason and the same fix: the line to write in
a file tune can rewrite, holding the value the program runs now. That advice lives here.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import PurePosixPath

from autoresearch.proposers.knob_render import render_value
from autoresearch.proposers.knob_space import KnobSpace, Scalar, parse_knob_spec

# Why no knob can live in a JSON file, for the messages that say so.
JSON_WHY = ("tune rewrites only `NAME = value` / `NAME: value` lines, and JSON quotes its keys "
             "and has no comments to carry a `# knob:` marker")


def json_fix(name: str, spec: str, file: str, text: str | None) -> str:
    """How to tune a value that lives in a JSON file (`text`, when it could be read): from a
    file tune can rewrite, the line to write there holding the value the program runs now."""
    notebook = PurePosixPath(file).suffix.lower() == ".ipynb"
    value = _example_value(name, spec, text, notebook)
    if notebook:
        shown = render_value(value, "", "python")
        return (f"move {name} into a Python module the notebook imports, add that module to scope "
                f"and mark its line there: `{name} = {shown}  # knob: {spec}`")
    shown = render_value(value, "", "yaml")
    return (f"move {name} into a file tune can rewrite that your program reads instead (YAML, "
            f"TOML, INI, .env or a Python module), then mark its line there (`{name}: {shown}  "
            f'# knob: {spec}`) or declare it in [knobs] ("params.yaml:{name}" = "{spec}")')


# A scalar JSON value: a number, a string without escapes, true, false, null.
_JSON_SCALAR = r'(-?\d[\d.eE+\-]*|"[^"\\\n]*"|true|false|null)'


def _example_value(name: str, spec: str, text: str | None, notebook: bool) -> Scalar:
    """The value `name` has in a JSON file's `text` (in a notebook, on its code line), when it
    can be read and the knob's space could hold one of its type; else a value inside the space
    (an example outside its own space would be the next thing to fix)."""
    try:
        space: KnobSpace | None = parse_knob_spec(spec)
    except ValueError:
        space = None
    found = None
    if text is not None:
        key = (rf"\b{re.escape(name)}[ \t]*=[ \t]*" if notebook
               else rf'"{re.escape(name)}"[ \t]*:[ \t]*')
        found = re.search(key + _JSON_SCALAR, text)
    if found is not None:
        try:
            value: Scalar = json.loads(found.group(1))
        except ValueError:
            pass
        else:
            if space is None or space.accepts_type(value):
                return value
    if space is None:
        return 0.01
    if space.kind == "choice":
        return space.choices[0]
    middle = (math.sqrt(space.low * space.high) if space.kind in ("log", "logint")
              else (space.low + space.high) / 2)
    return space.snap(middle)
