"""Ray as the tests set it up: the environment every Ray process of theirs needs, and a node
whose actor cannot start (as on one without autoresearch installed)."""

from __future__ import annotations

import pytest

from autoresearch.config import Config
from autoresearch.executor import RunRequest
from autoresearch.ray_executor import NodeRunner, RayExecutor
from autoresearch.stop_signals import SessionStopped

# Ray swaps 127.0.0.1 for the machine's address unless told not to, in every process; and a
# token left in ~/.ray by another cluster must not decide whether these processes can talk.
LOOPBACK = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "disabled"}


def stopped_on_a_node_without_autoresearch(config: Config, request: RunRequest,
                                           monkeypatch: pytest.MonkeyPatch) -> SessionStopped:
    """How the session stops when `request` goes to a node where the actor's class fails to
    import autoresearch; fails the test if the run does not stop it."""
    for name, value in LOOPBACK.items():  # before Ray is imported: it reads them then
        monkeypatch.setenv(name, value)
    import ray

    # Defined here, not at module level: Ray then ships the class by value, as it ships one
    # from a driver script, instead of having the node import this test module.
    class Uninstalled(NodeRunner):
        def __init__(self, *_: object) -> None:
            raise ModuleNotFoundError("No module named 'autoresearch'")

    executor = RayExecutor(config)
    try:
        executor._actor_class = ray.remote(Uninstalled)  # the seam: what the node can start
        with pytest.raises(SessionStopped) as stopped:
            executor.run(request)
    finally:
        executor.close()
    return stopped.value
