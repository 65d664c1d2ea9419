"""A stand-in for a remote backend: each run's commit travels as a git bundle into a clone of
its own (another directory, as another machine would have), is measured there, and comes back
as data (its log copied back to where the session keeps logs).

It proves the executor seam: a new backend is a new executor, not a new loop.
"""

from __future__ import annotations

import shutil
import threading
from concurrent.futures import Future
from dataclasses import replace
from pathlib import Path

from autoresearch import gitops
from autoresearch.config import Config
from autoresearch.executor import LocalExecutor, Measurement, RunRequest


class BundleExecutor:
    def __init__(self, config: Config, root: Path, remote: Path,
                 stop: threading.Event | None = None) -> None:
        self.root = root
        self.remote = remote  # "the other machine": its clone, its bundles, its logs
        self.clone = remote / "clone"
        self.runner = LocalExecutor(config, stop)
        self.shipped: list[str] = []  # the commits that travelled, in order

    def run(self, request: RunRequest) -> Measurement:
        return self.submit(request).result()

    def submit(self, request: RunRequest) -> Future[Measurement]:
        bundle = gitops.create_bundle(self.root, request.commit,
                                      self.remote / "bundles" / f"{request.commit}.bundle")
        self.shipped += gitops.fetch_bundle(self.clone, bundle)
        there = replace(request, worktree=self.clone,
                        log_path=self.remote / "logs" / request.log_path.name)
        measured = self.runner.run(there)  # runs in the clone, at the commit it received
        request.log_path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(there.log_path, request.log_path)
        done: Future[Measurement] = Future()
        done.set_result(replace(measured, log_path=request.log_path))
        return done

    def close(self) -> None:
        self.runner.close()
