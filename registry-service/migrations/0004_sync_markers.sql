-- Read-barrier markers of the `electric` sync source (docs/electric.md).
-- Electric reports only the position of the last transaction it processed,
-- never the database's WAL position, so a barrier writes its replica's row
-- here and waits for that write to come back through Electric's shape of
-- this table. One row per running registry replica; rows of replicas gone
-- for a day are swept. Not in the `wakeline_sync` publication: the postgres
-- sync source does not follow it.
CREATE TABLE IF NOT EXISTS wake_sync_markers (
  replica_id text        PRIMARY KEY,
  seq        bigint      NOT NULL,
  written_at timestamptz NOT NULL DEFAULT now()
);

-- Electric needs the whole old row of every update and delete.
ALTER TABLE wake_sync_markers REPLICA IDENTITY FULL;
