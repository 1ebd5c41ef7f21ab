-- The registry's synced view of `wakes` holds which wakes exist, for which
-- stream, and whether they are claimed (common/sync/registration.h WakeRow):
-- nothing more needs to travel on the replication stream. Publishing every
-- column made the walsender print each wake's payload (message, the largest
-- column, as jsonb text) and its timestamps for the insert and again for the
-- claim's update, and the registry read them, for every wake. Column lists
-- need PostgreSQL 15; older servers keep publishing the whole row, which the
-- registry reads just as well. The primary key (the replica identity) must be
-- in the list.
DO $$
BEGIN
  IF current_setting('server_version_num')::int >= 150000 THEN
    EXECUTE 'ALTER PUBLICATION wakeline_sync SET TABLE wake_registrations, '
            'wakes (id, tenant_id, stream, registration_id, claim_token)';
  END IF;
END
$$;
