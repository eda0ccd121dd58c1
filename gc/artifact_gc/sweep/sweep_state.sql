-- The sweep state of every candidate of a manifest, from its journal: the view
-- `sweep_state`, which the sweep's plan, `gc status` and the review queries all read.
-- An item is keyed by (`item_kind`, `item_id`), in the manifest and in the journal.
-- An item's state is its last event by `seq`:
--   pending                         no event yet
--   deleted, revived, protected     final: nothing is left to do in any mode
--   already_gone                    final: gone before this mark's sweep came to it
--   rows_deleted, files_deleted     half done (--only-metadata, --only-artifact)
--   failed                          retried by the next gc sweep
--   in_progress                     any other event (an `intent` a crash interrupted)
-- Columns: every column of the manifest, then `last_event`, `state`, `error` (of the
-- last event) and `bytes_freed` (for a deleted item: the bytes its last event
-- recorded, else the manifest's size_bytes).
-- Needs the views `manifest`, in the shape of format 1.1 (a 1.0 manifest implies its
-- item columns), and `journal` over the journal's segments (see manifests/FORMAT.md).
CREATE OR REPLACE TEMP VIEW sweep_state AS
WITH events AS (
    -- A segment written before the journal had item columns holds only artifact
    -- versions, keyed by artifact_version_id. The empty relation gives the item
    -- columns to a journal whose segments all predate them; union by name fills
    -- them with nulls on the rows of such segments.
    SELECT
        coalesce(item_kind, 'artifact_version') AS item_kind,
        coalesce(item_id, artifact_version_id) AS item_id,
        seq, event, error, bytes
    FROM (
        SELECT * FROM journal
        UNION ALL BY NAME
        SELECT NULL::VARCHAR AS item_kind, NULL::VARCHAR AS item_id WHERE false
    )
),
last AS (
    SELECT
        item_kind,
        item_id,
        arg_max(event, seq) AS event,
        arg_max(error, seq) AS error,
        arg_max(bytes, seq) AS bytes
    FROM events
    GROUP BY item_kind, item_id
)
SELECT
    m.*,
    last.event AS last_event,
    CASE
        WHEN last.event IS NULL THEN 'pending'
        WHEN last.event IN ('deleted', 'revived', 'protected', 'already_gone', 'failed',
                            'rows_deleted', 'files_deleted') THEN last.event
        ELSE 'in_progress'
    END AS state,
    last.error AS error,
    CASE WHEN last.event = 'deleted' THEN coalesce(last.bytes, m.size_bytes) END AS bytes_freed
FROM manifest AS m
LEFT JOIN last USING (item_kind, item_id)
WHERE m.status = 'candidate';
