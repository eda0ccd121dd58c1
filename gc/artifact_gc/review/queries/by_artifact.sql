-- The top artifacts by candidate bytes (then candidate count): versions by status.
-- Needs: a view named `manifest` (see by_status.sql).
-- Optional: SET VARIABLE top = 50;  (default 20)
SELECT
    coalesce(artifact_name, '(unnamed)') AS artifact_name,
    coalesce(project, '(unknown)') AS project,
    count(*) AS versions,
    count(*) FILTER (WHERE status = 'reachable') AS reachable,
    count(*) FILTER (WHERE status = 'protected') AS protected,
    count(*) FILTER (WHERE status = 'candidate') AS candidates,
    sum(size_bytes) FILTER (WHERE status = 'candidate')::BIGINT AS candidate_bytes
FROM manifest
GROUP BY ALL
ORDER BY candidate_bytes DESC NULLS LAST, candidates DESC, versions DESC, artifact_name, project
LIMIT coalesce(getvariable('top'), 20);
