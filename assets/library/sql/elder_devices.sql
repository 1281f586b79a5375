-- Monitoring devices (监测设备): wristbands and water meters from their latest
-- monthly lists, with the elder each belongs to.
WITH wristbands AS (
    SELECT
        'WRISTBAND' AS device_kind,
        w.device_id,
        l.elder_key,
        w.street,
        w.issued_on AS installed_on,
        CAST(NULL AS BOOLEAN) AS lives_alone,
        w.fence_lat,
        w.fence_lon,
        w.fence_radius_m,
        w._delivery_date AS last_listed
    FROM staged.wristband_devices AS w
    LEFT JOIN library.elder_links AS l
        ON l.source_table = 'wristband_devices' AND l.source_file = w._source_file AND l.row_number = w._row_number
    QUALIFY row_number() OVER (PARTITION BY w.device_id ORDER BY w._delivery_date DESC, w._row_number DESC) = 1
),
meters AS (
    SELECT
        'WATER_METER' AS device_kind,
        m.meter_id AS device_id,
        l.elder_key,
        m.street,
        m.installed_on,
        m.lives_alone = 'Y' AS lives_alone,
        CAST(NULL AS DOUBLE) AS fence_lat,
        CAST(NULL AS DOUBLE) AS fence_lon,
        CAST(NULL AS BIGINT) AS fence_radius_m,
        m._delivery_date AS last_listed
    FROM staged.water_meters AS m
    LEFT JOIN library.elder_links AS l
        ON l.source_table = 'water_meters' AND l.source_file = m._source_file AND l.row_number = m._row_number
    QUALIFY row_number() OVER (PARTITION BY m.meter_id ORDER BY m._delivery_date DESC, m._row_number DESC) = 1
)
SELECT * FROM wristbands
UNION ALL
SELECT * FROM meters
ORDER BY device_kind, device_id
