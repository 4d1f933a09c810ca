-- Named queries for the SQLite store. Times are epoch seconds passed in as :now.

-- name: insert_job
INSERT INTO jobs (id, command, state, max_retries, priority, queue, timeout,
                  next_attempt_at, created_at, updated_at)
VALUES (?, ?, 'pending', ?, ?, ?, ?, ?, ?, ?);

-- name: import_job
INSERT INTO jobs (id, command, state, attempts, max_retries, priority, queue, timeout,
                  next_attempt_at, created_at, updated_at, started_at, finished_at,
                  exit_code, last_error, worker_id, runs, recoveries)
VALUES (:id, :command, :state, :attempts, :max_retries, :priority, :queue, :timeout,
        :next_attempt_at, :created_at, :updated_at, :started_at, :finished_at,
        :exit_code, :last_error, :worker_id, :runs, :recoveries);

-- name: claim_job
-- One statement inside BEGIN IMMEDIATE: the subquery picks the best runnable job
-- and the UPDATE marks it running; no other connection can write in between.
-- INDEXED BY: without statistics the planner prefers jobs_by_state and sorts every
-- waiting job; the claim-order index makes a claim read its first due entry.
UPDATE jobs
   SET state = 'running',
       worker_id = :worker_id,
       runs = runs + 1,
       started_at = :now,
       finished_at = NULL,
       updated_at = :now,
       lease_expires_at = :lease_until
 WHERE seq = (
        SELECT seq FROM jobs INDEXED BY jobs_claim_order
         WHERE state IN ('pending', 'failed')
           AND next_attempt_at <= :now
         ORDER BY priority DESC, seq
         LIMIT 1)
RETURNING *;

-- name: claim_job_in_queues
-- The same claim for a worker limited to some queues (:queues is a JSON array).
-- The best due job of each queue comes from the per-queue index, then the best
-- of those wins, so a worker of a small queue never scans another queue's backlog.
WITH candidates AS (
    SELECT j.seq, j.priority
      FROM json_each(:queues) AS q
      JOIN jobs AS j ON j.seq = (
            SELECT seq FROM jobs INDEXED BY jobs_claim_by_queue
             WHERE queue = q.value
               AND state IN ('pending', 'failed')
               AND next_attempt_at <= :now
             ORDER BY priority DESC, seq
             LIMIT 1)
)
UPDATE jobs
   SET state = 'running',
       worker_id = :worker_id,
       runs = runs + 1,
       started_at = :now,
       finished_at = NULL,
       updated_at = :now,
       lease_expires_at = :lease_until
 WHERE seq = (SELECT seq FROM candidates ORDER BY priority DESC, seq LIMIT 1)
RETURNING *;

-- name: complete_job
UPDATE jobs
   SET state = 'completed', attempts = attempts + 1, exit_code = :exit_code,
       finished_at = :now, updated_at = :now, next_attempt_at = NULL,
       lease_expires_at = NULL
 WHERE id = :id AND state = 'running' AND runs = :run AND worker_id = :worker_id;

-- name: fail_job
UPDATE jobs
   SET state = :state, attempts = :attempts, exit_code = :exit_code,
       last_error = :error, finished_at = :now, updated_at = :now,
       next_attempt_at = :next_attempt_at, lease_expires_at = NULL
 WHERE id = :id AND state = 'running' AND runs = :run AND worker_id = :worker_id;

-- name: release_job
UPDATE jobs
   SET state = 'pending', next_attempt_at = :now, updated_at = :now,
       last_error = :reason, lease_expires_at = NULL
 WHERE id = :id AND state = 'running' AND runs = :run AND worker_id = :worker_id;

-- name: get_job
SELECT * FROM jobs WHERE id = :id;

-- name: list_jobs
SELECT * FROM jobs
 WHERE (:queue IS NULL OR queue = :queue)
 ORDER BY seq
 LIMIT :limit;

-- name: list_jobs_in_state
SELECT * FROM jobs
 WHERE state = :state AND (:queue IS NULL OR queue = :queue)
 ORDER BY seq
 LIMIT :limit;

-- name: count_by_state
-- Every job, and each state's jobs up to :cap. Not GROUP BY state, which decodes
-- every index entry (1,000,000 jobs: 112 ms): SQLite counts a whole table without
-- decoding it (about 20 ms), and a capped range of jobs_by_state costs at most
-- :cap entries. A state at the cap is counted by count_state or, for one such
-- state, is what the others leave of the total (see SQLiteStore.count_by_state).
SELECT (SELECT count(*) FROM jobs) AS total,
       (SELECT count(*) FROM (SELECT 1 FROM jobs WHERE state = 'pending' LIMIT :cap))
           AS pending,
       (SELECT count(*) FROM (SELECT 1 FROM jobs WHERE state = 'running' LIMIT :cap))
           AS running,
       (SELECT count(*) FROM (SELECT 1 FROM jobs WHERE state = 'completed' LIMIT :cap))
           AS completed,
       (SELECT count(*) FROM (SELECT 1 FROM jobs WHERE state = 'failed' LIMIT :cap))
           AS failed,
       (SELECT count(*) FROM (SELECT 1 FROM jobs WHERE state = 'dead' LIMIT :cap))
           AS dead,
       (SELECT count(*) FROM (SELECT 1 FROM jobs WHERE state = 'canceled' LIMIT :cap))
           AS canceled;

-- name: count_state
SELECT count(*) FROM jobs WHERE state = :state;

-- name: retry_dead_job
UPDATE jobs
   SET state = 'pending', attempts = 0, recoveries = 0, next_attempt_at = :now,
       updated_at = :now, finished_at = NULL
 WHERE id = :id AND state = 'dead'
RETURNING *;

-- name: cancel_job
UPDATE jobs
   SET state = 'canceled', updated_at = :now, finished_at = :now, next_attempt_at = NULL
 WHERE id = :id AND state IN ('pending', 'failed')
RETURNING *;

-- name: next_due_at
SELECT min(next_attempt_at) FROM jobs
 WHERE state IN ('pending', 'failed')
   AND (:queues IS NULL OR queue IN (SELECT value FROM json_each(:queues)));

-- name: register_worker
INSERT INTO workers (id, host, pid, started_at, last_heartbeat, concurrency, queues)
VALUES (:id, :host, :pid, min(:started_at, :now), :now, :concurrency, :queues)
ON CONFLICT (id) DO UPDATE SET last_heartbeat = :now;

-- name: deregister_worker
DELETE FROM workers WHERE id = :id;

-- name: renew_leases
UPDATE jobs SET lease_expires_at = :lease_until
 WHERE worker_id = :worker_id AND state = 'running'
   AND id IN (SELECT value FROM json_each(:ids))
RETURNING id;

-- name: touch_worker
UPDATE workers SET last_heartbeat = :now WHERE id = :id RETURNING stop_requested;

-- name: recover_jobs
-- A run cut short by a lost worker is not an attempt; `recoveries` counts them so
-- a job that keeps killing its worker ends in the DLQ instead of looping forever.
UPDATE jobs
   SET recoveries = recoveries + 1,
       state = CASE WHEN recoveries + 1 >= max(max_retries, 1) THEN 'dead' ELSE 'pending' END,
       last_error = CASE
           WHEN recoveries + 1 >= max(max_retries, 1)
           THEN 'worker lost while running this job ' || (recoveries + 1) || ' times'
           ELSE 'worker lost while running this job; run again (not charged)' END,
       next_attempt_at = CASE WHEN recoveries + 1 >= max(max_retries, 1) THEN NULL ELSE :now END,
       finished_at = CASE WHEN recoveries + 1 >= max(max_retries, 1) THEN :now ELSE NULL END,
       updated_at = :now,
       lease_expires_at = NULL
 WHERE state = 'running'
   AND worker_id IS NOT :exclude  -- the caller's own: it knows what it runs
   AND (CASE WHEN :unrenewed IS NULL THEN lease_expires_at < :now
             ELSE id IN (SELECT value FROM json_each(:unrenewed)) END
        OR worker_id IN (SELECT value FROM json_each(:lost)))
RETURNING id, worker_id, state;

-- name: prune_workers
DELETE FROM workers
 WHERE id IN (SELECT value FROM json_each(:lost))
    OR last_heartbeat < :now - :stale_after;

-- name: list_workers
SELECT * FROM workers ORDER BY started_at, id;

-- name: running_jobs_by_worker
SELECT worker_id, id FROM jobs WHERE state = 'running' ORDER BY seq;

-- name: request_stop
UPDATE workers SET stop_requested = 1 WHERE id IN (SELECT value FROM json_each(:ids));

-- name: get_config
SELECT key, value FROM config;

-- name: set_config
INSERT INTO config (key, value) VALUES (:key, :value)
ON CONFLICT (key) DO UPDATE SET value = excluded.value;

-- name: newest_time
-- The newest heartbeat or enqueue (the newest job by seq: no scan of the table).
SELECT max(t) FROM (
    SELECT max(last_heartbeat) AS t FROM workers
    UNION ALL
    SELECT created_at FROM (SELECT created_at FROM jobs ORDER BY seq DESC LIMIT 1)
);
