-- Age histogram of the candidates: versions and bytes per age bucket. Age is counted
-- back from `as_of` (gc show sets it to the mark's start; default: now, UTC).
-- Needs: a view named `manifest` (see by_status.sql).
-- Optional: SET VARIABLE as_of = TIMESTAMP '2026-01-31 12:00:00';
WITH aged AS (
    SELECT
        size_bytes,
        date_diff(
            'second', created,
            coalesce(getvariable('as_of')::TIMESTAMP, now() AT TIME ZONE 'UTC')
        ) / 86400.0 AS age_days
    FROM manifest
    WHERE status = 'candidate'
),
bucketed AS (
    SELECT
        size_bytes,
        CASE
            WHEN age_days IS NULL THEN 7
            WHEN age_days < 1 THEN 1
            WHEN age_days < 7 THEN 2
            WHEN age_days < 30 THEN 3
            WHEN age_days < 90 THEN 4
            WHEN age_days < 365 THEN 5
            ELSE 6
        END AS bucket_order
    FROM aged
)
SELECT
    bucket_order,
    ['< 1 day', '1-7 days', '7-30 days', '30-90 days', '90-365 days', '>= 1 year',
     'unknown'][bucket_order] AS age,
    count(*) AS versions,
    sum(size_bytes)::BIGINT AS bytes
FROM bucketed
GROUP BY ALL
ORDER BY bucket_order;
