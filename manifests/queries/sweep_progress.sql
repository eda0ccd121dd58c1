-- Progress of the sweep of this manifest: how many candidates are in each state.
-- An item's state is defined once, by the view `sweep_state` (manifests/sweep_state.sql):
-- pending, in_progress, deleted, revived, protected, failed, rows_deleted, files_deleted.
-- Needs: views `manifest` (see by_status.sql; a 1.0 manifest with the item columns it
-- implies, see FORMAT.md), `journal` over the journal segments:
--   CREATE VIEW journal AS
--   SELECT * FROM read_parquet('mark.parquet.journal/*.parquet', union_by_name = true);
-- and `sweep_state`: .read manifests/sweep_state.sql
SELECT
    state,
    count(*) AS versions,
    sum(bytes_freed)::BIGINT AS bytes_freed
FROM sweep_state
GROUP BY state
ORDER BY
    CASE state
        WHEN 'deleted' THEN 0 WHEN 'revived' THEN 1 WHEN 'protected' THEN 2
        WHEN 'failed' THEN 3 WHEN 'rows_deleted' THEN 4 WHEN 'files_deleted' THEN 5
        WHEN 'in_progress' THEN 6 ELSE 7
    END;
