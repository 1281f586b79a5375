-- Caregivers (护理员) from the latest monthly register, certificate status on the
-- as-of date, and home-care visits (LTCI and family care beds) in the last 30 days
-- matched on the certificate number the visit records.
WITH latest AS (
    SELECT c.*
    FROM staged.caregivers AS c
    QUALIFY row_number() OVER (PARTITION BY c.caregiver_id ORDER BY c._delivery_date DESC, c._row_number DESC) = 1
),
visits AS (
    SELECT s.caregiver_cert_no AS cert_no, s.service_date AS visit_date
    FROM staged.muni_ltci_services AS s
    UNION ALL
    SELECT b.caregiver_cert_no AS cert_no, CAST(b.start_time AS DATE) AS visit_date
    FROM staged.care_bed_visits AS b
),
recent AS (
    SELECT v.cert_no, count(*) AS visits_30d
    FROM visits AS v
    WHERE v.visit_date > CAST(getvariable('as_of') AS DATE) - INTERVAL 30 DAY
      AND v.visit_date <= CAST(getvariable('as_of') AS DATE)
    GROUP BY v.cert_no
)
SELECT
    c.caregiver_id,
    c.name,
    c.sex,
    c.birth_date,
    c.employer_id,
    c.qualification,
    c.cert_no,
    c.cert_valid_until,
    CASE
        WHEN c.cert_valid_until IS NULL THEN 'UNKNOWN'
        WHEN c.cert_valid_until < CAST(getvariable('as_of') AS DATE) THEN 'EXPIRED'
        WHEN c.cert_valid_until < CAST(getvariable('as_of') AS DATE) + INTERVAL 90 DAY THEN 'EXPIRING'
        ELSE 'VALID'
    END AS cert_status,
    c.hired_on,
    c.employment_status,
    CAST(coalesce(r.visits_30d, 0) AS INTEGER) AS visits_30d,
    c._delivery_date AS last_listed
FROM latest AS c
LEFT JOIN recent AS r ON r.cert_no = c.cert_no
ORDER BY c.caregiver_id
