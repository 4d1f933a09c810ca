-- Same schema and numbering as migrations/sqlite/0001_initial.sql.
-- Times are epoch seconds (double precision, UTC) taken from the database clock.

-- The database clock as every query reads it. The transaction setting
-- queuectl.fake_now (epoch seconds; never set in production) lets tests set the
-- time the way SQLite's injected clock does, without waiting.
CREATE FUNCTION queuectl_now() RETURNS double precision
LANGUAGE sql STABLE AS $$
    SELECT coalesce(nullif(current_setting('queuectl.fake_now', true), '')::double precision,
                    extract(epoch FROM now())::double precision)
$$;
CREATE TABLE jobs (
    seq              bigserial        PRIMARY KEY,
    id               text             NOT NULL UNIQUE,
    command          text             NOT NULL,
    state            text             NOT NULL CHECK (state IN
                         ('pending', 'running', 'completed', 'failed', 'dead', 'canceled')),
    attempts         integer          NOT NULL DEFAULT 0,
    max_retries      integer          NOT NULL,
    priority         integer          NOT NULL DEFAULT 0,
    queue            text             NOT NULL DEFAULT 'default',
    timeout          double precision,
    next_attempt_at  double precision,
    created_at       double precision NOT NULL,
    updated_at       double precision NOT NULL,
    started_at       double precision,
    finished_at      double precision,
    exit_code        integer,
    last_error       text,
    worker_id        text,
    lease_expires_at double precision,
    runs             integer          NOT NULL DEFAULT 0,
    recoveries       integer          NOT NULL DEFAULT 0
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
    id             text             PRIMARY KEY,
    host           text             NOT NULL,
    pid            integer          NOT NULL,
    started_at     double precision NOT NULL,
    last_heartbeat double precision NOT NULL,
    concurrency    integer          NOT NULL,
    queues         text             NOT NULL,  -- JSON array; [] = every queue
    stop_requested boolean          NOT NULL DEFAULT false
);

CREATE TABLE config (
    key   text PRIMARY KEY,
    value text NOT NULL
);
