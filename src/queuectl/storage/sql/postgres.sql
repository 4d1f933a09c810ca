-- Named queries for the PostgreSQL store. Times come from the database clock,
-- queuectl_now() (see the migrations): `now()` is the transaction's start, and every
-- store operation is one short transaction, so hosts with skewed clocks agree on
-- leases and schedules.

-- name: now
SELECT queuectl_now() AS now;

-- name: insert_job
INSERT INTO jobs (id, command, state, max_retries, priority, queue, timeout,
                  next_attempt_at, created_at, updated_at)
VALUES (%s, %s, 'pending', %s, %s, %s, %s,
        coalesce(%s, queuectl_now()),
        queuectl_now(), queuectl_now());

-- name: import_job
INSERT INTO jobs (id, command, state, attempts, max_retries, priority, queue, timeout,
                  next_attempt_at, created_at, updated_at, started_at, finished_at,
                  exit_code, last_error, worker_id, runs, recoveries)
VALUES (%(id)s, %(command)s, %(state)s, %(attempts)s, %(max_retries)s, %(priority)s,
        %(queue)s, %(timeout)s, %(next_attempt_at)s, %(created_at)s, %(updated_at)s,
        %(started_at)s, %(finished_at)s, %(exit_code)s, %(last_error)s, %(worker_id)s,
        %(runs)s, %(recoveries)s);

-- name: notify
SELECT pg_notify(%(channel)s, '');

-- name: claim_job
-- FOR UPDATE SKIP LOCKED: concurrent claimers each lock a different row instead of
-- waiting for (or both taking) the same one; the UPDATE marks it running in the
-- same statement.
WITH next AS (
    SELECT seq FROM jobs
     WHERE state IN ('pending', 'failed')
       AND next_attempt_at <= queuectl_now()
     ORDER BY priority DESC, seq
     LIMIT 1
       FOR UPDATE SKIP LOCKED
)
UPDATE jobs AS j
   SET state = 'running',
       worker_id = %(worker_id)s,
       runs = j.runs + 1,
       started_at = queuectl_now(),
       finished_at = NULL,
       updated_at = queuectl_now(),
       -- The clock now, not queuectl_now() (the transaction's start): a claim
       -- that waited behind a lock must not get a lease already partly spent.
       lease_expires_at = coalesce(nullif(current_setting('queuectl.fake_now', true), '')::double precision,
                                  extract(epoch FROM clock_timestamp())::double precision) + %(lease_seconds)s
  FROM next
 WHERE j.seq = next.seq
RETURNING j.*;

-- name: claim_job_in_queues
-- The best due job of each listed queue from the per-queue index, then the best of
-- those; a worker of a small queue never scans another queue's backlog.
WITH candidates AS (
    SELECT c.seq, c.priority
      FROM unnest(%(queues)s::text[]) AS q(name)
     CROSS JOIN LATERAL (
        SELECT seq, priority FROM jobs
         WHERE queue = q.name
           AND state IN ('pending', 'failed')
           AND next_attempt_at <= queuectl_now()
         ORDER BY priority DESC, seq
         LIMIT 1
           FOR UPDATE SKIP LOCKED) AS c
), next AS (
    SELECT seq FROM candidates ORDER BY priority DESC, seq LIMIT 1
)
UPDATE jobs AS j
   SET state = 'running',
       worker_id = %(worker_id)s,
       runs = j.runs + 1,
       started_at = queuectl_now(),
       finished_at = NULL,
       updated_at = queuectl_now(),
       -- The clock now, not queuectl_now() (the transaction's start): a claim
       -- that waited behind a lock must not get a lease already partly spent.
       lease_expires_at = coalesce(nullif(current_setting('queuectl.fake_now', true), '')::double precision,
                                  extract(epoch FROM clock_timestamp())::double precision) + %(lease_seconds)s
  FROM next
 WHERE j.seq = next.seq
RETURNING j.*;

-- name: complete_job
UPDATE jobs
   SET state = 'completed', attempts = attempts + 1, exit_code = %(exit_code)s,
       finished_at = queuectl_now(), updated_at = queuectl_now(),
       next_attempt_at = NULL, lease_expires_at = NULL
 WHERE id = %(id)s AND state = 'running' AND runs = %(run)s AND worker_id = %(worker_id)s;

-- name: fail_job
UPDATE jobs
   SET state = %(state)s, attempts = %(attempts)s, exit_code = %(exit_code)s,
       last_error = %(error)s, finished_at = queuectl_now(),
       updated_at = queuectl_now(),
       next_attempt_at = CASE WHEN %(dead)s THEN NULL
                              ELSE queuectl_now() + %(retry_in)s END,
       lease_expires_at = NULL
 WHERE id = %(id)s AND state = 'running' AND runs = %(run)s AND worker_id = %(worker_id)s;

-- name: release_job
UPDATE jobs
   SET state = 'pending', next_attempt_at = queuectl_now(),
       updated_at = queuectl_now(), last_error = %(reason)s,
       lease_expires_at = NULL
 WHERE id = %(id)s AND state = 'running' AND runs = %(run)s AND worker_id = %(worker_id)s;

-- name: get_job
SELECT * FROM jobs WHERE id = %(id)s;

-- name: list_jobs
SELECT * FROM jobs
 WHERE (%(queue)s::text IS NULL OR queue = %(queue)s)
 ORDER BY seq
 LIMIT %(limit)s;

-- name: list_jobs_in_state
SELECT * FROM jobs
 WHERE state = %(state)s AND (%(queue)s::text IS NULL OR queue = %(queue)s)
 ORDER BY seq
 LIMIT %(limit)s;

-- name: count_by_state
SELECT state, count(*) AS n FROM jobs GROUP BY state;

-- name: retry_dead_job
UPDATE jobs
   SET state = 'pending', attempts = 0, recoveries = 0,
       next_attempt_at = queuectl_now(), updated_at = queuectl_now(),
       finished_at = NULL
 WHERE id = %(id)s AND state = 'dead'
RETURNING *;

-- name: cancel_job
UPDATE jobs
   SET state = 'canceled', updated_at = queuectl_now(),
       finished_at = queuectl_now(), next_attempt_at = NULL
 WHERE id = %(id)s AND state IN ('pending', 'failed')
RETURNING *;

-- name: next_due_at
SELECT min(next_attempt_at) FROM jobs
 WHERE state IN ('pending', 'failed')
   AND (%(queues)s::text[] IS NULL OR queue = ANY(%(queues)s::text[]));

-- name: register_worker
INSERT INTO workers (id, host, pid, started_at, last_heartbeat, concurrency, queues)
VALUES (%(id)s, %(host)s, %(pid)s, least(%(started_at)s, queuectl_now()), queuectl_now(),
        %(concurrency)s, %(queues)s)
ON CONFLICT (id) DO UPDATE SET last_heartbeat = queuectl_now();

-- name: deregister_worker
DELETE FROM workers WHERE id = %(id)s;

-- name: renew_leases
-- The clock at the update, not queuectl_now() (the transaction's start): a
-- heartbeat that waited behind a lock must not renew to a lease already spent,
-- which any worker, this one included, would then take back as lost.
UPDATE jobs SET lease_expires_at = coalesce(nullif(current_setting('queuectl.fake_now', true), '')::double precision,
                extract(epoch FROM clock_timestamp())::double precision) + %(lease_seconds)s
 WHERE worker_id = %(worker_id)s AND state = 'running' AND id = ANY(%(ids)s::text[])
RETURNING id;

-- name: touch_worker
UPDATE workers SET last_heartbeat = coalesce(nullif(current_setting('queuectl.fake_now', true), '')::double precision,
                extract(epoch FROM clock_timestamp())::double precision)
 WHERE id = %(id)s
RETURNING stop_requested;

-- name: recover_jobs
-- A run cut short by a lost worker is not an attempt; `recoveries` counts them so
-- a job that keeps killing its worker ends in the DLQ instead of looping forever.
UPDATE jobs
   SET recoveries = recoveries + 1,
       state = CASE WHEN recoveries + 1 >= greatest(max_retries, 1)
                    THEN 'dead' ELSE 'pending' END,
       last_error = CASE
           WHEN recoveries + 1 >= greatest(max_retries, 1)
           THEN 'worker lost while running this job ' || (recoveries + 1) || ' times'
           ELSE 'worker lost while running this job; run again (not charged)' END,
       next_attempt_at = CASE WHEN recoveries + 1 >= greatest(max_retries, 1)
                              THEN NULL ELSE queuectl_now() END,
       finished_at = CASE WHEN recoveries + 1 >= greatest(max_retries, 1)
                          THEN queuectl_now() ELSE NULL END,
       updated_at = queuectl_now(),
       lease_expires_at = NULL
 WHERE state = 'running'
   AND worker_id IS DISTINCT FROM %(exclude)s  -- the caller's own: it knows what it runs
   AND (CASE WHEN %(unrenewed)s::text[] IS NULL THEN lease_expires_at < queuectl_now()
             ELSE id = ANY(%(unrenewed)s::text[]) END
        OR worker_id = ANY(%(lost)s::text[]))
RETURNING id, worker_id, state;

-- name: prune_workers
DELETE FROM workers
 WHERE id = ANY(%(lost)s::text[])
    OR last_heartbeat < queuectl_now() - %(stale_after)s;

-- name: list_workers
SELECT * FROM workers ORDER BY started_at, id;

-- name: running_jobs_by_worker
SELECT worker_id, id FROM jobs WHERE state = 'running' ORDER BY seq;

-- name: request_stop
UPDATE workers SET stop_requested = true WHERE id = ANY(%(ids)s::text[]);

-- name: get_config
SELECT key, value FROM config;

-- name: set_config
INSERT INTO config (key, value) VALUES (%(key)s, %(value)s)
ON CONFLICT (key) DO UPDATE SET value = excluded.value;
