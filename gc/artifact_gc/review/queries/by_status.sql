-- Versions and bytes by status (reachable, protected, candidate).
-- Needs: a view named `manifest` over the manifest, e.g.
--   CREATE VIEW manifest AS SELECT * FROM read_parquet('mark.parquet');
-- `bytes` is null unless the mark measured sizes (gc mark --sizes).
SELECT
    status,
    count(*) AS versions,
    sum(size_bytes)::BIGINT AS bytes
FROM manifest
GROUP BY status
ORDER BY
    CASE status WHEN 'candidate' THEN 0 WHEN 'protected' THEN 1 WHEN 'reachable' THEN 2 ELSE 3 END,
    status;
