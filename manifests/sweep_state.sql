-- The sweep state of every candidate of a manifest, from its journal: the view
-- `sweep_state`, which the sweep's plan, `gc status` and the review queries all read.
-- An item's state is its last event by `seq`:
--   pending                         no event yet
--   deleted, revived, protected     final: nothing is left to do in any mode
--   rows_deleted, files_deleted     half done (--only-metadata, --only-artifact)
--   failed                          retried by the next gc sweep
--   in_progress                     any other event (an `intent` a crash interrupted)
-- Columns: every column of the manifest, then `last_event`, `state`, `error` (of the
-- last event) and `bytes_freed` (for a deleted item: the bytes its last event
-- recorded, else the manifest's size_bytes).
-- Needs the views `manifest` and `journal` (see manifests/FORMAT.md).
CREATE OR REPLACE TEMP VIEW sweep_state AS
WITH last AS (
    SELECT
        artifact_version_id,
        arg_max(event, seq) AS event,
        arg_max(error, seq) AS error,
        arg_max(bytes, seq) AS bytes
    FROM journal
    GROUP BY artifact_version_id
)
SELECT
    m.*,
    last.event AS last_event,
    CASE
        WHEN last.event IS NULL THEN 'pending'
        WHEN last.event IN ('deleted', 'revived', 'protected', 'failed',
                            'rows_deleted', 'files_deleted') THEN last.event
        ELSE 'in_progress'
    END AS state,
    last.error AS error,
    CASE WHEN last.event = 'deleted' THEN coalesce(last.bytes, m.size_bytes) END AS bytes_freed
FROM manifest AS m
LEFT JOIN last USING (artifact_version_id)
WHERE m.status = 'candidate';
