"""The ledger's tables, as numbered migrations: a ledger at schema version N has run the first N.

One list for SQLite and PostgreSQL, applied in order at open (SQLite counts them in `PRAGMA
user_version`, PostgreSQL in the schema_version table). Written in SQLite's words, which the
PostgreSQL store translates (postgres.py): `INTEGER PRIMARY KEY` is an identity column,
INTEGER is BIGINT, BLOB is BYTEA, `WITHOUT ROWID` is dropped. A new table keeps to those words.
"""

from __future__ import annotations

from collections.abc import Iterator

MIGRATIONS: list[str] = [
    """
    CREATE TABLE runs (
        pk INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        job_name TEXT NOT NULL,
        spec_path TEXT NOT NULL,
        output_path TEXT NOT NULL,
        run_dir TEXT NOT NULL,
        backend TEXT NOT NULL,
        base_url TEXT,
        model TEXT NOT NULL,
        requests INTEGER NOT NULL,
        settings BLOB NOT NULL,
        created_at TEXT NOT NULL,
        output_written_at TEXT
    );
    CREATE TABLE batches (
        pk INTEGER PRIMARY KEY,
        run_pk INTEGER NOT NULL REFERENCES runs(pk),
        attempt INTEGER NOT NULL,
        shard INTEGER NOT NULL,
        first_seq INTEGER,
        request_file TEXT NOT NULL,
        requests INTEGER NOT NULL,
        bytes INTEGER NOT NULL,
        state TEXT NOT NULL,
        file_id TEXT,
        purpose_accepted INTEGER,
        intent_at TEXT,
        batch_id TEXT UNIQUE,
        processing_status TEXT,
        request_counts BLOB,
        created_at TEXT,
        ended_at TEXT,
        expires_at TEXT,
        archived_at TEXT,
        results_url TEXT,
        file_deleted INTEGER NOT NULL DEFAULT 0,
        adopted INTEGER NOT NULL DEFAULT 0,
        polls INTEGER NOT NULL DEFAULT 0,
        note TEXT,
        UNIQUE (run_pk, attempt, shard)
    );
    CREATE TABLE requests (
        run_pk INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        custom_id TEXT NOT NULL,
        PRIMARY KEY (run_pk, seq)
    ) WITHOUT ROWID;
    CREATE UNIQUE INDEX requests_by_custom_id ON requests (run_pk, custom_id);
    CREATE TABLE results (
        run_pk INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        status TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        batch_pk INTEGER NOT NULL,
        error_type TEXT,
        input_tokens INTEGER NOT NULL,
        output_tokens INTEGER NOT NULL,
        result BLOB NOT NULL,
        PRIMARY KEY (run_pk, seq)
    ) WITHOUT ROWID;
    """,
    """
    CREATE TABLE uploads (
        sha256 TEXT NOT NULL,
        backend_key TEXT NOT NULL,
        file_id TEXT NOT NULL,
        filename TEXT NOT NULL,
        size INTEGER NOT NULL,
        uploaded_at TEXT NOT NULL,
        PRIMARY KEY (sha256, backend_key)
    ) WITHOUT ROWID;
    CREATE TABLE run_attachments (
        run_pk INTEGER NOT NULL REFERENCES runs(pk),
        sha256 TEXT NOT NULL,
        backend_key TEXT NOT NULL,
        file_id TEXT NOT NULL,
        keep INTEGER NOT NULL,
        deleted INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (run_pk, sha256)
    ) WITHOUT ROWID;
    CREATE INDEX run_attachments_by_file_id ON run_attachments (file_id);
    """,
    """
    CREATE TABLE run_locks (
        run_id TEXT PRIMARY KEY,
        host TEXT NOT NULL,
        pid INTEGER NOT NULL,
        command TEXT NOT NULL,
        since TEXT NOT NULL
    );
    """,
    # The answer cache (DESIGN §10), in the portable words above: each
    # sent request's key, the rows that share another row's request (sent once, answered for all),
    # where a cached row's answer came from, and prompt-cache tokens per result.
    """
    ALTER TABLE requests ADD COLUMN request_key TEXT;
    ALTER TABLE results ADD COLUMN cached_batch_id TEXT;
    ALTER TABLE results ADD COLUMN cache_write_tokens INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE results ADD COLUMN cache_read_tokens INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE request_links (
        run_pk INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        primary_seq INTEGER NOT NULL,
        PRIMARY KEY (run_pk, seq)
    );
    CREATE TABLE answer_cache (
        scope TEXT NOT NULL,
        request_key TEXT NOT NULL,
        model TEXT NOT NULL,
        result BLOB NOT NULL,
        input_tokens INTEGER NOT NULL,
        output_tokens INTEGER NOT NULL,
        cache_write_tokens INTEGER NOT NULL,
        cache_read_tokens INTEGER NOT NULL,
        batch_id TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        run_id TEXT NOT NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (scope, request_key)
    );
    CREATE INDEX answer_cache_by_created_at ON answer_cache (created_at);
    """,
    # Cached answers get an id in the order they were stored, which a run's cached rows record
    # (requests.answer_id) when they are looked up: registering the run copies each answer by its
    # id, near the one before it, instead of probing the key index again at random.
    """
    CREATE TABLE answers (
        id INTEGER PRIMARY KEY,
        scope TEXT NOT NULL,
        request_key TEXT NOT NULL,
        model TEXT NOT NULL,
        result BLOB NOT NULL,
        input_tokens INTEGER NOT NULL,
        output_tokens INTEGER NOT NULL,
        cache_write_tokens INTEGER NOT NULL,
        cache_read_tokens INTEGER NOT NULL,
        batch_id TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        run_id TEXT NOT NULL,
        created_at TEXT NOT NULL,
        UNIQUE (scope, request_key)
    );
    INSERT INTO answers (scope, request_key, model, result, input_tokens, output_tokens, cache_write_tokens,
        cache_read_tokens, batch_id, attempt, run_id, created_at)
        SELECT scope, request_key, model, result, input_tokens, output_tokens, cache_write_tokens,
        cache_read_tokens, batch_id, attempt, run_id, created_at FROM answer_cache;
    DROP TABLE answer_cache;
    ALTER TABLE answers RENAME TO answer_cache;
    CREATE INDEX answer_cache_by_created_at ON answer_cache (created_at);
    ALTER TABLE requests ADD COLUMN answer_id INTEGER;
    """,
]


def statements(script: str) -> Iterator[str]:
    """A migration's statements, one at a time."""
    return (statement for statement in script.split(";") if statement.strip())
