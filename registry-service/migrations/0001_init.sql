-- Registrations, pending wakes and stream claims (DESIGN.md section 2).

CREATE TABLE IF NOT EXISTS wake_registrations (
  id               bigserial PRIMARY KEY,
  tenant_id        text        NOT NULL DEFAULT 'default',
  subscriber_url   text        NOT NULL,
  source_url       text        NOT NULL,
  condition        jsonb       NOT NULL,
  debounce_ms      integer     NOT NULL DEFAULT 0,
  timeout_ms       integer     NOT NULL DEFAULT 0,
  one_shot         boolean     NOT NULL DEFAULT false,
  timeout_consumed boolean     NOT NULL DEFAULT false,
  include_response boolean     NOT NULL DEFAULT true,
  manifest_key     text        NOT NULL DEFAULT '',
  created_at       timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT wake_registrations_debounce_ms_check CHECK (debounce_ms >= 0),
  CONSTRAINT wake_registrations_timeout_ms_check CHECK (timeout_ms >= 0)
);

CREATE INDEX IF NOT EXISTS wake_registrations_tenant_source_idx
  ON wake_registrations (tenant_id, source_url);

CREATE INDEX IF NOT EXISTS wake_registrations_tenant_subscriber_idx
  ON wake_registrations (tenant_id, subscriber_url);

CREATE UNIQUE INDEX IF NOT EXISTS wake_registrations_identity_key
  ON wake_registrations (tenant_id, subscriber_url, source_url, one_shot, debounce_ms,
                         timeout_ms, condition, manifest_key);

-- Deletes and updates must carry the whole old row to every sync consumer.
ALTER TABLE wake_registrations REPLICA IDENTITY FULL;

-- A pending wake for a subscriber stream. registration_id is deliberately not
-- a foreign key: a one-shot registration is deleted in the transaction that
-- persists its wake, and the wake must outlive it.
CREATE TABLE IF NOT EXISTS wakes (
  id                  bigserial PRIMARY KEY,
  tenant_id           text        NOT NULL DEFAULT 'default',
  stream              text        NOT NULL,
  registration_id     bigint      NOT NULL,
  source_event_key    text        NOT NULL,
  message             jsonb       NOT NULL,
  run_finished_status text,
  include_response    boolean     NOT NULL DEFAULT true,
  created_at          timestamptz NOT NULL DEFAULT now(),
  -- Claim columns: the token of the claim holding this wake (NULL = pending).
  claim_token         text,
  claimed_at          timestamptz,
  CONSTRAINT wakes_event_key UNIQUE (tenant_id, registration_id, source_event_key)
);

CREATE INDEX IF NOT EXISTS wakes_tenant_stream_idx ON wakes (tenant_id, stream, id);

CREATE INDEX IF NOT EXISTS wakes_claim_token_idx ON wakes (claim_token)
  WHERE claim_token IS NOT NULL;

-- One live claim per (tenant, stream), arbitrated by the primary key.
CREATE TABLE IF NOT EXISTS stream_claims (
  tenant_id        text        NOT NULL,
  stream           text        NOT NULL,
  claim_token      text        NOT NULL,
  runner_id        text        NOT NULL DEFAULT '',
  session_id       text        NOT NULL DEFAULT '',
  claimed_at       timestamptz NOT NULL DEFAULT now(),
  lease_expires_at timestamptz NOT NULL,
  PRIMARY KEY (tenant_id, stream)
);

CREATE UNIQUE INDEX IF NOT EXISTS stream_claims_token_key ON stream_claims (claim_token);

-- The lease sweeper looks for expired claims.
CREATE INDEX IF NOT EXISTS stream_claims_lease_idx ON stream_claims (lease_expires_at);

-- The embedded sync source (logical replication) follows these tables.
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = 'wakeline_sync') THEN
    CREATE PUBLICATION wakeline_sync FOR TABLE wake_registrations, wakes;
  END IF;
END
$$;
