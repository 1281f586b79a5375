-- Elder portrait base (老年人服务画像): one row per elder of library.dim_elder with every
-- attribute the portrait rules (assets/marts/portrait_rules.yaml) read. A fragment (sql/fragments/),
-- not a table: assets/marts/portraits.py wraps it into the portrait SELECTs, whose column lineage the
-- catalogue reads (catalog/python_lineage.yaml sql_generators).
-- mart_params (one row: as_of) and mart_ltci_entitlement (care_level, visits_per_week) are
-- build parameters the builder (assets/marts/portraits.py) creates; as_of is the latest
-- service, screening or vital-sign date in the library, so a build is deterministic.
-- Windows of N days end on the as-of date and include it: (as_of - N days, as_of].
-- A device is in use when installed on or before as_of and still on a monthly list
-- delivered within 31 days (the same rule as the KPIs in schemas/kpis.yaml).
WITH params AS (
  SELECT p.as_of AS as_of FROM mart_params AS p
),
services AS (
  SELECT
    e.elder_key AS elder_key,
    count(*) FILTER (WHERE e.programme = 'MEAL_AID' AND e.service_date > p.as_of - INTERVAL 30 DAY) AS meal_aid_30d,
    count(*) FILTER (WHERE e.programme = 'MEAL_AID' AND e.service_date > p.as_of - INTERVAL 90 DAY) AS meal_aid_90d,
    count(*) FILTER (WHERE e.programme = 'MEAL_AID') AS meal_aid_365d,
    count(*) FILTER (WHERE e.programme = 'LOVE_MILK' AND e.service_date > p.as_of - INTERVAL 30 DAY) AS love_milk_30d,
    count(*) FILTER (WHERE e.programme = 'LOVE_MILK' AND e.service_date > p.as_of - INTERVAL 90 DAY) AS love_milk_90d,
    count(*) FILTER (WHERE e.programme = 'LOVE_MILK') AS love_milk_365d,
    count(*) FILTER (WHERE e.programme = 'DEVICE_RENTAL' AND e.service_date > p.as_of - INTERVAL 30 DAY) AS device_rental_30d,
    count(*) FILTER (WHERE e.programme = 'DEVICE_RENTAL' AND e.service_date > p.as_of - INTERVAL 90 DAY) AS device_rental_90d,
    count(*) FILTER (WHERE e.programme = 'DEVICE_RENTAL') AS device_rental_365d,
    count(*) FILTER (WHERE e.programme = 'FAMILY_CARE_BED' AND e.service_date > p.as_of - INTERVAL 30 DAY) AS family_care_bed_30d,
    count(*) FILTER (WHERE e.programme = 'FAMILY_CARE_BED' AND e.service_date > p.as_of - INTERVAL 90 DAY) AS family_care_bed_90d,
    count(*) FILTER (WHERE e.programme = 'FAMILY_CARE_BED') AS family_care_bed_365d,
    count(*) FILTER (WHERE e.programme = 'LTCI_HOME_CARE' AND e.service_date > p.as_of - INTERVAL 30 DAY) AS ltci_home_care_30d,
    count(*) FILTER (WHERE e.programme = 'LTCI_HOME_CARE' AND e.service_date > p.as_of - INTERVAL 90 DAY) AS ltci_home_care_90d,
    count(*) FILTER (WHERE e.programme = 'LTCI_HOME_CARE') AS ltci_home_care_365d,
    count(*) FILTER (WHERE e.programme = 'TIME_BANK' AND e.service_date > p.as_of - INTERVAL 30 DAY) AS time_bank_30d,
    count(*) FILTER (WHERE e.programme = 'TIME_BANK' AND e.service_date > p.as_of - INTERVAL 90 DAY) AS time_bank_90d,
    count(*) FILTER (WHERE e.programme = 'TIME_BANK') AS time_bank_365d,
    count(*) FILTER (
      WHERE e.programme = 'LTCI_HOME_CARE' AND e.service_date > p.as_of - INTERVAL 28 DAY
    ) AS ltci_visits_28d,
    max(e.service_date) AS last_service_date
  FROM library.fact_service_event AS e
  CROSS JOIN params AS p
  WHERE e.elder_key IS NOT NULL
    AND e.service_date <= p.as_of
    AND e.service_date > p.as_of - INTERVAL 365 DAY
  GROUP BY e.elder_key
),
screenings AS (
  SELECT
    s.elder_key AS elder_key,
    s.screening_date AS screening_date,
    s.instrument AS instrument,
    coalesce(s.suspected_impairment, s.result = 'SUSPECTED') AS suspected,
    row_number() OVER (
      PARTITION BY s.elder_key ORDER BY s.screening_date DESC, s.screening_id DESC
    ) AS rn
  FROM library.fact_screening AS s
  CROSS JOIN params AS p
  WHERE s.elder_key IS NOT NULL
    AND s.screening_date <= p.as_of
),
devices AS (
  SELECT
    v.elder_key AS elder_key,
    bool_or(v.device_kind = 'WRISTBAND') AS has_wristband,
    bool_or(v.device_kind = 'WATER_METER') AS has_water_meter
  FROM library.elder_devices AS v
  CROSS JOIN params AS p
  WHERE v.elder_key IS NOT NULL
    AND (v.installed_on IS NULL OR v.installed_on <= p.as_of)
    AND v.last_listed >= p.as_of - INTERVAL 31 DAY
  GROUP BY v.elder_key
),
vitals AS (
  SELECT
    t.elder_key AS elder_key,
    count(DISTINCT t.measure_date) FILTER (WHERE t.measure_date > p.as_of - INTERVAL 30 DAY) AS vitals_days_30d,
    count(DISTINCT t.measure_date) FILTER (WHERE t.measure_date > p.as_of - INTERVAL 7 DAY) AS vitals_days_7d,
    avg(t.heart_rate_mean) FILTER (WHERE t.measure_date > p.as_of - INTERVAL 30 DAY) AS heart_rate_mean_30d,
    min(t.spo2_min) FILTER (WHERE t.measure_date > p.as_of - INTERVAL 30 DAY) AS spo2_min_30d,
    min(t.spo2_min) FILTER (WHERE t.measure_date > p.as_of - INTERVAL 7 DAY) AS spo2_min_7d,
    avg(t.systolic_mean) FILTER (WHERE t.measure_date > p.as_of - INTERVAL 30 DAY) AS systolic_mean_30d,
    avg(t.diastolic_mean) FILTER (WHERE t.measure_date > p.as_of - INTERVAL 30 DAY) AS diastolic_mean_30d,
    avg(t.steps_max) FILTER (WHERE t.measure_date > p.as_of - INTERVAL 30 DAY) AS steps_mean_30d,
    max(t.measure_date) AS last_vitals_date
  FROM library.fact_vitals_daily AS t
  CROSS JOIN params AS p
  WHERE t.elder_key IS NOT NULL
    AND t.measure_date <= p.as_of
  GROUP BY t.elder_key
)
SELECT
  d.elder_key AS elder_key,
  d.sex AS sex,
  d.age AS age,
  d.age_band AS age_band,
  d.street AS street,
  d.living_arrangement AS living_arrangement,
  d.status AS status,
  d.care_level AS care_level,
  d.care_level_valid_until AS care_level_valid_until,
  d.care_level_valid_until >= p.as_of AS care_level_valid,
  date_diff('day', p.as_of, d.care_level_valid_until) AS care_level_days_left,
  CASE
    WHEN sc.elder_key IS NULL THEN 'NOT_SCREENED'
    WHEN sc.suspected THEN 'SUSPECTED'
    WHEN NOT sc.suspected THEN 'NORMAL'
    ELSE 'UNKNOWN'
  END AS cognitive_status,
  sc.screening_date AS last_screening_date,
  sc.instrument AS last_screening_instrument,
  date_diff('day', sc.screening_date, p.as_of) AS days_since_screening,
  coalesce(sc.screening_date > p.as_of - INTERVAL 1 YEAR, false) AS screening_current,
  coalesce(dv.has_wristband, false) AS has_wristband,
  coalesce(dv.has_water_meter, false) AS has_water_meter,
  coalesce(vt.vitals_days_30d, 0) AS vitals_days_30d,
  coalesce(vt.vitals_days_7d, 0) AS vitals_days_7d,
  round(vt.heart_rate_mean_30d, 1) AS heart_rate_mean_30d,
  vt.spo2_min_30d AS spo2_min_30d,
  vt.spo2_min_7d AS spo2_min_7d,
  round(vt.systolic_mean_30d, 1) AS systolic_mean_30d,
  round(vt.diastolic_mean_30d, 1) AS diastolic_mean_30d,
  round(vt.steps_mean_30d, 0) AS steps_mean_30d,
  vt.last_vitals_date AS last_vitals_date,
    coalesce(sv.meal_aid_30d, 0) AS meal_aid_30d,
    coalesce(sv.meal_aid_90d, 0) AS meal_aid_90d,
    coalesce(sv.meal_aid_365d, 0) AS meal_aid_365d,
    coalesce(sv.love_milk_30d, 0) AS love_milk_30d,
    coalesce(sv.love_milk_90d, 0) AS love_milk_90d,
    coalesce(sv.love_milk_365d, 0) AS love_milk_365d,
    coalesce(sv.device_rental_30d, 0) AS device_rental_30d,
    coalesce(sv.device_rental_90d, 0) AS device_rental_90d,
    coalesce(sv.device_rental_365d, 0) AS device_rental_365d,
    coalesce(sv.family_care_bed_30d, 0) AS family_care_bed_30d,
    coalesce(sv.family_care_bed_90d, 0) AS family_care_bed_90d,
    coalesce(sv.family_care_bed_365d, 0) AS family_care_bed_365d,
    coalesce(sv.ltci_home_care_30d, 0) AS ltci_home_care_30d,
    coalesce(sv.ltci_home_care_90d, 0) AS ltci_home_care_90d,
    coalesce(sv.ltci_home_care_365d, 0) AS ltci_home_care_365d,
    coalesce(sv.time_bank_30d, 0) AS time_bank_30d,
    coalesce(sv.time_bank_90d, 0) AS time_bank_90d,
    coalesce(sv.time_bank_365d, 0) AS time_bank_365d,
  coalesce(sv.ltci_visits_28d, 0) AS ltci_visits_28d,
  r.visits_per_week AS ltci_visits_per_week,
  4 * r.visits_per_week AS ltci_entitled_28d,
  sv.last_service_date AS last_service_date,
  p.as_of AS as_of
FROM library.dim_elder AS d
CROSS JOIN params AS p
LEFT JOIN services AS sv ON sv.elder_key = d.elder_key
LEFT JOIN screenings AS sc ON sc.elder_key = d.elder_key AND sc.rn = 1
LEFT JOIN devices AS dv ON dv.elder_key = d.elder_key
LEFT JOIN vitals AS vt ON vt.elder_key = d.elder_key
LEFT JOIN mart_ltci_entitlement AS r
  ON r.care_level = d.care_level
 AND d.care_level_valid_until >= p.as_of
 AND d.living_arrangement IS DISTINCT FROM 'INSTITUTION'
