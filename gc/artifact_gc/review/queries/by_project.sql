-- Versions by project and status, and the candidates' bytes, most candidate bytes first.
-- Needs: a view named `manifest` (see by_status.sql).
SELECT
    coalesce(project, '(unknown)') AS project,
    count(*) AS versions,
    count(*) FILTER (WHERE status = 'reachable') AS reachable,
    count(*) FILTER (WHERE status = 'protected') AS protected,
    count(*) FILTER (WHERE status = 'candidate') AS candidates,
    sum(size_bytes) FILTER (WHERE status = 'candidate')::BIGINT AS candidate_bytes
FROM manifest
GROUP BY ALL
ORDER BY candidate_bytes DESC NULLS LAST, candidates DESC, project;
