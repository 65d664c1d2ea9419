"""A query /api/session cannot read is answered 400 with what is wrong, what was sent, what is
expected and the fix, over real HTTP; a good one beside it still works."""

from __future__ import annotations

import httpx
import pytest

from tests.views.conftest import serve
from tests.views.ledger_factory import BuiltSession


@pytest.mark.parametrize(("query", "said"), [
    ("since=nope", "since='nope' is not a stamp: expected a whole number of 0 or more"),
    ("since=-3", "since='-3' is not a stamp: expected a whole number of 0 or more"),
    ("since=1.5", "since='1.5' is not a stamp: expected a whole number of 0 or more"),
    ("since=5&range=1", "range='1' is not a chart range: expected two finite numbers lo,hi"),
    ("since=5&range=a,b", "range='a,b' is not a chart range: expected two finite numbers lo,hi"),
    ("since=5&range=nan,1",
     "range='nan,1' is not a chart range: expected two finite numbers lo,hi"),
])
def test_a_bad_query_is_named_with_what_it_got_and_what_it_expects(
        demo_ro: BuiltSession, query: str, said: str) -> None:
    with serve(demo_ro.repo) as url:
        bad = httpx.get(f"{url}/api/session?{query}")
        assert bad.status_code == 400, bad.text
        body = bad.json()
        name = said.split("=", 1)[0]
        assert body["error"] == said, body
        assert body["where"] == f"the query parameter {name}", body
        assert body["fix"] and ("leave " + name + " out") in body["fix"], body
        good = httpx.get(f"{url}/api/session?since=0&range=-1.5,2")
        assert good.status_code == 200 and good.json()["full"], good.text
