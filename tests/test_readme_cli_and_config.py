"""What the README and the docs it links to say about the command line and the config is true.

Read as a new user reads them: every `autoresearch <command> --flag` they show exists, every
option of every command is documented, every key of the configuration tables (and the
`[proposer]` options table) exists with the stated default, every `[table] key = value` they
show is accepted, and every relative link leads somewhere. Checked against the code itself
(the click commands typer builds, the pydantic models, the option sets), so a renamed flag or
key, a changed default or a moved heading fails here instead of misleading a user.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import typer.main
from pydantic import BaseModel
from pydantic_core import PydanticUndefined
from typer.testing import CliRunner

from autoresearch import config as config_module
from autoresearch.cli import app
from autoresearch.config import load_config_text
from autoresearch.proposers.options import AGENT_OPTIONS, LLM_OPTIONS, TUNE_OPTIONS

CHECKOUT = Path(__file__).resolve().parents[1]
README = (CHECKOUT / "README.md").read_text(encoding="utf-8")
DOCS = {path.relative_to(CHECKOUT).as_posix(): path.read_text(encoding="utf-8")
        for path in sorted((CHECKOUT / "docs").glob("*.md"))}
COMMANDS = typer.main.get_command(app).commands  # type: ignore[attr-defined]


def section(text: str, heading: str) -> str:
    """The text under `heading` up to the next heading of the same or a higher level."""
    level = heading.split(" ", 1)[0]
    start = text.index(heading + "\n")
    rest = text[start + len(heading):]
    end = re.search(rf"^#{{1,{len(level)}}} ", rest, re.M)
    return rest[: end.start()] if end else rest


def long_flags(name: str) -> dict[str, set[str]]:
    """Each long flag of a command (both spellings of a --x/--no-x pair) → all its spellings."""
    flags: dict[str, set[str]] = {}
    for param in COMMANDS[name].params:
        spellings = {*param.opts, *getattr(param, "secondary_opts", [])}
        for flag in spellings:
            if flag.startswith("--"):
                flags[flag] = spellings
    return flags


def command_lines(text: str) -> list[str]:
    """Every `autoresearch CMD ...` the text shows: code spans, and code-block lines with their
    backslash continuations; also spans that start with a bare command and a flag
    (`results --json`, `finalize --verify`)."""
    joined = re.sub(r"\\\n\s*", " ", text)
    lines = re.findall(r"`((?:autoresearch )?[a-z]+ [^`]*)`", joined)
    lines += [m.group(1) for m in re.finditer(r"^\s*(?:\$ )?(autoresearch [^\n]*)", joined, re.M)]
    found = []
    for line in lines:
        words = line.removeprefix("autoresearch ").split()
        if words and words[0] in COMMANDS and (line.startswith("autoresearch ") or "--" in line):
            found.append(line)
    return found


def test_every_flag_the_readme_and_docs_show_exists() -> None:
    wrong = []
    shown = 0
    for where, text in {"README.md": README, **DOCS}.items():
        for line in command_lines(text):
            command = line.removeprefix("autoresearch ").split()[0]
            code = line.split("#", 1)[0]  # a shell comment is prose
            for flag in re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", code):
                shown += 1
                if flag not in long_flags(command):
                    wrong.append(f"{where}: `{line}`: {command} has no {flag}")
    assert shown >= 30, shown  # the parser does find the README's command lines
    assert not wrong, "\n".join(wrong)


def commands_table_rows() -> dict[str, str]:
    """The README's Commands table: each command → the text of the rows that name it."""
    rows: dict[str, str] = {}
    for row in section(README, "## Commands").splitlines():
        if not row.startswith("| `autoresearch"):
            continue
        first = row.split(" | ", 1)[0]
        for name in re.findall(r"`(?:autoresearch )?([a-z]+)", first):
            rows[name] = rows.get(name, "") + row
    return rows


# Where a command's options are documented beyond its row (review: its own page's table).
OPTION_DOCS = {"review": "docs/review.md"}


def test_every_option_of_every_command_is_documented() -> None:
    rows = commands_table_rows()
    prose = "\n".join(line for line in section(README, "## Commands").splitlines()
                      if not line.startswith("|"))
    assert set(rows) == set(COMMANDS), "the Commands table names every command, and only those"
    undocumented = []
    for name in COMMANDS:
        documented = rows[name] + prose + DOCS.get(OPTION_DOCS.get(name, ""), "")
        for flag, spellings in long_flags(name).items():
            if flag == "--help" or flag.startswith("--no-") and flag[5:] and f"--{flag[5:]}" in spellings:
                continue
            if not any(re.search(rf"{re.escape(s)}(?![\w-])", documented) for s in spellings):
                undocumented.append(f"{name} {flag}")
    assert not undocumented, f"options the README does not document: {undocumented}"


def test_the_short_flags_the_readme_promises_are_there() -> None:
    """`--repo` is `-C` and `--tag` is `-t` on every command that has them (README, Commands)."""
    prose = section(README, "## Commands")
    assert "`-C DIR`" in prose and "(`-t`" in prose
    missing = []
    for name, command in COMMANDS.items():
        for param in command.params:
            for long, short in (("--repo", "-C"), ("--tag", "-t")):
                if long in param.opts and short not in param.opts:
                    missing.append(f"{name} {long} without {short}")
    assert not missing, missing


def test_help_texts_show_their_bracketed_config_names() -> None:
    """Help is rich markup: a bare `[run] workers` would print as ` workers`."""
    runner = CliRunner()
    lost = []
    for name, command in COMMANDS.items():
        shown = " ".join(runner.invoke(app, [name, "--help"], env={"COLUMNS": "400"}).output.split())
        for param in command.params:
            for table in re.findall(r"\[[a-z_]+\]", getattr(param, "help", None) or ""):
                if table not in shown:
                    lost.append(f"{name} {param.opts[0]}: {table}")
    assert not lost, f"help text whose [table] rich swallowed: {lost}"


# The README's configuration table: a row's first cell → the model holding those keys.
SECTIONS: dict[str, type[BaseModel]] = {
    "": config_module.Config, "verify": config_module.VerifyConfig,
    "metric": config_module.MetricConfig, "decision": config_module.DecisionConfig,
    "run": config_module.RunConfig, "proposer": config_module.ProposerConfig,
}
# Tables documented in one row, their keys named in the row's text.
WHOLE_TABLES: dict[str, type[BaseModel]] = {
    "[[guards]]": config_module.GuardConfig, "[limits]": config_module.LimitsConfig,
    "[review]": config_module.ReviewConfig,
}


def table_rows(text: str, header: str) -> list[list[str]]:
    start = text.index(header)
    rows = []
    for line in text[start:].splitlines()[2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]])
    return rows


def stated_default(cell: str) -> Any:
    """A default cell as a value: `required`, a literal, a bare word; prose means "unset"."""
    text = re.sub(r"\s*\(.*\)$", "", cell).replace("`", "").strip()
    if text == "required":
        return PydanticUndefined
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text if re.fullmatch(r"[a-z-]+", text) and text not in ("none", "sized", "unset") else None


def default_of(model: type[BaseModel], key: str) -> Any:
    field = model.model_fields[key]
    if field.default_factory is not None:
        value = field.default_factory()  # type: ignore[call-arg]
        return getattr(value, "value", value)  # an Amount's number
    return field.default


def test_every_config_key_in_the_readme_exists_with_its_default() -> None:
    rows = table_rows(README, "| key | meaning | default |")
    documented: dict[type[BaseModel], set[str]] = {}
    wrong = []
    for key_cell, meaning, default in rows:
        if key_cell.strip("`") in WHOLE_TABLES:
            model = WHOLE_TABLES[key_cell.strip("`")]
            named = set(re.findall(r"`(\w+)", meaning))
            missing = set(model.model_fields) - named
            if missing:
                wrong.append(f"{key_cell}: the row does not name {sorted(missing)}")
            continue
        if key_cell == "`[knobs]`":
            keys, model = ["knobs"], config_module.Config
        else:
            match = re.fullmatch(r"`(?:\[(\w+)\] )?(\w+)`((?:, `\w+`)*)", key_cell)
            assert match, f"cannot read the key cell {key_cell!r}"
            model = SECTIONS[match.group(1) or ""]
            keys = [match.group(2), *re.findall(r"`(\w+)`", match.group(3))]
        for key in keys:
            documented.setdefault(model, set()).add(key)
            if key not in model.model_fields:
                wrong.append(f"{key_cell}: {model.__name__} has no field {key!r}")
                continue
            expected = stated_default(default)
            actual = default_of(model, key)
            if expected != actual and not (expected is None and actual is None):
                wrong.append(f"{key_cell}: README says default {default!r}, the code {actual!r}")
    for model in (config_module.VerifyConfig, config_module.MetricConfig,
                  config_module.DecisionConfig, config_module.RunConfig):
        missing = set(model.model_fields) - documented.get(model, set())
        if missing:
            wrong.append(f"{model.__name__}: keys the README's table omits: {sorted(missing)}")
    top = set(config_module.Config.model_fields) - {"verify", "metric", "decision", "run",
                                                     "proposer", "guards", "limits", "review"}
    if top - documented.get(config_module.Config, set()):
        wrong.append(f"top-level keys the table omits: {top - documented[config_module.Config]}")
    assert not wrong, "\n".join(wrong)


def test_the_review_docs_config_table_matches_the_model() -> None:
    rows = table_rows(DOCS["docs/review.md"], "| key | meaning | default |")
    model = config_module.ReviewConfig
    assert {row[0].strip("`") for row in rows} == set(model.model_fields)
    for key_cell, _, default in rows:
        expected = stated_default(default)
        actual = default_of(model, key_cell.strip("`"))
        assert expected == actual or (expected is None and actual is None), (key_cell, default)


def test_the_proposer_options_table_is_the_options_the_proposers_accept() -> None:
    rows = table_rows(README, "| option | proposer | meaning | default |")
    by_proposer: dict[str, set[str]] = {"tune": set(), "llm": set(), "agent": set()}
    for option_cell, proposers, _, _ in rows:
        for option in re.findall(r"`(\w+)`", option_cell):
            for proposer in re.findall(r"\w+", proposers):
                by_proposer[proposer].add(option)
    assert by_proposer == {"tune": set(TUNE_OPTIONS), "llm": set(LLM_OPTIONS),
                           "agent": set(AGENT_OPTIONS)}


def test_the_llm_defaults_in_the_options_table_are_the_codes() -> None:
    from autoresearch.proposers.llm.context import DEFAULT_CONTEXT_TOKENS
    from autoresearch.proposers.llm.settings import DEFAULT_MODELS, ProviderSettings

    rows = {re.findall(r"`(\w+)`", r[0])[0]: r[3]
            for r in table_rows(README, "| option | proposer | meaning | default |")}
    s = ProviderSettings.from_options({"provider": "ollama", "model": "m"}, env={})
    for key in ("max_tokens", "max_retries"):
        assert stated_default(rows[key]) == getattr(s, key), key
    assert rows["retry_base_seconds"] == f"{s.retry_base_seconds:g}, {s.retry_max_seconds:g}"
    assert f"llm {s.timeout_seconds:g}" in rows["timeout_seconds"]
    assert f"llm {DEFAULT_CONTEXT_TOKENS}" in rows["context_tokens"]
    assert stated_default(rows["prompt_caching"]) is s.prompt_caching
    assert all(f"`{m}`" in rows["model"] for m in DEFAULT_MODELS.values())


def toml_snippets() -> list[tuple[str, str]]:
    """Every `[table] key = value` span, and every ```toml block, of the README and the docs."""
    found = []
    for where, text in {"README.md": README, **DOCS}.items():
        found += [(where, m) for m in re.findall(r"`(\[\w+\] \w+ = [^`]+)`", text)]
        found += [(where, m) for m in re.findall(r"```toml\n(.*?)```", text, re.S)]
    return found


MINIMAL = """scope = ["train.py"]
[verify]
command = "python train.py"
budget_seconds = 60
[metric]
name = "loss"
direction = "minimize"
"""


@pytest.mark.parametrize(("where", "snippet"), toml_snippets())
def test_every_config_snippet_shown_is_accepted(where: str, snippet: str, tmp_path: Path) -> None:
    table, _, assignment = snippet.strip().partition("]")
    table = table.lstrip("[")
    body = assignment.strip() if "\n" not in snippet.strip() else snippet.split("\n", 1)[1]
    text = MINIMAL
    if f"[{table}]" in text:
        text = text.replace(f"[{table}]\n", f"[{table}]\n{body}\n")
    else:
        text += f"[{table}]\n{body}\n"
    load_config_text(text, tmp_path / "autoresearch.toml")  # raises ConfigError if refused


def test_there_are_config_snippets_to_check() -> None:
    assert len(toml_snippets()) >= 5


def github_anchor(heading: str) -> str:
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


@pytest.mark.parametrize("where", ["README.md", *DOCS])
def test_every_relative_link_leads_somewhere(where: str) -> None:
    text = README if where == "README.md" else DOCS[where]
    base = (CHECKOUT / where).parent
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue  # a URL: not checked offline
        path, _, anchor = target.partition("#")
        file = (base / path).resolve() if path else CHECKOUT / where
        if not file.exists():
            broken.append(target)
            continue
        if anchor and file.suffix == ".md":
            headings = re.findall(r"^#+ (.+)$", file.read_text(encoding="utf-8"), re.M)
            if anchor not in {github_anchor(h) for h in headings}:
                broken.append(target)
    assert not broken, f"{where}: links that lead nowhere: {broken}"


def test_every_benchmark_flag_shown_exists() -> None:
    """`python bench/X.py --flag` in the README or the docs: the script takes that flag."""
    wrong = []
    shown = 0
    for where, text in {"README.md": README, **DOCS}.items():
        joined = re.sub(r"\\\n\s*", " ", text)
        for script, rest in re.findall(r"python (bench/[\w/.-]+\.py)([^`\n]*)", joined):
            source = (CHECKOUT / script).read_text(encoding="utf-8")
            for flag in re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", rest.split("#", 1)[0]):
                shown += 1
                if f'"{flag}"' not in source:
                    wrong.append(f"{where}: {script} has no {flag}")
    assert shown >= 10, shown
    assert not wrong, "\n".join(wrong)
