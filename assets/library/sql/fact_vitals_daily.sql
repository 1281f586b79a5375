-- Daily vital-sign summary (每日体征汇总) per wristband, with its elder.
WITH devices AS (
    SELECT d.device_id, d.elder_key
    FROM library.elder_devices AS d
    WHERE d.device_kind = 'WRISTBAND'
)
SELECT
    v.device_id,
    CAST(v.measured_at AS DATE) AS measure_date,
    min(d.elder_key) AS elder_key,
    CAST(count(*) AS INTEGER) AS readings,
    CAST(min(v.heart_rate) AS INTEGER) AS heart_rate_min,
    round(avg(v.heart_rate), 1) AS heart_rate_mean,
    CAST(max(v.heart_rate) AS INTEGER) AS heart_rate_max,
    CAST(min(v.spo2) AS INTEGER) AS spo2_min,
    round(avg(v.spo2), 1) AS spo2_mean,
    round(avg(v.systolic), 1) AS systolic_mean,
    round(avg(v.diastolic), 1) AS diastolic_mean,
    CAST(max(v.steps) AS INTEGER) AS steps_max
FROM staged.wristband_vitals AS v
LEFT JOIN devices AS d ON d.device_id = v.device_id
GROUP BY v.device_id, CAST(v.measured_at AS DATE)
ORDER BY measure_date, v.device_id
