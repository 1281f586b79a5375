-- Facilities (养老服务设施) from the latest monthly list naming each, with licence
-- state and information freshness on the build's as-of date.
SELECT
    f.facility_id,
    f.facility_name,
    f.facility_type,
    f.street,
    f.address,
    CAST(f.beds AS INTEGER) AS beds,
    f.licence_no,
    f.licence_valid_until,
    CASE
        WHEN f.licence_valid_until IS NULL THEN 'UNKNOWN'
        WHEN f.licence_valid_until < CAST(getvariable('as_of') AS DATE) THEN 'EXPIRED'
        WHEN f.licence_valid_until < CAST(getvariable('as_of') AS DATE) + INTERVAL 90 DAY THEN 'EXPIRING'
        ELSE 'VALID'
    END AS licence_status,
    f.opened_on,
    f.closed_on,
    f.status,
    f.phone,
    CAST(f.lat AS DOUBLE) AS lat,
    CAST(f.lon AS DOUBLE) AS lon,
    f._delivery_date AS last_listed,
    CAST(date_diff('day', f._delivery_date, CAST(getvariable('as_of') AS DATE)) AS INTEGER) AS days_since_listed
FROM staged.facilities AS f
QUALIFY row_number() OVER (PARTITION BY f.facility_id ORDER BY f._delivery_date DESC, f._row_number DESC) = 1
ORDER BY f.facility_id
