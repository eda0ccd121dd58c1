-- Progress of the sweep of this manifest: every candidate's state from its journal.
-- An item's state is its last event by `seq`; deleted, revived, protected are final,
-- failed is a failure, any other event is a batch in progress (or interrupted), and
-- a candidate without events is pending.
-- Needs: views `manifest` (see by_status.sql) and `journal` over the journal segments:
--   CREATE VIEW journal AS
--   SELECT * FROM read_parquet('mark.parquet.journal/*.parquet', union_by_name = true);
WITH last AS (
    SELECT
        artifact_version_id,
        arg_max(event, seq) AS event,
        max(bytes) AS bytes
    FROM journal
    GROUP BY artifact_version_id
),
items AS (
    SELECT
        CASE
            WHEN last.event IS NULL THEN 'pending'
            WHEN last.event IN ('deleted', 'revived', 'protected', 'failed') THEN last.event
            ELSE 'in_progress'
        END AS state,
        CASE WHEN last.event = 'deleted' THEN coalesce(last.bytes, m.size_bytes) END AS bytes
    FROM manifest AS m
    LEFT JOIN last USING (artifact_version_id)
    WHERE m.status = 'candidate'
)
SELECT
    state,
    count(*) AS versions,
    sum(bytes)::BIGINT AS bytes_freed
FROM items
GROUP BY state
ORDER BY
    CASE state
        WHEN 'deleted' THEN 0 WHEN 'revived' THEN 1 WHEN 'protected' THEN 2
        WHEN 'failed' THEN 3 WHEN 'in_progress' THEN 4 ELSE 5
    END;
