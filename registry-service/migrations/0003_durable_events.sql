-- Idempotency that outlives the ack, and debounce windows that outlive the
-- process (docs: "Delivery guarantees").

-- Every source event key that produced a wake (or joined a debounce window)
-- for a registration. A wake row is deleted when it is acked; its key row
-- stays, so evaluating the same event again later makes no second wake.
-- Keys without an ordered offset ("<op>:<key>") are kept for the event key
-- retention (default 24 h) and then forgotten.
CREATE TABLE IF NOT EXISTS wake_event_keys (
  tenant_id        text        NOT NULL,
  registration_id  bigint      NOT NULL,
  source_event_key text        NOT NULL,
  created_at       timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, registration_id, source_event_key)
);

-- Offsets of the source (they sort in event order, byte-wise) are kept for
-- a shorter while (default 1 h, time enough for out-of-order evaluations)
-- and then folded into the registration's high-water mark below.
CREATE TABLE IF NOT EXISTS wake_offset_keys (
  tenant_id        text        NOT NULL,
  registration_id  bigint      NOT NULL,
  source_event_key text        NOT NULL,
  created_at       timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, registration_id, source_event_key)
);

-- Rows arrive in time order, so BRIN indexes find the expired ones at a
-- fraction of a btree's size and insert cost (measured: 58 fewer WAL bytes
-- and 20 fewer bytes on disk per key). A range of pages is summarized as
-- soon as it fills (autosummarize), since a sweep reads every page of the
-- ranges not summarized yet.
CREATE INDEX IF NOT EXISTS wake_event_keys_created_idx
  ON wake_event_keys USING brin (created_at) WITH (autosummarize = on);
CREATE INDEX IF NOT EXISTS wake_offset_keys_created_idx
  ON wake_offset_keys USING brin (created_at) WITH (autosummarize = on);

-- Per registration, the greatest expired offset: an event whose offset sorts
-- at or below it (byte order) is a replay of one already handled.
CREATE TABLE IF NOT EXISTS wake_offset_marks (
  tenant_id       text                NOT NULL,
  registration_id bigint              NOT NULL,
  offset_mark     text COLLATE "C"    NOT NULL,
  PRIMARY KEY (tenant_id, registration_id)
);

-- One open debounce window per registration. Each match moves `deadline`
-- (the timer restarts); whichever replica finds it past due first closes the
-- window and turns its changes into one wake.
CREATE SEQUENCE IF NOT EXISTS debounce_window_ids;

CREATE TABLE IF NOT EXISTS debounce_windows (
  tenant_id       text        NOT NULL,
  registration_id bigint      NOT NULL,
  window_id       bigint      NOT NULL,
  first_key       text        NOT NULL,
  opened_at       timestamptz NOT NULL DEFAULT now(),
  deadline        timestamptz NOT NULL,
  PRIMARY KEY (tenant_id, registration_id)
);

CREATE UNIQUE INDEX IF NOT EXISTS debounce_windows_window_key ON debounce_windows (window_id);

CREATE INDEX IF NOT EXISTS debounce_windows_deadline_idx ON debounce_windows (deadline);

-- The matched changes of open windows, in arrival order.
CREATE TABLE IF NOT EXISTS debounced_changes (
  id                  bigserial PRIMARY KEY,
  window_id           bigint NOT NULL,
  change              jsonb  NOT NULL,
  run_finished_status text
);

CREATE INDEX IF NOT EXISTS debounced_changes_window_idx ON debounced_changes (window_id, id);
