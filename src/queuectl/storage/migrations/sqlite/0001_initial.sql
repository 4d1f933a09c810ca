-- Jobs. `seq` orders FIFO; `id` is the user-visible identifier.
-- Times are epoch seconds (REAL, UTC).
CREATE TABLE jobs (
    seq              INTEGER PRIMARY KEY,
    id               TEXT    NOT NULL UNIQUE,
    command          TEXT    NOT NULL,
    state            TEXT    NOT NULL CHECK (state IN
                         ('pending', 'running', 'completed', 'failed', 'dead', 'canceled')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    max_retries      INTEGER NOT NULL,
    priority         INTEGER NOT NULL DEFAULT 0,
    queue            TEXT    NOT NULL DEFAULT 'default',
    timeout          REAL,
    next_attempt_at  REAL,
    created_at       REAL    NOT NULL,
    updated_at       REAL    NOT NULL,
    started_at       REAL,
    finished_at      REAL,
    exit_code        INTEGER,
    last_error       TEXT,
    worker_id        TEXT,
    lease_expires_at REAL,
    runs             INTEGER NOT NULL DEFAULT 0,
    recoveries       INTEGER NOT NULL DEFAULT 0
);

-- The claim walks this index in claim order: highest priority, then oldest.
CREATE INDEX jobs_claim_order ON jobs (priority DESC, seq)
    WHERE state IN ('pending', 'failed');

-- Claims of workers limited to some queues (worker start --queue).
CREATE INDEX jobs_claim_by_queue ON jobs (queue, priority DESC, seq)
    WHERE state IN ('pending', 'failed');

-- list --state, status counts.
CREATE INDEX jobs_by_state ON jobs (state, seq);

-- Heartbeats and lease recovery touch only running jobs.
CREATE INDEX jobs_running ON jobs (worker_id, lease_expires_at)
    WHERE state = 'running';

CREATE TABLE workers (
    id             TEXT    PRIMARY KEY,
    host           TEXT    NOT NULL,
    pid            INTEGER NOT NULL,
    started_at     REAL    NOT NULL,
    last_heartbeat REAL    NOT NULL,
    concurrency    INTEGER NOT NULL,
    queues         TEXT    NOT NULL,  -- JSON array; [] = every queue
    stop_requested INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE config (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
