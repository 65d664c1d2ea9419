"""`autoresearch review`: parallel reviewers, verified findings, red/yellow/purple; never approves.

    change.py      what is reviewed (a branch, a session, a diff file) and reading its files
    diff.py        the unified diff: added lines, removed lines, hunks
    reviewers/     offline analyzers (ruff, bandit, mypy), history, LLM angles; plugins
    scale.py       which reviewers run, in how many model calls, for a change of this size
    verify.py      LLM findings: the quote checked against the file, then a verifier's verdict
    aggregate.py   deduplicate, rank red/yellow/purple, cap the inline findings
    fingerprint.py stable ids that survive moved lines (re-reviews skip what was reported)
    budget.py      the cost cap of one review (--max-usd, [review] max_usd, a session's budget)
    pipeline.py    one review from start to finish
    outputs/       terminal, Markdown, SARIF 2.1.0, the GitHub review body, JSON
    store.py       reviews in the ledger
    gate.py        the research loop's review gate (`review_candidate`, `record_gate`)

Nothing is imported here, so `autoresearch --help` does not pay for the reviewers.
"""
