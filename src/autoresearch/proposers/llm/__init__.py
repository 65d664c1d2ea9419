"""The `llm` proposer: experiments proposed by a model API (Anthropic or OpenAI-compatible).

Modules, one job each: `settings` (options → endpoint), `providers` (the API call, retries,
usage), `prices` (USD per token), `context` (what the model sees), `prompts` (what it is told),
`edits` (the reply format's parser and applier), `proposer` (the conversation).
"""

from autoresearch.proposers.llm.proposer import LLMProposer

__all__ = ["LLMProposer"]
