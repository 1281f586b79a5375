-- Life events (生命事件): first registration, death, moving out of the district,
-- and moves between streets, each with the record that says so.
WITH muni AS (
    SELECT
        l.elder_key,
        l.record_id,
        m.status,
        m.death_date,
        m.street,
        CAST(m.updated_at AS DATE) AS on_date,
        m.updated_at,
        m._row_number
    FROM staged.muni_elders AS m
    JOIN library.elder_links AS l
        ON l.source_table = 'muni_elders' AND l.source_file = m._source_file AND l.row_number = m._row_number
),
registry AS (
    SELECT l.elder_key, l.record_id, d.street, d.registered_on, d._delivery_date
    FROM staged.district_registry AS d
    JOIN library.elder_links AS l
        ON l.source_table = 'district_registry' AND l.source_file = d._source_file AND l.row_number = d._row_number
),
registered AS (
    SELECT elder_key, 'REGISTERED' AS event_type, registered_on AS event_date,
           '区级平台登记日期' AS detail, 'district_registry' AS source_table, record_id
    FROM registry
    WHERE registered_on IS NOT NULL
    QUALIFY row_number() OVER (PARTITION BY elder_key ORDER BY registered_on, record_id) = 1
),
deaths AS (
    SELECT elder_key, 'DEATH' AS event_type, death_date AS event_date,
           '市级平台登记死亡' AS detail, 'muni_elders' AS source_table, record_id
    FROM muni
    WHERE status = 'DECEASED' AND death_date IS NOT NULL
    QUALIFY row_number() OVER (PARTITION BY elder_key ORDER BY updated_at DESC, _row_number DESC) = 1
),
moved_out AS (
    SELECT elder_key, 'MOVED_OUT' AS event_type, on_date AS event_date,
           '市级平台状态变更为迁出' AS detail, 'muni_elders' AS source_table, record_id
    FROM muni
    WHERE status = 'MOVED_OUT'
    QUALIFY row_number() OVER (PARTITION BY elder_key ORDER BY updated_at, _row_number) = 1
),
street_versions AS (
    SELECT
        elder_key,
        record_id,
        street,
        on_date,
        lag(street) OVER (PARTITION BY elder_key ORDER BY updated_at, _row_number) AS previous_street
    FROM muni
    WHERE street IS NOT NULL
),
street_changes AS (
    SELECT elder_key, 'STREET_CHANGE' AS event_type, on_date AS event_date,
           '街道由 ' || previous_street || ' 变更为 ' || street AS detail, 'muni_elders' AS source_table, record_id
    FROM street_versions
    WHERE previous_street IS NOT NULL AND previous_street <> street
)
SELECT * FROM registered
UNION ALL SELECT * FROM deaths
UNION ALL SELECT * FROM moved_out
UNION ALL (
    SELECT * FROM street_changes
    QUALIFY row_number() OVER (PARTITION BY elder_key, event_date ORDER BY record_id DESC) = 1
)
ORDER BY elder_key, event_date, event_type
