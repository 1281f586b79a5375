-- Cross-source reconciliation (交换比对): what stewards must work through.
-- ONLY_MUNICIPAL / ONLY_DISTRICT: a living elder on one registry only;
-- ATTRIBUTE_CONFLICT: the registries' latest records disagree on an attribute;
-- DECEASED_SERVED / MOVED_OUT_SERVED: service events after the death / move-out;
-- NOT_REGISTERED_SERVED: served, but on neither registry.
WITH muni AS (
    SELECT l.elder_key, m.name, m.sex, m.phone, m.residence_address, m.street, m.living_arrangement, m.hukou_type
    FROM staged.muni_elders AS m
    JOIN (SELECT source_file, row_number, elder_key FROM library.elder_links WHERE source_table = 'muni_elders') AS l
        ON l.source_file = m._source_file AND l.row_number = m._row_number
    QUALIFY row_number() OVER (PARTITION BY l.elder_key ORDER BY m.updated_at DESC, m._row_number DESC) = 1
),
district AS (
    SELECT l.elder_key, d.name, d.sex, d.phone, d.residence_address, d.street, d.living_arrangement, d.hukou_type
    FROM staged.district_registry AS d
    JOIN (SELECT source_file, row_number, elder_key FROM library.elder_links WHERE source_table = 'district_registry') AS l
        ON l.source_file = d._source_file AND l.row_number = d._row_number
    QUALIFY row_number() OVER (PARTITION BY l.elder_key ORDER BY d._delivery_date DESC, d._row_number DESC) = 1
),
pairs AS (
    SELECT m.elder_key, 'name' AS attribute, m.name AS municipal_value, d.name AS district_value
    FROM muni AS m JOIN district AS d ON d.elder_key = m.elder_key
    UNION ALL
    SELECT m.elder_key, 'sex', m.sex, d.sex FROM muni AS m JOIN district AS d ON d.elder_key = m.elder_key
    UNION ALL
    SELECT m.elder_key, 'phone', m.phone, d.phone FROM muni AS m JOIN district AS d ON d.elder_key = m.elder_key
    UNION ALL
    SELECT m.elder_key, 'residence_address', m.residence_address, d.residence_address
    FROM muni AS m JOIN district AS d ON d.elder_key = m.elder_key
    UNION ALL
    SELECT m.elder_key, 'street', m.street, d.street FROM muni AS m JOIN district AS d ON d.elder_key = m.elder_key
    UNION ALL
    SELECT m.elder_key, 'living_arrangement', m.living_arrangement, d.living_arrangement
    FROM muni AS m JOIN district AS d ON d.elder_key = m.elder_key
    UNION ALL
    SELECT m.elder_key, 'hukou_type', m.hukou_type, d.hukou_type
    FROM muni AS m JOIN district AS d ON d.elder_key = m.elder_key
),
conflicts AS (
    SELECT
        'ATTRIBUTE_CONFLICT' AS issue_type,
        p.elder_key,
        p.attribute,
        p.municipal_value,
        p.district_value,
        CAST(NULL AS VARCHAR) AS programme,
        CAST(NULL AS DATE) AS first_event_date,
        CAST(NULL AS DATE) AS last_event_date,
        CAST(NULL AS BIGINT) AS events,
        '市级与区级平台「' || p.attribute || '」不一致' AS detail
    FROM pairs AS p
    WHERE p.municipal_value IS NOT NULL AND p.district_value IS NOT NULL AND p.municipal_value <> p.district_value
),
one_registry AS (
    SELECT
        CASE WHEN e.in_municipal_registry THEN 'ONLY_MUNICIPAL' ELSE 'ONLY_DISTRICT' END AS issue_type,
        e.elder_key,
        CAST(NULL AS VARCHAR) AS attribute,
        CAST(NULL AS VARCHAR) AS municipal_value,
        CAST(NULL AS VARCHAR) AS district_value,
        CAST(NULL AS VARCHAR) AS programme,
        CAST(NULL AS DATE) AS first_event_date,
        CAST(NULL AS DATE) AS last_event_date,
        CAST(NULL AS BIGINT) AS events,
        CASE WHEN e.in_municipal_registry THEN '市级平台在册、区级平台无记录' ELSE '区级平台在册、市级平台无记录' END
            AS detail
    FROM library.dim_elder AS e
    WHERE e.status = 'ACTIVE' AND e.in_municipal_registry <> e.in_district_registry
),
served AS (
    SELECT
        CASE
            WHEN e.status = 'DECEASED' AND s.service_date > e.death_date THEN 'DECEASED_SERVED'
            WHEN e.status = 'MOVED_OUT' AND s.service_date > e.moved_out_date THEN 'MOVED_OUT_SERVED'
            WHEN NOT e.in_municipal_registry AND NOT e.in_district_registry THEN 'NOT_REGISTERED_SERVED'
        END AS issue_type,
        s.elder_key,
        s.programme,
        s.service_date
    FROM library.fact_service_event AS s
    JOIN library.dim_elder AS e ON e.elder_key = s.elder_key
),
served_issues AS (
    SELECT
        v.issue_type,
        v.elder_key,
        CAST(NULL AS VARCHAR) AS attribute,
        CAST(NULL AS VARCHAR) AS municipal_value,
        CAST(NULL AS VARCHAR) AS district_value,
        v.programme,
        min(v.service_date) AS first_event_date,
        max(v.service_date) AS last_event_date,
        count(*) AS events,
        CASE v.issue_type
            WHEN 'DECEASED_SERVED' THEN '老人已故，仍有服务记录'
            WHEN 'MOVED_OUT_SERVED' THEN '老人已迁出，仍有服务记录'
            ELSE '未在市、区平台登记，却有服务记录'
        END AS detail
    FROM served AS v
    WHERE v.issue_type IS NOT NULL
    GROUP BY v.issue_type, v.elder_key, v.programme
),
issues AS (
    SELECT * FROM conflicts
    UNION ALL SELECT * FROM one_registry
    UNION ALL SELECT * FROM served_issues
)
SELECT
    'R' || substr(md5(i.issue_type || '|' || i.elder_key || '|' || coalesce(i.attribute, '') || '|'
        || coalesce(i.programme, '')), 1, 16) AS issue_id,
    i.issue_type,
    i.elder_key,
    e.street,
    i.attribute,
    i.municipal_value,
    i.district_value,
    i.programme,
    i.first_event_date,
    i.last_event_date,
    i.events,
    i.detail
FROM issues AS i
LEFT JOIN library.dim_elder AS e ON e.elder_key = i.elder_key
ORDER BY i.issue_type, i.elder_key, i.attribute, i.programme
