-- Versions and bytes by referrer: who holds the references that keep versions
-- (format 1.2's `referrers`: run:<id>/step:<name>/input:<name>, model_version:<id>,
-- snapshot:<id>, schedule:<id>, released_snapshot:<id>, ...). A version counts once
-- under every referrer it lists; versions with none (candidates, and protected
-- versions nothing refers to) show as '(none)', and a manifest written before 1.2 as
-- '(not recorded)'. `kind` is the referrer's prefix, for grouping further.
-- Needs: a view named `manifest` (see by_status.sql).
-- Optional: SET VARIABLE top = 50;  (default 20 referrers)
SELECT
    referrer,
    CASE WHEN referrer LIKE '(%' THEN referrer
         WHEN starts_with(referrer, '+') THEN 'more'
         ELSE split_part(referrer, ':', 1) END AS kind,
    count(*) AS versions,
    count(*) FILTER (WHERE status = 'reachable') AS reachable,
    count(*) FILTER (WHERE status = 'protected') AS protected,
    count(*) FILTER (WHERE status = 'candidate') AS candidates,
    sum(size_bytes)::BIGINT AS bytes
FROM (
    SELECT
        status,
        size_bytes,
        unnest(CASE WHEN referrers IS NULL THEN ['(not recorded)']
                    WHEN len(referrers) = 0 THEN ['(none)']
                    ELSE referrers END) AS referrer
    FROM manifest
)
GROUP BY ALL
ORDER BY versions DESC, bytes DESC NULLS LAST, referrer
LIMIT coalesce(getvariable('top'), 20);
