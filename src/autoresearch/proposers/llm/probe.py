"""Whether the endpoint would answer, asked cheaply before any baseline run is spent.

`check` and the start of `run` call `probe_endpoint` (through `Provider.probe`): it lists the
server's models (every page), and only when listing is not supported, or the configured model is
not listed, sends the smallest request naming it. A refused key, a model the server neither lists
nor answers (with the nearest ones it does list), nothing listening at base_url, or a reply that
is not the API's stop the session with the fix; a temporary fault is only reported.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from autoresearch.proposers.faults import FatalProposerError
from autoresearch.proposers.llm.call_faults import (
    Fault,
    UnusableReply,
    classify,
    server_message,
    snippet,
)

if TYPE_CHECKING:
    from autoresearch.proposers.llm.providers import Provider

MAX_PROBE_SECONDS = 15.0  # `check` waits at most this long for the endpoint
MAX_LIST_PAGES = 20  # pages of the model list read at most (a server paging for ever is not read)
SHOWN_MODELS = 5  # models named when the one configured is not among them
# How servers refuse a request naming a model they do not serve: 404 (OpenAI, Anthropic, vLLM,
# Ollama), 400 (OpenRouter: "is not a valid model ID"), 422 (a validating proxy).
MODEL_REFUSED = (400, 404, 422)


def probe_endpoint(provider: Provider) -> str:
    """Ask the endpoint whether it would answer (for `check` and the start of `run`): list
    its models; send the smallest request where listing is not supported (said: the model
    could not be checked against a list), or when the model is not among those listed (a
    refusal of it then stops here, naming a few that are, before any baseline is spent). A
    refused key, an unknown model, nothing listening or a reply that is not the API's raise
    `FatalProposerError` with the fix; a temporary fault is only reported (the session waits
    those out). Returns one line saying what it found."""
    sdk = provider._sdk()
    s = provider.settings
    wait = min(s.timeout_seconds, MAX_PROBE_SECONDS)
    client = provider._make_client(sdk, wait)
    where = "[proposer] in autoresearch.toml and the environment"
    try:
        try:
            found = _listed_models(sdk, client)
        except (sdk.APIStatusError, UnusableReply) as exc:
            if isinstance(exc, sdk.APIStatusError) and int(exc.status_code) not in (
                    404, 405, 501):
                raise
            # Listing not supported here, or in a shape of its own (a proxy passing on
            # Ollama's /api/tags): one tiny request says whether chat works.
            provider._ping(client)
            why = (f"HTTP {exc.status_code}" if isinstance(exc, sdk.APIStatusError) else
                   "a reply in a shape of its own")
            return ("the endpoint answered a one-token request (its model list could not be "
                    f"read, {why}, so whether it lists {s.model!r} was not checked)"
                    + _price_note(provider))
        if not listed(s.model, found):
            return _confirm_unlisted(provider, sdk, client, found) + _price_note(provider)
    except Exception as exc:
        if isinstance(exc, FatalProposerError):
            raise
        if isinstance(exc, sdk.APITimeoutError):
            # The probe waits less than a call does: say both, since a local model loading
            # into memory answers a minute late, which run (not check) can wait for.
            return (f"could not confirm the endpoint now: {s.describe()}: no response "
                    f"within {wait:g} s (a model still loading?); run waits up to [proposer] "
                    f"timeout_seconds = {s.timeout_seconds:g} s for each call")
        fault = classify(exc, sdk, s)
        if fault is None:
            # The SDK could not even build the reply: whatever answered is not this API.
            fault = Fault("fatal", f"{s.describe()}: the reply is not an API reply "
                                   f"({type(exc).__name__}); is base_url the API's address?")
        if fault.kind == "fatal":
            raise FatalProposerError(fault.message, where=where,
                                     fix=s.fix_hint(fault.status)) from None
        if fault.refused_connection or isinstance(exc, (UnusableReply, json.JSONDecodeError)):
            raise FatalProposerError(
                fault.message, where=f"[proposer] base_url in autoresearch.toml "
                                     f"(now {s.base_url!r})",
                fix="start the model server, or set base_url to its API address") from None
        return f"could not confirm the endpoint now: {fault.message}; run waits such faults out"
    finally:
        client.close()
    return "the endpoint answers and lists the model" + _price_note(provider)

def _confirm_unlisted(provider: Provider, sdk: Any, client: Any, found: list[str]) -> str:
    """The server lists its models and `model` is not among them. Most servers then refuse
    it (OpenAI, vLLM, Ollama and Anthropic answer 404, OpenRouter 400), and `run` would stop
    only after its baseline: one tiny request naming it says which. A server that answers it
    anyway serves it under another name (an alias) or serves one model whatever the name
    (llama-server): said, not refused."""
    s = provider.settings
    some = few_models(s.model, found)
    try:
        provider._ping(client)
    except sdk.APIStatusError as exc:
        if int(exc.status_code) not in MODEL_REFUSED:
            raise  # a refused key, an outage: said as for any probe
        among = ("it lists none at all" if not found else
                 f"it lists {len(found)}: " + ", ".join(some)
                 + (f" and {len(found) - len(some)} more" if len(found) > len(some) else ""))
        raise FatalProposerError(
            f"{s.describe()}: the model is not among the server's models ({among}), and the "
            f"server refused a one-token request naming it (HTTP {exc.status_code}: "
            f"{server_message(exc)})",
            where="[proposer] model in autoresearch.toml",
            fix=(f"set [proposer] model to one the server lists (e.g. model = "
                 f"{json.dumps(some[0])})" if found else
                 "load or pull the model on the server, or set [proposer] model to one it "
                 "serves") + f"; check base_url too (now {s.base_url!r})",
        ) from None
    if not found:
        return (f"the endpoint lists no models, but answered a one-token request naming "
                f"{s.model!r}")
    return (f"the endpoint answers; model {s.model!r} is not among the {len(found)} models "
            f"it lists (e.g. {', '.join(some)}), but it answered a one-token request naming "
            "it (an alias, or a server that serves one model whatever the name)")

def _price_note(provider: Provider) -> str:
    """What `check` says about the cost of the calls: unknown on a paid endpoint (no price),
    nothing where the model runs on a server of the user's own."""
    s = provider.settings
    if provider.prices.price_for(s.model) is not None:
        return ""
    if s.is_metered:
        return (f"; no price known for {s.model}: its calls will be recorded with cost 0 and "
                f"[limits] max_usd cannot stop them (add it under [proposer] prices, "
                f"USD per million tokens)")
    return (f"; no price known for {s.model}, and not a paid API this knows: its calls are "
            f"recorded with cost 0 (a local server costs nothing; if tokens cost money here, "
            f"add it under [proposer] prices)")

def _listed_models(sdk: Any, client: Any) -> list[str]:
    """The ids of the models the server lists, every page of them (Anthropic's list comes
    20 to a page, the newest first, so an older model may be on the second)."""
    page = client.models.list()
    ids: list[str] = []
    for _ in range(MAX_LIST_PAGES):
        data = getattr(page, "data", None)
        if not isinstance(data, list):
            raise UnusableReply(snippet(page))
        ids += [str(getattr(m, "id", "")) for m in data]
        if not page.has_next_page():
            break
        page = page.get_next_page()
    return ids


# What a listed id may add to the name a server also takes for it: a date (Anthropic lists
# claude-sonnet-4-5-20250929 and takes claude-sonnet-4-5; OpenAI gpt-4o-2024-08-06) or Ollama's
# ":latest" (it lists qwen3:latest and takes qwen3). Any other prefix is another model: "gpt-4"
# is not "gpt-4o-mini", and a name the list only starts with is asked about (probe_endpoint).
_ALIAS_SUFFIX = re.compile(r"-\d{8}|-\d{4}-\d{2}-\d{2}|-latest|:latest")


def listed(model: str, found: Sequence[str]) -> bool:
    """Whether `model` is among the listed models, as itself or as the alias of a dated or
    `:latest` one."""
    return any(m == model or (m.startswith(model) and _ALIAS_SUFFIX.fullmatch(m[len(model):]))
               for m in found)


def few_models(model: str, found: Sequence[str]) -> list[str]:
    """A few of the listed models, the names nearest `model` first (a typo's fix leads; case
    aside: FOO-BAR is nearest foo-bar)."""
    lowered = {m.lower(): m for m in reversed(found)}
    near = [lowered[m] for m in difflib.get_close_matches(model.lower(), list(lowered),
                                                          n=SHOWN_MODELS, cutoff=0.5)]
    return (near + [m for m in found if m not in near])[:SHOWN_MODELS]
