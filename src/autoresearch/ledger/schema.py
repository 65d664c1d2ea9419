"""The ledger's schema as numbered migrations; `PRAGMA user_version` records how far a file is.

Append a migration to change the schema; never edit one that has shipped, since existing ledgers
have already run it.
"""

from __future__ import annotations

import functools
import sqlite3

MIGRATIONS: list[str] = [
    # 1: sessions, experiments, runs, metrics, fingerprints, usage, events
    """
    CREATE TABLE sessions (
        id INTEGER PRIMARY KEY,
        tag TEXT NOT NULL UNIQUE,
        branch TEXT NOT NULL,
        base_commit TEXT NOT NULL,
        worktree TEXT NOT NULL,
        metric TEXT NOT NULL,
        direction TEXT NOT NULL,
        config_json TEXT NOT NULL,
        proposer TEXT NOT NULL DEFAULT '',
        status TEXT NOT NULL DEFAULT 'created',
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        noise REAL,
        fingerprint_key TEXT
    );
    CREATE TABLE experiments (
        id TEXT PRIMARY KEY,
        session_id INTEGER NOT NULL REFERENCES sessions(id),
        seq INTEGER NOT NULL,
        kind TEXT NOT NULL DEFAULT 'candidate',
        status TEXT NOT NULL,
        hypothesis TEXT NOT NULL DEFAULT '',
        rationale TEXT NOT NULL DEFAULT '',
        proposer TEXT NOT NULL DEFAULT '',
        params_json TEXT,
        parent_commit TEXT,
        commit_sha TEXT,
        tree_sha TEXT,
        files_json TEXT,
        lines_added INTEGER NOT NULL DEFAULT 0,
        lines_removed INTEGER NOT NULL DEFAULT 0,
        objective REAL,
        incumbent_objective REAL,
        delta REAL,
        threshold REAL,
        decision_reason TEXT NOT NULL DEFAULT '',
        guards_json TEXT,
        attempts INTEGER NOT NULL DEFAULT 1,
        cost_usd REAL NOT NULL DEFAULT 0,
        worker TEXT NOT NULL DEFAULT 'inline',
        started_at REAL NOT NULL,
        finished_at REAL,
        UNIQUE (session_id, seq)
    );
    CREATE INDEX experiments_by_session ON experiments(session_id, seq);
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY,
        experiment_id TEXT NOT NULL REFERENCES experiments(id),
        role TEXT NOT NULL,
        idx INTEGER NOT NULL,
        attempt INTEGER NOT NULL DEFAULT 1,
        commit_sha TEXT NOT NULL,
        status TEXT NOT NULL,
        exit_code INTEGER,
        duration_s REAL,
        log_path TEXT,
        fingerprint_key TEXT,
        started_at REAL NOT NULL,
        finished_at REAL
    );
    CREATE INDEX runs_by_experiment ON runs(experiment_id);
    CREATE TABLE metrics (
        run_id INTEGER NOT NULL REFERENCES runs(id),
        name TEXT NOT NULL,
        value REAL,
        PRIMARY KEY (run_id, name)
    );
    CREATE TABLE fingerprints (
        key TEXT PRIMARY KEY,
        json TEXT NOT NULL
    );
    CREATE TABLE usage (
        id INTEGER PRIMARY KEY,
        experiment_id TEXT REFERENCES experiments(id),
        session_id INTEGER NOT NULL REFERENCES sessions(id),
        provider TEXT NOT NULL,
        model TEXT NOT NULL,
        purpose TEXT NOT NULL DEFAULT 'propose',
        input_tokens INTEGER NOT NULL DEFAULT 0,
        output_tokens INTEGER NOT NULL DEFAULT 0,
        cache_read_tokens INTEGER NOT NULL DEFAULT 0,
        cache_write_tokens INTEGER NOT NULL DEFAULT 0,
        cost_usd REAL NOT NULL DEFAULT 0,
        at REAL NOT NULL
    );
    CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        session_id INTEGER NOT NULL REFERENCES sessions(id),
        experiment_id TEXT,
        at REAL NOT NULL,
        kind TEXT NOT NULL,
        message TEXT NOT NULL,
        data_json TEXT
    );
    CREATE INDEX events_by_session ON events(session_id, id);
    """,
    # 2: a per-experiment version stamp, bumped by triggers on every write to the experiment or
    #    a new run of it, so live views can ask for "what changed since version V" whatever
    #    wrote it (dashboard updates send only that; see views/live.py).
    """
    ALTER TABLE experiments ADD COLUMN touched INTEGER NOT NULL DEFAULT 0;
    UPDATE experiments SET touched = rowid;
    CREATE INDEX experiments_touched ON experiments(touched);
    CREATE INDEX experiments_by_session_touched ON experiments(session_id, touched);
    CREATE TRIGGER experiments_touch_insert AFTER INSERT ON experiments BEGIN
        UPDATE experiments SET touched = (SELECT MAX(touched) FROM experiments) + 1
        WHERE id = NEW.id;
    END;
    CREATE TRIGGER experiments_touch_update AFTER UPDATE ON experiments
    WHEN NEW.touched = OLD.touched BEGIN
        UPDATE experiments SET touched = (SELECT MAX(touched) FROM experiments) + 1
        WHERE id = NEW.id;
    END;
    CREATE TRIGGER runs_touch_experiment AFTER INSERT ON runs BEGIN
        UPDATE experiments SET touched = (SELECT MAX(touched) FROM experiments) + 1
        WHERE id = NEW.experiment_id;
    END;
    """,
    # 3: code reviews (`autoresearch review`, the in-loop review gate) and their findings
    """
    CREATE TABLE reviews (
        id INTEGER PRIMARY KEY,
        subject_key TEXT NOT NULL,
        subject TEXT NOT NULL,
        kind TEXT NOT NULL,
        base_commit TEXT,
        head_commit TEXT,
        session_id INTEGER REFERENCES sessions(id),
        experiment_id TEXT REFERENCES experiments(id),
        started_at REAL NOT NULL,
        duration_s REAL NOT NULL,
        red INTEGER NOT NULL DEFAULT 0,
        yellow INTEGER NOT NULL DEFAULT 0,
        purple INTEGER NOT NULL DEFAULT 0,
        blocked INTEGER NOT NULL DEFAULT 0,
        input_tokens INTEGER NOT NULL DEFAULT 0,
        output_tokens INTEGER NOT NULL DEFAULT 0,
        cache_read_tokens INTEGER NOT NULL DEFAULT 0,
        cache_write_tokens INTEGER NOT NULL DEFAULT 0,
        cost_usd REAL NOT NULL DEFAULT 0,
        capped INTEGER NOT NULL DEFAULT 0,
        scale TEXT NOT NULL DEFAULT '',
        reviewers_json TEXT NOT NULL DEFAULT '[]',
        notes_json TEXT NOT NULL DEFAULT '[]'
    );
    CREATE INDEX reviews_by_subject ON reviews(subject_key, id);
    CREATE INDEX reviews_by_experiment ON reviews(experiment_id);
    CREATE TABLE review_findings (
        review_id INTEGER NOT NULL REFERENCES reviews(id),
        idx INTEGER NOT NULL,
        fingerprint TEXT NOT NULL,
        colour TEXT NOT NULL,
        path TEXT NOT NULL,
        start_line INTEGER NOT NULL,
        end_line INTEGER NOT NULL,
        angle TEXT NOT NULL,
        category TEXT NOT NULL,
        severity TEXT NOT NULL,
        title TEXT NOT NULL,
        body TEXT NOT NULL,
        evidence TEXT NOT NULL,
        confidence REAL NOT NULL,
        sources_json TEXT NOT NULL,
        inline INTEGER NOT NULL,
        known INTEGER NOT NULL,
        PRIMARY KEY (review_id, idx)
    );
    CREATE INDEX review_findings_by_fingerprint ON review_findings(fingerprint);
    """,
    # 4: a review recorded against an experiment (the in-loop review gate) bumps the
    #    experiment's version stamp like a new run does, whichever the engine writes first (the
    #    review or the verdict), so a live view shows the review without reading every review.
    """
    CREATE TRIGGER reviews_touch_experiment AFTER INSERT ON reviews
    WHEN NEW.experiment_id IS NOT NULL BEGIN
        UPDATE experiments SET touched = (SELECT MAX(touched) FROM experiments) + 1
        WHERE id = NEW.experiment_id;
    END;
    """,
]


@functools.cache
def tables_at(version: int) -> frozenset[str]:
    """The tables a ledger at schema `version` has (built once, in memory, from the migrations)."""
    conn = sqlite3.connect(":memory:")
    try:
        for script in MIGRATIONS[:version]:
            conn.executescript(script)
        return frozenset(name for (name,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'"))
    finally:
        conn.close()


def migrate(conn: sqlite3.Connection) -> int:
    """Bring a ledger up to the newest schema; returns the version it ended at."""
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    if version > len(MIGRATIONS):
        raise RuntimeError(
            f"this ledger has schema version {version}, newer than this autoresearch "
            f"understands ({len(MIGRATIONS)}); upgrade autoresearch"
        )
    for number in range(version + 1, len(MIGRATIONS) + 1):
        # One transaction per migration: a crash mid-way leaves the previous version intact.
        conn.executescript(
            "BEGIN;" + MIGRATIONS[number - 1] + f"; PRAGMA user_version = {number}; COMMIT;"
        )
    return len(MIGRATIONS)
