-- Items and bytes by item kind, orphan-file class and status, with the bytes a sweep
-- would reclaim (the candidates') per class.
-- Needs: a view named `manifest` over the manifest (format 1.2 shape; an older
-- manifest implies item_kind 'artifact_version' and a null orphan_class).
-- `bytes` is null for artifact versions unless the mark measured sizes (--sizes);
-- orphan files always carry theirs, from the listing.
SELECT
    item_kind,
    coalesce(orphan_class, '-') AS orphan_class,
    status,
    count(*) AS items,
    sum(file_count)::BIGINT AS objects,
    sum(size_bytes)::BIGINT AS bytes,
    sum(size_bytes) FILTER (WHERE status = 'candidate')::BIGINT AS reclaimable_bytes
FROM manifest
GROUP BY 1, 2, 3
ORDER BY 1, 2,
    CASE status WHEN 'candidate' THEN 0 WHEN 'protected' THEN 1 WHEN 'reachable' THEN 2 ELSE 3 END;
