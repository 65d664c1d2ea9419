"""Clean refactors: behaviour-preserving changes a review must not mark red.

They deliberately contain what a careless reviewer flags: `range(len(x) - 1)` that is right,
an `except` that handles one specific error, subprocess calls without a shell, parameterised
SQL, files opened with `with`, a lock around a shared counter. `big_module` is also the
500-line diff the timing target is about.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from bench.review_eval.repo import Built, RepoBuilder


def rename(path: Path) -> Built:
    repo = RepoBuilder(path)
    repo.commit("geometry", {"geometry.py": '''
        import math


        def dist(a, b):
            dx = a[0] - b[0]
            dy = a[1] - b[1]
            return math.sqrt(dx * dx + dy * dy)


        def perim(pts):
            t = 0.0
            for i in range(len(pts) - 1):
                t += dist(pts[i], pts[i + 1])
            return t
        '''})
    repo.feature("geometry: descriptive names", {"geometry.py": '''
        import math


        def distance(start, end):
            dx = start[0] - end[0]
            dy = start[1] - end[1]
            return math.hypot(dx, dy)


        def path_length(points):
            """Length of the open polyline through `points`."""
            total = 0.0
            for i in range(len(points) - 1):
                total += distance(points[i], points[i + 1])
            return total
        '''})
    return Built(path)


def extract_function(path: Path) -> Built:
    repo = RepoBuilder(path)
    repo.commit("invoice", {"invoice.py": '''
        def total(lines, tax_rate):
            subtotal = 0
            for line in lines:
                subtotal += line["price"] * line["quantity"]
            tax = round(subtotal * tax_rate, 2)
            return subtotal + tax
        '''})
    repo.feature("invoice: extract subtotal()", {"invoice.py": '''
        def subtotal(lines):
            """Sum of price x quantity over the invoice lines."""
            return sum(line["price"] * line["quantity"] for line in lines)


        def total(lines, tax_rate):
            amount = subtotal(lines)
            tax = round(amount * tax_rate, 2)
            return amount + tax
        '''})
    return Built(path)


def comprehension(path: Path) -> Built:
    repo = RepoBuilder(path)
    repo.commit("filters", {"filters.py": '''
        def active_emails(users):
            out = []
            for user in users:
                if user.get("active") and user.get("email"):
                    out.append(user["email"].lower())
            return out
        '''})
    repo.feature("filters: comprehension", {"filters.py": '''
        def active_emails(users):
            return [user["email"].lower() for user in users
                    if user.get("active") and user.get("email")]
        '''})
    return Built(path)


def type_hints(path: Path) -> Built:
    repo = RepoBuilder(path)
    repo.commit("inventory", {"inventory.py": '''
        def restock(levels, minimum, amount):
            orders = {}
            for item, level in levels.items():
                if level < minimum:
                    orders[item] = amount
            return orders
        '''})
    repo.feature("inventory: type hints and docs", {"inventory.py": '''
        from __future__ import annotations


        def restock(levels: dict[str, int], minimum: int, amount: int) -> dict[str, int]:
            """The order to place for every item below `minimum`."""
            orders: dict[str, int] = {}
            for item, level in levels.items():
                if level < minimum:
                    orders[item] = amount
            return orders
        '''})
    return Built(path)


def pathlib_port(path: Path) -> Built:
    repo = RepoBuilder(path)
    repo.commit("files", {"files.py": '''
        import os


        def read_config(directory, default=""):
            path = os.path.join(directory, "app.cfg")
            if not os.path.exists(path):
                return default
            with open(path, encoding="utf-8") as fh:
                return fh.read()
        '''})
    repo.feature("files: pathlib", {"files.py": '''
        from pathlib import Path


        def read_config(directory, default=""):
            """The app.cfg in `directory`, or `default` when there is none."""
            try:
                return (Path(directory) / "app.cfg").read_text(encoding="utf-8")
            except FileNotFoundError:
                return default
        '''})
    return Built(path)


def safe_subprocess_and_sql(path: Path) -> Built:
    repo = RepoBuilder(path)
    repo.commit("tools", {"tools.py": '''
        import subprocess


        def branch():
            return subprocess.run(["git", "branch", "--show-current"], capture_output=True,
                                  text=True, check=True).stdout.strip()
        '''})
    repo.feature("tools: status and users", {"tools.py": '''
        import subprocess
        import threading

        _LOCK = threading.Lock()
        _COUNT = {"calls": 0}


        def branch():
            return subprocess.run(["git", "branch", "--show-current"], capture_output=True,
                                  text=True, check=True).stdout.strip()


        def changed_files(repo):
            """Paths git reports as changed, for the status panel."""
            out = subprocess.run(["git", "-C", repo, "status", "--porcelain"],
                                 capture_output=True, text=True, check=True).stdout
            return [line[3:] for line in out.splitlines() if line.strip()]


        def user_names(conn, team):
            with _LOCK:
                _COUNT["calls"] += 1
            rows = conn.execute("SELECT name FROM users WHERE team = ?", (team,)).fetchall()
            return [name for (name,) in rows]
        '''})
    return Built(path)


def dataclass_port(path: Path) -> Built:
    repo = RepoBuilder(path)
    repo.commit("models", {"models.py": '''
        class Point:
            def __init__(self, x, y):
                self.x = x
                self.y = y

            def __eq__(self, other):
                return isinstance(other, Point) and (self.x, self.y) == (other.x, other.y)

            def __repr__(self):
                return f"Point(x={self.x!r}, y={self.y!r})"
        '''})
    repo.feature("models: dataclass", {"models.py": '''
        from dataclasses import dataclass


        @dataclass(frozen=True)
        class Point:
            x: float
            y: float
        '''})
    return Built(path)


def split_module(path: Path) -> Built:
    repo = RepoBuilder(path)
    repo.commit("utils", {"utils.py": '''
        import re


        def slug(text):
            return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


        def chunks(items, size):
            for start in range(0, len(items), size):
                yield items[start:start + size]
        '''})
    repo.feature("utils: text helpers in their own module", {
        "text_utils.py": '''
            import re


            def slug(text):
                """A URL-safe lower-case version of `text`."""
                return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
            ''',
        "utils.py": '''
            from text_utils import slug

            __all__ = ["chunks", "slug"]


            def chunks(items, size):
                for start in range(0, len(items), size):
                    yield items[start:start + size]
            '''})
    return Built(path)


_TEMPLATES = (
    '''
def parse_{name}(text):
    """Read a "{name}" record: comma-separated key=value pairs."""
    record = {{}}
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        key, _, value = part.partition("=")
        record[key.strip()] = value.strip()
    if "id" not in record:
        raise ValueError("{name} record without an id: " + text)
    return record
''',
    '''
def validate_{name}(record, required=("id", "name")):
    """The problems of a "{name}" record, as messages (empty when it is valid)."""
    problems = []
    for key in required:
        if not record.get(key):
            problems.append(f"{name}: missing {{key}}")
    if "count" in record and not str(record["count"]).isdigit():
        problems.append(f"{name}: count is not a whole number")
    return problems
''',
    '''
def format_{name}(record, width=40):
    """A fixed-width line for a "{name}" record, for the plain-text report."""
    label = str(record.get("name", "?"))
    if len(label) > width:
        label = label[:width - 1] + "~"
    count = int(record.get("count", 0))
    return f"{{label:<{{width}}}} {{count:>6}}"
''',
    '''
def summarize_{name}(records):
    """Count, total and largest count over "{name}" records."""
    counts = [int(r.get("count", 0)) for r in records]
    if not counts:
        return {{"n": 0, "total": 0, "largest": None}}
    return {{"n": len(counts), "total": sum(counts), "largest": max(counts)}}
''',
    '''
def load_{name}(path):
    """Every "{name}" record of a file, one per line."""
    with open(path, encoding="utf-8") as fh:
        return [parse_{name}(line) for line in fh if line.strip()]
''',
)
_KINDS = ("order", "customer", "invoice", "shipment", "product", "supplier", "refund",
          "ticket", "review", "payment", "warehouse")


def _records_module() -> str:
    parts = ['"""Records of the back office: parse, validate, format, summarize, load."""\n']
    for kind in _KINDS:
        for template in _TEMPLATES:
            parts.append(template.format(name=kind))
    return "\n".join(parts)


def big_module(path: Path) -> Built:
    """A new 500-line module of plain, correct code (the timing case)."""
    repo = RepoBuilder(path)
    repo.commit("start", {"README.md": "back office\n"})
    repo.feature("Back-office records module", {"records.py": _records_module()})
    return Built(path)


def big_module_typed(path: Path) -> Built:
    """The same 500 lines in a typed project, so mypy runs too."""
    repo = RepoBuilder(path)
    repo.commit("start", {"README.md": "back office\n",
                          "pyproject.toml": "[tool.mypy]\ncheck_untyped_defs = true\n"})
    repo.feature("Back-office records module", {"records.py": _records_module()})
    return Built(path)


CLEAN_CASES: dict[str, Callable[[Path], Built]] = {
    "clean/rename": rename,
    "clean/extract-function": extract_function,
    "clean/comprehension": comprehension,
    "clean/type-hints": type_hints,
    "clean/pathlib": pathlib_port,
    "clean/subprocess-and-sql": safe_subprocess_and_sql,
    "clean/dataclass": dataclass_port,
    "clean/split-module": split_module,
    "clean/500-line-module": big_module,
    "clean/500-line-module-typed": big_module_typed,
}
