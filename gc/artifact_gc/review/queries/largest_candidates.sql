-- The largest candidate artifacts: candidate versions and bytes per artifact, by bytes
-- (then by count when sizes were not measured).
-- Needs: a view named `manifest` (see by_status.sql).
-- Optional: SET VARIABLE top = 50;  (default 20)
SELECT
    coalesce(artifact_name, '(unnamed)') AS artifact_name,
    coalesce(project, '(unknown)') AS project,
    count(*) AS versions,
    sum(size_bytes)::BIGINT AS bytes,
    min(created) AS oldest,
    max(created) AS newest
FROM manifest
WHERE status = 'candidate'
GROUP BY ALL
ORDER BY bytes DESC NULLS LAST, versions DESC, artifact_name, project
LIMIT coalesce(getvariable('top'), 20);
