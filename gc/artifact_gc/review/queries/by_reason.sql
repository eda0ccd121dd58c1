-- Versions and bytes by status and reason. A version counts once under every reason
-- it has; candidates have no reason and show as '(none)'.
-- Needs: a view named `manifest` (see by_status.sql).
SELECT
    status,
    coalesce(reason, '(none)') AS reason,
    count(*) AS versions,
    sum(size_bytes)::BIGINT AS bytes
FROM (
    SELECT
        status,
        size_bytes,
        unnest(CASE WHEN len(coalesce(reasons, [])) = 0 THEN [NULL::VARCHAR] ELSE reasons END)
            AS reason
    FROM manifest
)
GROUP BY 1, 2
ORDER BY
    CASE status WHEN 'candidate' THEN 0 WHEN 'protected' THEN 1 WHEN 'reachable' THEN 2 ELSE 3 END,
    versions DESC,
    reason;
