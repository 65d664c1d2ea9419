"""How to call each coding-agent CLI headless, and how to read what it spent.

    claude   Claude Code: `claude -p` (prompt on stdin), JSON output with the run's cost (the
             same result object ends `--output-format stream-json --verbose`), edit tools
             only (Bash disallowed: it cannot run a command, git included), edits accepted
             without asking.
    codex    OpenAI Codex CLI: `codex exec --json -` in the workspace-write sandbox (writes only in
             the worktree, git metadata read-only, no network); token usage from the
             `turn.completed` events of its JSONL stream, priced when `model` is set.
    aider    `aider --message-file ... --yes-always --no-auto-commits --no-suggest-shell-commands`
             on the in-scope files; cost from its "Tokens: ... Cost: ..." lines.
    custom   `command = "my-agent --prompt-file {prompt_file} --model {model}"`: placeholders
             {prompt_file}, {prompt}, {worktree}, {model}, {files} (alone: one argument per
             file; inside a longer argument: the names joined by spaces); without {prompt} or
             {prompt_file} the prompt goes to stdin. A JSON line with `total_cost_usd`/`cost_usd`
             and/or `usage` on stdout is read like Claude Code's.

The prompt goes through stdin or a file, never one argument: a large context would exceed the
kernel's limit on a single argument (128 KiB).
"""

from __future__ import annotations

import json
import logging
import math
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from autoresearch.errors import ConfigError
from autoresearch.proposers.agent.prompt import names_hypothesis
from autoresearch.proposers.base import Usage
from autoresearch.proposers.llm.prices import PriceTable

WHERE = "autoresearch.toml → [proposer]"
log = logging.getLogger(__name__)
# Far above the tokens of any real agent run: a larger count is garbage, and would overflow the
# float arithmetic of its price.
MAX_TOKENS = 10**12


@dataclass(frozen=True)
class Invocation:
    argv: list[str]
    stdin: str | None


@dataclass(frozen=True)
class AgentReport:
    """What the agent said at the end, what it cost, and whether it reported a failure."""

    text: str
    usage: Usage | None
    error: str | None = None
    cost_known: bool = True  # False: it reported no cost and its tokens (if any) have no price


def _json_lines(text: str) -> list[dict[str, Any]]:
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(obj, dict):
                out.append(obj)
    if not out:
        try:
            whole = json.loads(text)
        except json.JSONDecodeError:
            return []
        if isinstance(whole, dict):
            out.append(whole)
    return out


def _int(x: Any) -> int:
    """A token count the agent reported; 0 (unknown) unless it is a whole number in 0..MAX_TOKENS
    (JSON admits negatives, NaN and Infinity: a negative count would make a negative price)."""
    try:
        count = int(x or 0)
    except (TypeError, ValueError, OverflowError):
        count = -1
    if 0 <= count <= MAX_TOKENS:
        return count
    log.warning("an agent reported the token count %r: not a count (0 to %d), so it is "
                "recorded as 0", x, MAX_TOKENS)
    return 0


def reported_cost(value: Any, agent: str) -> float | None:
    """The cost in USD an agent reported, or None when it reported none or an impossible one.
    JSON admits NaN, Infinity and negatives: NaN cannot be stored in the ledger, and a negative
    cost would pay for later runs, so [limits] max_usd would never stop the session. An
    impossible cost is treated as no cost reported (priced from the tokens if they have a price,
    else unmetered), with a warning."""
    if value is None:
        return None
    cost: float | None = None
    if isinstance(value, int | float | str) and not isinstance(value, bool):
        try:
            cost = float(value)
        except (ValueError, OverflowError):
            cost = None
    if cost is None or not math.isfinite(cost) or cost < 0:
        log.warning("the %s agent reported the cost %r: not a cost in USD (a finite number, 0 or "
                    "more), so it is ignored and the run counted as if it reported none",
                    agent, value)
        return None
    return cost


def _with_plain_hypothesis(result: str, stdout: str) -> str:
    """The result's text, unless it names no hypothesis and the plain (non-JSON) output does: a
    custom agent may print `HYPOTHESIS: ...` and then a JSON line with only its cost, and what
    it said it tried must not give way to the fallback name of the change."""
    if names_hypothesis(result):
        return result
    plain = "\n".join(line for line in stdout.splitlines() if not line.lstrip().startswith("{"))
    if not names_hypothesis(plain):
        return result
    return "\n".join(x for x in (plain[-4000:], result) if x.strip())


class Preset:
    name = "custom"
    executable = ""
    scratch: tuple[str, ...] = ()  # files the CLI leaves in the worktree for itself

    def __init__(self, options: Mapping[str, Any], prices: PriceTable) -> None:
        self.options = options
        self.prices = prices
        self.model: str | None = str(options["model"]) if options.get("model") else None
        self.exe = str(options.get("executable") or self.executable)
        extra = options.get("extra_args") or []
        if isinstance(extra, str):
            extra = shlex.split(extra)
        self.extra_args = [str(a) for a in extra]

    def invocation(self, prompt: str, prompt_file: Path, worktree: Path,
                   files: Sequence[str]) -> Invocation:
        raise NotImplementedError

    def report(self, stdout: str, stderr: str, purpose: str) -> AgentReport:
        """Read a Claude-Code-like result object if there is one; else the plain output."""
        for obj in reversed(_json_lines(stdout)):
            if any(k in obj for k in ("total_cost_usd", "cost_usd", "usage", "result")):
                found = self._from_result(obj, purpose)
                return replace(found, text=_with_plain_hypothesis(found.text, stdout))
        return AgentReport(text=stdout[-4000:], usage=None, cost_known=False)

    def _from_result(self, obj: Mapping[str, Any], purpose: str) -> AgentReport:
        usage = obj.get("usage") if isinstance(obj.get("usage"), Mapping) else {}
        assert isinstance(usage, Mapping)
        model_usage = obj.get("modelUsage")
        model = self.model or (
            next(iter(model_usage)) if isinstance(model_usage, Mapping) and model_usage
            else str(obj.get("model") or self.name)
        )
        inp, out = _int(usage.get("input_tokens")), _int(usage.get("output_tokens"))
        c_read = _int(usage.get("cache_read_input_tokens"))
        c_write = _int(usage.get("cache_creation_input_tokens"))
        raw = obj.get("total_cost_usd", obj.get("cost_usd"))
        # A number only: a string was never read as a cost (aider's text is parsed on its own).
        reported = reported_cost(raw, self.name) if not isinstance(raw, str) else None
        cost = reported if reported is not None else self.prices.cost(
            model, inp, out, c_read, c_write)
        text = str(obj.get("result") or "")
        # Claude Code's error results: `is_error` (an API error, a refused login: the text says
        # which), or an `error_...` subtype (`error_max_turns`, `error_during_execution`), which
        # carries no `result` text and, in some versions, `is_error: false`.
        subtype = str(obj.get("subtype") or "")
        error = None
        if obj.get("is_error") or subtype.startswith("error"):
            error = "; ".join(x for x in (subtype if subtype != "success" else "", text) if x) \
                or "error"
        return AgentReport(
            text=text,
            usage=Usage(provider=f"agent:{self.name}", model=model, input_tokens=inp,
                        output_tokens=out, cache_read_tokens=c_read, cache_write_tokens=c_write,
                        cost_usd=cost, purpose=purpose),
            error=error,
            cost_known=reported is not None or self.prices.price_for(model) is not None,
        )


class ClaudePreset(Preset):
    name = "claude"
    executable = "claude"
    TOOLS = "Read,Edit,MultiEdit,Write,Glob,Grep,LS"

    def invocation(self, prompt: str, prompt_file: Path, worktree: Path,
                   files: Sequence[str]) -> Invocation:
        argv = [self.exe, "-p", "--output-format", "json", "--permission-mode", "acceptEdits",
                "--allowedTools", self.TOOLS, "--disallowedTools", "Bash"]
        if self.model:
            argv += ["--model", self.model]
        return Invocation(argv + self.extra_args, stdin=prompt)


class CodexPreset(Preset):
    name = "codex"
    executable = "codex"

    def invocation(self, prompt: str, prompt_file: Path, worktree: Path,
                   files: Sequence[str]) -> Invocation:
        argv = [self.exe, "exec", "--json", "--sandbox", "workspace-write"]
        if self.model:
            argv += ["--model", self.model]
        return Invocation(argv + self.extra_args + ["-"], stdin=prompt)

    def report(self, stdout: str, stderr: str, purpose: str) -> AgentReport:
        inp = out = cached = 0
        text = ""
        error: str | None = None
        for ev in _json_lines(stdout):
            kind = ev.get("type")
            msg = ev.get("msg") if isinstance(ev.get("msg"), Mapping) else None
            if kind == "turn.completed" and isinstance(ev.get("usage"), Mapping):
                u = ev["usage"]
                inp += _int(u.get("input_tokens"))
                cached += _int(u.get("cached_input_tokens"))
                out += _int(u.get("output_tokens"))
            elif kind == "item.completed" and isinstance(ev.get("item"), Mapping):
                item = ev["item"]
                if item.get("type") in ("agent_message", "assistant_message"):
                    text = str(item.get("text") or text)
            elif kind in ("turn.failed", "error"):
                err = ev.get("error")
                error = str(err.get("message") if isinstance(err, Mapping) else ev.get("message"))
            elif msg is not None and msg.get("type") == "agent_message":
                text = str(msg.get("message") or text)  # the older event format
        # OpenAI counts cached input inside input_tokens; the ledger keeps them apart.
        fresh = max(inp - cached, 0)
        # Codex does not say which model it used: without [proposer] model the tokens are
        # recorded unpriced rather than priced as a guess.
        cost = self.prices.cost(self.model, fresh, out, cached, 0) if self.model else 0.0
        usage = Usage(provider="agent:codex", model=self.model or "codex-default", input_tokens=fresh,
                      output_tokens=out, cache_read_tokens=cached, cost_usd=cost, purpose=purpose)
        return AgentReport(text=text or stdout[-4000:], usage=usage, error=error,
                           cost_known=bool(self.model) and self.prices.price_for(
                               self.model or "") is not None)


_AIDER_TOKENS = re.compile(r"Tokens:\s*(?P<body>[^\n]*?)(?:\.\s*Cost:|$)", re.MULTILINE)
_AIDER_COST = re.compile(r"Cost:\s*\$(?P<msg>[\d.]+)\s*message,\s*\$(?P<session>[\d.]+)\s*session")
_AIDER_PART = re.compile(r"([\d.]+)\s*([kKmM]?)\s+(sent|received|cache write|cache hit)")


def _scaled(number: str, suffix: str) -> int:
    try:  # the pattern also matches "1.2.3": garbage counts as nothing, never a crash
        return _int(float(number) * {"": 1, "k": 1_000, "m": 1_000_000}[suffix.lower()])
    except ValueError:
        return 0


class AiderPreset(Preset):
    name = "aider"
    executable = "aider"
    scratch = (".aider*",)

    def invocation(self, prompt: str, prompt_file: Path, worktree: Path,
                   files: Sequence[str]) -> Invocation:
        scratch_dir = prompt_file.parent
        argv = [self.exe, "--message-file", str(prompt_file), "--yes-always", "--no-auto-commits",
                "--no-dirty-commits", "--no-suggest-shell-commands", "--no-gitignore",
                "--no-check-update", "--no-pretty",
                "--no-stream", "--no-show-model-warnings",
                "--chat-history-file", str(scratch_dir / "aider.chat.md"),
                "--input-history-file", str(scratch_dir / "aider.input")]
        if self.model:
            argv += ["--model", self.model]
        return Invocation(argv + self.extra_args + list(files), stdin=None)

    def report(self, stdout: str, stderr: str, purpose: str) -> AgentReport:
        counts = {"sent": 0, "received": 0, "cache write": 0, "cache hit": 0}
        for m in _AIDER_TOKENS.finditer(stdout):
            for number, suffix, kind in _AIDER_PART.findall(m.group("body")):
                counts[kind] += _scaled(number, suffix)
        costs = list(_AIDER_COST.finditer(stdout))
        model = self.model or "aider-default"
        cached = counts["cache hit"]
        fresh = max(counts["sent"] - cached, 0)
        said = reported_cost(costs[-1].group("session"), self.name) if costs else None
        cost = said if said is not None else self.prices.cost(
            model, fresh, counts["received"], cached, counts["cache write"])
        usage = Usage(provider="agent:aider", model=model, input_tokens=fresh,
                      output_tokens=counts["received"], cache_read_tokens=cached,
                      cache_write_tokens=counts["cache write"], cost_usd=cost, purpose=purpose)
        return AgentReport(text=stdout[-4000:], usage=usage,
                           cost_known=said is not None or self.prices.price_for(model) is not None)


class CustomPreset(Preset):
    name = "custom"

    def __init__(self, options: Mapping[str, Any], prices: PriceTable) -> None:
        super().__init__(options, prices)
        command = options.get("command")
        if isinstance(command, str):
            self.template = shlex.split(command)
        elif isinstance(command, list) and command:
            self.template = [str(a) for a in command]
        else:
            raise ConfigError(
                'agent = "custom" needs a command template',
                where=f"{WHERE} command",
                fix='e.g. command = "my-agent --prompt-file {prompt_file} --cwd {worktree}"',
            )

    def invocation(self, prompt: str, prompt_file: Path, worktree: Path,
                   files: Sequence[str]) -> Invocation:
        values = {"prompt_file": str(prompt_file), "prompt": prompt, "worktree": str(worktree),
                  "model": self.model or "", "files": " ".join(files)}
        uses_prompt = any("{prompt" in a for a in self.template)
        argv = []
        for arg in self.template:
            if arg == "{files}":
                argv += list(files)  # one argument per file, spaces in names and all
                continue
            for key, value in values.items():
                arg = arg.replace("{" + key + "}", value)
            argv.append(arg)
        return Invocation(argv + self.extra_args, stdin=None if uses_prompt else prompt)


PRESETS: dict[str, type[Preset]] = {
    "claude": ClaudePreset, "claude-code": ClaudePreset,
    "codex": CodexPreset,
    "aider": AiderPreset,
    "custom": CustomPreset,
}


def make_preset(options: Mapping[str, Any], prices: PriceTable) -> Preset:
    name = str(options.get("agent") or options.get("preset") or "claude").lower()
    if name not in PRESETS:
        raise ConfigError(
            f"unknown agent preset {name!r}",
            where=f"{WHERE} agent",
            fix="use claude, codex, aider, or custom (with command = \"...\")",
        )
    return PRESETS[name](options, prices)
