"""Planted bugs, one repository each, of every class the review must catch.

Each case is ordinary project code: a module on `main`, sometimes a history of fix commits, and a
feature branch whose commit adds or changes code with one bug in it. The label (`Bug`) names the
bug's line by its text; the reviewers never see the labels.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from bench.review_eval.repo import Bug, Built, RepoBuilder

STATS_BASE = '''
"""Summary statistics for the metrics dashboard."""


def mean(values):
    if not values:
        raise ValueError("mean of nothing")
    return sum(values) / len(values)
'''


def off_by_one_window(path: Path) -> Built:
    repo = RepoBuilder(path)
    repo.commit("stats module", {"stats.py": STATS_BASE})
    repo.feature("Add moving_average for the latency chart", {"stats.py": STATS_BASE + '''

def moving_average(values, window):
    """Mean of every run of `window` consecutive values, in order."""
    if window <= 0:
        raise ValueError("window must be positive")
    averages = []
    for start in range(len(values) - window):
        chunk = values[start:start + window]
        averages.append(sum(chunk) / window)
    return averages


def deltas(values):
    """Differences between consecutive values."""
    return [values[i + 1] - values[i] for i in range(len(values) - 1)]
'''})
    return Built(path, [Bug("stats.py", "for start in range(len(values) - window):", "off-by-one",
                            frozenset({"logic"}))])


def off_by_one_index(path: Path) -> Built:
    repo = RepoBuilder(path)
    repo.commit("playlist", {"playlist.py": '''
        class Playlist:
            def __init__(self, tracks):
                self.tracks = list(tracks)

            def __len__(self):
                return len(self.tracks)
        '''})
    repo.feature("Playlist.track(index) with bounds checking", {"playlist.py": '''
        class Playlist:
            def __init__(self, tracks):
                self.tracks = list(tracks)

            def __len__(self):
                return len(self.tracks)

            def track(self, index):
                """The track at `index`; a clear error past the end."""
                if index < 0 or index > len(self.tracks):
                    raise IndexError(f"no track {index}: the playlist has {len(self)}")
                return self.tracks[index]
        '''})
    return Built(path, [Bug("playlist.py", "if index < 0 or index > len(self.tracks):",
                            "off-by-one", frozenset({"logic"}))])


def swallowed_settings(path: Path) -> Built:
    repo = RepoBuilder(path)
    repo.commit("app", {"app/__init__.py": "", "app/main.py": '''
        from app import settings


        def start():
            config = settings.load("settings.json")
            return config.get("port", 8000)
        ''', "app/settings.py": '''
        import json


        def load(path):
            with open(path, encoding="utf-8") as fh:
                return json.load(fh)
        '''})
    repo.feature("Settings: fall back to defaults", {"app/settings.py": '''
        import json

        DEFAULTS = {"port": 8000, "debug": False}


        def load(path):
            """The settings file merged over the defaults."""
            try:
                with open(path, encoding="utf-8") as fh:
                    data = json.load(fh)
            except Exception:
                return dict(DEFAULTS)
            return {**DEFAULTS, **data}
        '''})
    return Built(path, [Bug("app/settings.py", "except Exception:", "swallowed-exception",
                            frozenset({"error-handling"}), lines=2)])


def swallowed_loop(path: Path) -> Built:
    repo = RepoBuilder(path)
    repo.commit("mailer", {"mailer.py": '''
        import smtplib


        def send_all(server, messages):
            sent = 0
            for message in messages:
                server.send_message(message)
                sent += 1
            return sent
        '''})
    repo.feature("Mailer: keep going when one message fails", {"mailer.py": '''
        import smtplib


        def send_all(server, messages):
            sent = 0
            for message in messages:
                try:
                    server.send_message(message)
                except:
                    continue
                sent += 1
            return sent
        '''})
    return Built(path, [Bug("mailer.py", "except:", "swallowed-exception",
                            frozenset({"error-handling"}), lines=2)])


def shell_git_log(path: Path) -> Built:
    repo = RepoBuilder(path)
    repo.commit("release notes", {"notes.py": '''
        import subprocess


        def tags(repo):
            out = subprocess.run(["git", "-C", repo, "tag"], capture_output=True, text=True,
                                 check=True).stdout
            return out.split()
        '''})
    repo.feature("Release notes: commits by author", {"notes.py": '''
        import subprocess


        def tags(repo):
            out = subprocess.run(["git", "-C", repo, "tag"], capture_output=True, text=True,
                                 check=True).stdout
            return out.split()


        def commits_by(repo, author):
            """One line per commit of `author` (as typed in the web form)."""
            out = subprocess.check_output(f"git -C {repo} log --oneline --author={author}",
                                          shell=True, text=True)
            return out.splitlines()
        '''})
    return Built(path, [Bug("notes.py", 'out = subprocess.check_output(f"git -C {repo} log',
                            "shell-injection", frozenset({"injection", "security"}), lines=2)])


def shell_os_system(path: Path) -> Built:
    repo = RepoBuilder(path)
    repo.commit("backup", {"backup.py": '''
        import shutil


        def copy(src, dest):
            shutil.copytree(src, dest)
        '''})
    repo.feature("Backup: compressed archives", {"backup.py": '''
        import os
        import shutil


        def copy(src, dest):
            shutil.copytree(src, dest)


        def archive(src, name):
            """Write name.tar.gz with the contents of src."""
            status = os.system("tar czf %s.tar.gz %s" % (name, src))
            if status != 0:
                raise RuntimeError(f"tar failed with {status}")
        '''})
    return Built(path, [Bug("backup.py", 'status = os.system("tar czf', "shell-injection",
                            frozenset({"injection", "security"}))])


def sql_format(path: Path) -> Built:
    repo = RepoBuilder(path)
    repo.commit("users", {"users.py": '''
        import sqlite3


        def connect(path):
            return sqlite3.connect(path)


        def by_id(conn, user_id):
            return conn.execute("SELECT id, name FROM users WHERE id = ?", (user_id,)).fetchone()
        '''})
    repo.feature("Users: look up by e-mail", {"users.py": '''
        import sqlite3


        def connect(path):
            return sqlite3.connect(path)


        def by_id(conn, user_id):
            return conn.execute("SELECT id, name FROM users WHERE id = ?", (user_id,)).fetchone()


        def by_email(conn, email):
            cur = conn.cursor()
            cur.execute("SELECT id, name FROM users WHERE email = '%s'" % email)
            return cur.fetchone()
        '''})
    return Built(path, [Bug("users.py", "cur.execute(\"SELECT id, name FROM users WHERE email",
                            "sql-concatenation", frozenset({"sql", "injection", "security"}))])


def sql_variable(path: Path) -> Built:
    repo = RepoBuilder(path)
    repo.commit("sessions", {"sessions.py": '''
        def active(conn):
            return conn.execute("SELECT user_id FROM sessions WHERE active = 1").fetchall()
        '''})
    repo.feature("Sessions: log a user out everywhere", {"sessions.py": '''
        def active(conn):
            return conn.execute("SELECT user_id FROM sessions WHERE active = 1").fetchall()


        def logout_everywhere(conn, user_name):
            query = "DELETE FROM sessions WHERE user_name = '" + user_name + "'"
            conn.execute(query)
            conn.commit()
        '''})
    return Built(path, [Bug("sessions.py", "query = \"DELETE FROM sessions", "sql-concatenation",
                            frozenset({"sql", "injection", "security"}), lines=2)])


def leak_file(path: Path) -> Built:
    repo = RepoBuilder(path)
    repo.commit("import", {"importer.py": '''
        import csv


        def header(path):
            with open(path, newline="") as fh:
                return next(csv.reader(fh))
        '''})
    repo.feature("Importer: read every row", {"importer.py": '''
        import csv


        def header(path):
            with open(path, newline="") as fh:
                return next(csv.reader(fh))


        def rows(path):
            """Every row after the header, as dicts."""
            fh = open(path, newline="")
            reader = csv.DictReader(fh)
            return [dict(row) for row in reader]
        '''})
    return Built(path, [Bug("importer.py", 'fh = open(path, newline="")', "resource-leak",
                            frozenset({"resource"}))])


def leak_socket(path: Path) -> Built:
    repo = RepoBuilder(path)
    repo.commit("probe", {"probe.py": '''
        import socket


        def resolve(host):
            return socket.gethostbyname(host)
        '''})
    repo.feature("Probe: read a service banner", {"probe.py": '''
        import socket


        def resolve(host):
            return socket.gethostbyname(host)


        def banner(host, port):
            """The first line a TCP service sends."""
            conn = socket.create_connection((host, port), timeout=5)
            data = conn.recv(1024)
            return data.decode("ascii", "replace").splitlines()[0]
        '''})
    return Built(path, [Bug("probe.py", "conn = socket.create_connection((host, port)",
                            "resource-leak", frozenset({"resource"}))])


def race_counter(path: Path) -> Built:
    repo = RepoBuilder(path)
    repo.commit("tickets", {"tickets.py": '''
        from concurrent.futures import ThreadPoolExecutor


        def handle(requests, worker):
            with ThreadPoolExecutor(max_workers=8) as pool:
                return list(pool.map(worker, requests))
        '''})
    repo.feature("Tickets: number each request from a counter file", {"tickets.py": '''
        from concurrent.futures import ThreadPoolExecutor

        COUNTER = "ticket-counter.txt"


        def next_ticket(path=COUNTER):
            """The next ticket number, kept in a file shared by every worker."""
            with open(path, encoding="utf-8") as fh:
                current = int(fh.read().strip() or 0)
            with open(path, "w", encoding="utf-8") as fh:
                fh.write(str(current + 1))
            return current + 1


        def handle(requests, worker):
            with ThreadPoolExecutor(max_workers=8) as pool:
                return list(pool.map(lambda r: worker(r, next_ticket()), requests))
        '''})
    return Built(path, [Bug("tickets.py", "with open(path, encoding=\"utf-8\") as fh:",
                            "race", frozenset({"concurrency"}), lines=4)])


def race_lockfile(path: Path) -> Built:
    repo = RepoBuilder(path)
    repo.commit("job", {"job.py": '''
        import os


        def run(job):
            return job()
        '''})
    repo.feature("Job: one instance at a time", {"job.py": '''
        import os

        LOCK = "job.lock"


        def run(job, lock=LOCK):
            """Run `job` unless another process already runs it."""
            if os.path.exists(lock):
                return None
            with open(lock, "w", encoding="utf-8") as fh:
                fh.write(str(os.getpid()))
            try:
                return job()
            finally:
                os.remove(lock)
        '''})
    return Built(path, [Bug("job.py", "if os.path.exists(lock):", "race",
                            frozenset({"concurrency"}), lines=4)])


def reintroduced_verify(path: Path) -> Built:
    repo = RepoBuilder(path)
    repo.commit("client", {"client.py": '''
        import requests


        def fetch(session, url):
            response = session.get(url, verify=False)
            response.raise_for_status()
            return response.json()
        '''})
    repo.commit("Fix: verify TLS certificates when fetching", {"client.py": '''
        import requests


        def fetch(session, url):
            response = session.get(url, timeout=10)
            response.raise_for_status()
            return response.json()
        '''})
    repo.commit("Add a user agent", {"client.py": '''
        import requests

        USER_AGENT = "fetcher/1.0"


        def fetch(session, url):
            response = session.get(url, timeout=10)
            response.raise_for_status()
            return response.json()
        '''})
    repo.feature("Client: retry once on a connection error", {"client.py": '''
        import requests

        USER_AGENT = "fetcher/1.0"


        def fetch(session, url):
            try:
                response = session.get(url, timeout=10)
            except requests.ConnectionError:
                response = session.get(url, verify=False)
            response.raise_for_status()
            return response.json()
        '''})
    return Built(path, [Bug("client.py", "response = session.get(url, verify=False)",
                            "reintroduced", frozenset({"regression", "security"}))])


def reintroduced_retries(path: Path) -> Built:
    repo = RepoBuilder(path)
    repo.commit("retry", {"retry.py": '''
        import time


        def call(fn, retries=3, pause=0.5):
            for attempt in range(retries - 1):
                try:
                    return fn()
                except OSError:
                    time.sleep(pause * (attempt + 1))
            raise TimeoutError(f"gave up after {retries} attempts")
        '''})
    repo.commit("Fix retry loop: it made one attempt too few", {"retry.py": '''
        import time


        def call(fn, retries=3, pause=0.5):
            for attempt in range(retries):
                try:
                    return fn()
                except OSError:
                    time.sleep(pause * (attempt + 1))
            raise TimeoutError(f"gave up after {retries} attempts")
        '''})
    repo.feature("Retry: exponential backoff", {"retry.py": '''
        import time


        def call(fn, retries=3, pause=0.5):
            """Call fn, retrying on OSError with exponential backoff."""
            for attempt in range(retries - 1):
                try:
                    return fn()
                except OSError:
                    time.sleep(pause * 2 ** attempt)
            raise TimeoutError(f"gave up after {retries} attempts")
        '''})
    return Built(path, [Bug("retry.py", "for attempt in range(retries - 1):", "reintroduced",
                            frozenset({"regression", "logic"}))])


BUG_CASES: dict[str, Callable[[Path], Built]] = {
    "off-by-one/window": off_by_one_window,
    "off-by-one/index": off_by_one_index,
    "swallowed/settings": swallowed_settings,
    "swallowed/loop": swallowed_loop,
    "shell/git-log": shell_git_log,
    "shell/os-system": shell_os_system,
    "sql/format": sql_format,
    "sql/variable": sql_variable,
    "leak/file": leak_file,
    "leak/socket": leak_socket,
    "race/counter-file": race_counter,
    "race/lock-file": race_lockfile,
    "reintroduced/verify": reintroduced_verify,
    "reintroduced/retries": reintroduced_retries,
}
