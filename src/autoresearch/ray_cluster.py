"""The Ray cluster as the driver sees it (ray_executor.py): joining it, what its live nodes hold
for runs, and whether its head still answers.

Joining never starts a cluster of the session's own (its processes would outlive a killed
session, and bind beyond the loopback interface), and never lets "auto" pick one of several
clusters running on this machine (another user's, maybe): the address must then be named.
The head (its GCS) is what every driver and node talks to: Ray's core worker aborts a driver
60 s after losing it, saying only its own log line, so the executor's waits ask `HeadWatch`
first and stop the session with its own words.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from autoresearch.errors import PreconditionError

CONNECT_TIMEOUT_S = 60.0
# Ray's core worker aborts the driver 60 s after it lost the head (gcs_rpc_server_reconnect_
# timeout_s), printing only its own log line: the waits look first, and stop the session.
HEAD_CHECK_S = 2.0  # how often a wait looks whether the head still answers
HEAD_LOST_S = 6.0  # unanswered this long: the head is gone
# A head on this machine answers a TCP connect at once: a cluster whose GCS does not within
# this is gone (its raylet's command line outlives it for a while), and is not counted.
ANSWER_TIMEOUT_S = 0.5
ANSWER_AT_ONCE = 16  # connects tried in parallel, so many stale ones still cost ~1 s
WHERE = "[run] ray_address in autoresearch.toml (or --ray-address)"
START_FIX = ("start a cluster with `ray start --head` (and `ray start --address HEAD:6379` on "
             "each other node) and give the address it printed")


def import_ray() -> Any:
    try:
        import ray
    except ImportError as err:
        raise PreconditionError(
            'runs on a Ray cluster ([run] executor = "ray") need Ray, which is not installed',
            where="[run] executor in autoresearch.toml (or --executor ray)",
            fix="pip install 'autoresearch[ray]' here and on every node of the cluster, or run "
                "on this machine with executor = \"local\"") from err
    return ray


def connect(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> tuple[Any, bool]:
    """Join the cluster at `address`; returns the ray module and whether this call joined (so
    closing should leave). Never a cluster of its own: one that `ray.init` starts leaves
    processes behind when the driver is killed, and binds beyond the loopback interface."""
    # "auto" is read by Ray from RAY_ADDRESS when that is set: judged as the address it becomes.
    named = os.environ.get("RAY_ADDRESS", "") if address.strip() == "auto" else ""
    if "local" in (address.strip(), named.strip()):
        via = " (RAY_ADDRESS in the environment, read for ray_address \"auto\")" if named else ""
        raise PreconditionError(
            f"ray_address \"local\"{via} would start a Ray cluster inside the session, and its "
            "processes outlive a killed session", where=WHERE,
            fix=START_FIX + (", or unset RAY_ADDRESS" if named else ""))
    endpoint = _endpoint(address)
    if endpoint is not None and endpoint[0] in ("127.0.0.1", "localhost", "::1"):
        # Ray swaps a loopback address for the machine's own unless told not to, read when it
        # is imported: a head started with --node-ip-address=127.0.0.1 would not be found.
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    ray = import_ray()
    if ray.is_initialized():
        return ray, False
    target = address
    if address.strip() == "auto" and not named.strip():
        found = local_clusters()
        refuse_ambiguous_auto(found)
        if found is not None and len(found) == 1:
            # Joined by its address: Ray's "auto", seeing a stopped cluster's raylet beside it,
            # would join the one last started with `ray start`, and wait a minute if that is gone.
            (target,) = found
    if endpoint is not None:
        # Ray itself retries an address where nothing listens for minutes, saying little.
        try:
            socket.create_connection(endpoint, timeout=5).close()
        except OSError as err:
            raise PreconditionError(f"no Ray cluster answers at {address!r}: "
                                    f"{err.strerror or err}", where=WHERE, fix=START_FIX) from err
    options: dict[str, Any] = {"address": target, "logging_level": logging.ERROR,
                               "log_to_driver": False}
    failure: list[BaseException | None] = []

    def join() -> None:
        try:
            ray.init(**options)
            failure.append(None)
        except BaseException as err:  # handed to the caller's thread
            failure.append(err)

    joiner = threading.Thread(target=join, name="autoresearch-ray-connect", daemon=True)
    joiner.start()
    joiner.join(timeout_s)
    if not failure:
        raise PreconditionError(
            f"the Ray cluster at {address!r} did not let this machine join within {timeout_s:g} s",
            where=WHERE, fix="check the address (`ray status` on the head node); a cluster with "
            "token authentication needs its token here too (RAY_AUTH_TOKEN, or the file "
            "`ray get-auth-token` names)")
    if failure[0] is not None:
        raise PreconditionError(f"could not join the Ray cluster at {address!r}: {failure[0]}",
                                where=WHERE, fix=START_FIX) from failure[0]
    return ray, True


def local_clusters() -> set[str] | None:
    """The GCS addresses of the Ray clusters running on this machine, found as Ray's own "auto"
    finds them (the command lines of the raylets, whoever runs them) and kept when their head
    answers: a raylet outlives its stopped cluster's GCS for a while. None when this Ray cannot
    say (a private function of Ray's: another release may lack it)."""
    try:
        from ray._private import services

        find: Any = services.find_gcs_addresses  # untyped: what Ray's own "auto" reads
        listed = {str(found) for found in find()}
    except Exception:  # noqa: BLE001 - not knowing is no reason to refuse
        return None
    return answering(listed)


def answering(addresses: Iterable[str], timeout_s: float = ANSWER_TIMEOUT_S) -> set[str]:
    """The `addresses` (HOST:PORT) where something accepts a TCP connection within `timeout_s`,
    tried in parallel so that the answer takes about `timeout_s` however many are stale. One
    that is not HOST:PORT cannot be tried, and is kept: it may be a cluster."""
    listed = sorted(set(addresses))
    if not listed:
        return set()
    with ThreadPoolExecutor(max_workers=min(len(listed), ANSWER_AT_ONCE),
                            thread_name_prefix="autoresearch-ray-find") as pool:
        answers = list(pool.map(lambda address: _answers(address, timeout_s), listed))
    return {address for address, answered in zip(listed, answers, strict=True) if answered}


def _answers(address: str, timeout_s: float) -> bool:
    endpoint = _endpoint(address)
    if endpoint is None:
        return True
    try:
        socket.create_connection(endpoint, timeout=timeout_s).close()
    except OSError:
        return False
    return True


def refuse_ambiguous_auto(found: set[str] | None) -> None:
    """"auto" with more than one cluster on this machine: Ray would join the one last started
    with `ray start` (or any), silently, maybe another user's."""
    if found is None or len(found) < 2:
        return
    raise PreconditionError(
        f'ray_address "auto" does not say which cluster to join: {len(found)} Ray clusters run '
        f"on this machine, their heads answering at {', '.join(sorted(found))}, and Ray would "
        "pick one for you, another user's maybe", where=WHERE,
        fix="name the one to use: --ray-address HOST:PORT, or ray_address = \"HOST:PORT\" under "
            "[run] in autoresearch.toml (`ray status --address HOST:PORT` shows what each holds)")


def _endpoint(address: str) -> tuple[str, int] | None:
    """host and port of an address given as one (Ray's own "auto" is not)."""
    bare = address.removeprefix("ray://")
    host, _, port = bare.rpartition(":")
    if not host or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


@dataclass(frozen=True)
class Capacity:
    nodes: int
    cpus: float
    gpus: float
    runs_at_once: int  # how many runs' reservations the live nodes hold together

    def describe(self) -> str:
        return (f"{self.nodes} node{'s' * (self.nodes != 1)}, {self.cpus:g} CPUs, "
                f"{self.gpus:g} GPUs")


def capacity(nodes: Iterable[dict[str, Any]], cpus: float, gpus: float) -> Capacity:
    """What the cluster's live nodes (as `ray.nodes()` lists them) hold for runs that each
    reserve `cpus` CPUs and `gpus` GPUs; a run never spans nodes."""
    alive = [n.get("Resources", {}) for n in nodes if n.get("Alive")]
    fits = 0
    for have in alive:
        per_node = int(have.get("CPU", 0) // cpus)
        if gpus:
            per_node = min(per_node, int(have.get("GPU", 0) // gpus))
        fits += per_node
    return Capacity(len(alive), sum(h.get("CPU", 0) for h in alive),
                    sum(h.get("GPU", 0) for h in alive), fits)


class HeadWatch:
    """Whether the cluster's head (its GCS: every driver and node talks to it) still answers: a
    TCP connect at most every HEAD_CHECK_S, by whichever run's wait asks."""

    def __init__(self, endpoint: tuple[str, int] | None) -> None:
        self.endpoint = endpoint
        self._lock = threading.Lock()
        self._next = 0.0
        self._silent_since: float | None = None
        self.lost = False

    def check(self, now_too: bool = False) -> bool:
        """True once the head has not answered for HEAD_LOST_S (and from then on); `now_too`:
        look even if the last look was a moment ago."""
        if self.endpoint is None:
            return False
        with self._lock:
            now = time.monotonic()
            if self.lost or (now < self._next and not now_too):
                return self.lost
            self._next = now + HEAD_CHECK_S
            try:
                socket.create_connection(self.endpoint, timeout=HEAD_CHECK_S / 2).close()
                self._silent_since = None
            except OSError:
                self._silent_since = self._silent_since or now
                self.lost = now - self._silent_since >= HEAD_LOST_S
            return self.lost

    def settle(self) -> bool:
        """Whether the head is lost, once it answers or HEAD_LOST_S passed without an answer
        (after a lost actor: Ray's calls that ask the head would wait for it for 60 s)."""
        while not self.check(now_too=True):
            if self._silent_since is None:
                return False
            time.sleep(HEAD_CHECK_S / 4)
        return True




def gcs_endpoint(ray: Any, address: str) -> tuple[str, int] | None:
    """Where the head's GCS listens, as the joined driver knows it (else as given)."""
    with contextlib.suppress(Exception):
        found = _endpoint(str(ray.get_runtime_context().gcs_address))
        if found is not None:
            return found
    return _endpoint(address)


def shown_endpoint(endpoint: tuple[str, int] | None) -> str:
    return "?" if endpoint is None else f"{endpoint[0]}:{endpoint[1]}"


