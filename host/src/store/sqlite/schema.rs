//! The SQLite schema, versioned by `PRAGMA user_version` and migrated
//! forward at open. Times are integer microseconds since the Unix epoch
//! (UTC), so they order and compare as numbers.

/// Each entry moves the schema one version forward; never edit a shipped one.
pub(super) const MIGRATIONS: &[&str] = &[
    // 1: runs and per-job state.
    "CREATE TABLE runs (
        id            INTEGER PRIMARY KEY AUTOINCREMENT,
        job           TEXT    NOT NULL,
        status        TEXT    NOT NULL,
        trigger       TEXT    NOT NULL,
        attempt       INTEGER NOT NULL,
        scheduled_for TEXT    NOT NULL,
        started_at    TEXT,
        ended_at      TEXT,
        exit_code     INTEGER,
        error         TEXT,
        fuel_used     INTEGER,
        module_sha256 TEXT,
        stdout        BLOB    NOT NULL DEFAULT x'',
        stderr        BLOB    NOT NULL DEFAULT x'',
        output_dropped INTEGER NOT NULL DEFAULT 0,
        payload       BLOB    NOT NULL DEFAULT x''
    );
    CREATE INDEX runs_by_job ON runs (job, id);
    CREATE INDEX runs_by_status ON runs (status);
    CREATE TABLE job_state (
        job       TEXT PRIMARY KEY,
        last_fire TEXT,
        paused    INTEGER NOT NULL DEFAULT 0
    );",
    // 2: what the host has in service for each job, and why a reload failed.
    "ALTER TABLE job_state ADD COLUMN module_sha256 TEXT;
    ALTER TABLE job_state ADD COLUMN loaded_at TEXT;
    ALTER TABLE job_state ADD COLUMN load_error TEXT;",
    // 3: the job world's key-value store, and runs started by other runs.
    "CREATE TABLE kv (
        job   TEXT NOT NULL,
        key   TEXT NOT NULL,
        value BLOB NOT NULL,
        PRIMARY KEY (job, key)
    ) WITHOUT ROWID;
    ALTER TABLE runs ADD COLUMN parent_run INTEGER;",
    // 4: times as integer microseconds (RFC 3339 text compared as strings
    // orders wrongly across offsets and precisions), and idempotency keys.
    // SQLite cannot change a column's type: the tables are rebuilt.
    "CREATE TABLE runs_v4 (
        id            INTEGER PRIMARY KEY AUTOINCREMENT,
        job           TEXT    NOT NULL,
        status        TEXT    NOT NULL,
        trigger       TEXT    NOT NULL,
        attempt       INTEGER NOT NULL,
        scheduled_for INTEGER NOT NULL,
        started_at    INTEGER,
        ended_at      INTEGER,
        exit_code     INTEGER,
        error         TEXT,
        fuel_used     INTEGER,
        module_sha256 TEXT,
        stdout        BLOB    NOT NULL DEFAULT x'',
        stderr        BLOB    NOT NULL DEFAULT x'',
        output_dropped INTEGER NOT NULL DEFAULT 0,
        payload       BLOB    NOT NULL DEFAULT x'',
        parent_run    INTEGER,
        idempotency_key TEXT
    );
    INSERT INTO runs_v4 (id, job, status, trigger, attempt, scheduled_for, started_at, ended_at, exit_code, error,
                         fuel_used, module_sha256, stdout, stderr, output_dropped, payload, parent_run)
        SELECT id, job, status, trigger, attempt,
               CAST(round(unixepoch(scheduled_for, 'subsec') * 1000) AS INTEGER) * 1000,
               CAST(round(unixepoch(started_at, 'subsec') * 1000) AS INTEGER) * 1000,
               CAST(round(unixepoch(ended_at, 'subsec') * 1000) AS INTEGER) * 1000,
               exit_code, error, fuel_used, module_sha256, stdout, stderr, output_dropped, payload, parent_run
        FROM runs;
    DROP TABLE runs;
    ALTER TABLE runs_v4 RENAME TO runs;
    CREATE INDEX runs_by_job ON runs (job, id);
    CREATE INDEX runs_by_status ON runs (status);
    CREATE UNIQUE INDEX runs_by_key ON runs (job, idempotency_key) WHERE idempotency_key IS NOT NULL;
    CREATE TABLE job_state_v4 (
        job           TEXT PRIMARY KEY,
        last_fire     INTEGER,
        paused        INTEGER NOT NULL DEFAULT 0,
        module_sha256 TEXT,
        loaded_at     INTEGER,
        load_error    TEXT
    );
    INSERT INTO job_state_v4 (job, last_fire, paused, module_sha256, loaded_at, load_error)
        SELECT job,
               CAST(round(unixepoch(last_fire, 'subsec') * 1000) AS INTEGER) * 1000,
               paused, module_sha256,
               CAST(round(unixepoch(loaded_at, 'subsec') * 1000) AS INTEGER) * 1000,
               load_error
        FROM job_state;
    DROP TABLE job_state;
    ALTER TABLE job_state_v4 RENAME TO job_state;",
    // 5: when a trigger was accepted: its idempotency key holds for
    // `KEY_WINDOW` from then, and a run due later than it was delayed.
    "ALTER TABLE runs ADD COLUMN triggered_at INTEGER;
    UPDATE runs SET triggered_at = scheduled_for WHERE trigger = 'manual';",
    // 6: why a job was paused, as its pauser said.
    "ALTER TABLE job_state ADD COLUMN paused_reason TEXT;",
    // 7: runs by when they were due, for a time window or one fire's
    // attempts over a long history (without it, both walk every run back
    // to the window).
    "CREATE INDEX runs_by_due ON runs (scheduled_for);",
];
