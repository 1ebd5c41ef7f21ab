-- Limits (docs/security.md): claims are cut by bytes, debounce windows close
-- early when they grow too large.

-- The serialized size of each wake as the registry sends it, so a claim can
-- stop before its answer outgrows what the runtime accepts. Rows written
-- before this migration (or by tools) count as 0 bytes.
ALTER TABLE wakes ADD COLUMN IF NOT EXISTS size_bytes integer NOT NULL DEFAULT 0;

-- The size of each change buffered in a debounce window, and the window's
-- running totals: at --debounce-max-changes or --debounce-max-bytes its
-- deadline becomes now.
ALTER TABLE debounced_changes ADD COLUMN IF NOT EXISTS size_bytes integer NOT NULL DEFAULT 0;
ALTER TABLE debounce_windows ADD COLUMN IF NOT EXISTS changes integer NOT NULL DEFAULT 0;
ALTER TABLE debounce_windows ADD COLUMN IF NOT EXISTS bytes bigint NOT NULL DEFAULT 0;
