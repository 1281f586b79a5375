-- Golden elder record (dim_elder): the surviving value of every attribute
-- (library.elder_attribute_provenance, rules in assets/library/survivorship.yaml),
-- registry status and life dates from the municipal platform's latest record,
-- the latest needs assessment, and where the elder is known.
WITH attrs AS (
    SELECT
        p.elder_key,
        max(p.value) FILTER (WHERE p.attribute = 'name') AS name,
        max(p.value) FILTER (WHERE p.attribute = 'sex') AS sex,
        max(p.value) FILTER (WHERE p.attribute = 'birth_date') AS birth_date,
        max(p.value) FILTER (WHERE p.attribute = 'id_number') AS id_number,
        max(p.value) FILTER (WHERE p.attribute = 'phone') AS phone,
        max(p.value) FILTER (WHERE p.attribute = 'residence_address') AS residence_address,
        max(p.value) FILTER (WHERE p.attribute = 'street') AS street,
        max(p.value) FILTER (WHERE p.attribute = 'committee') AS committee,
        max(p.value) FILTER (WHERE p.attribute = 'hukou_type') AS hukou_type,
        max(p.value) FILTER (WHERE p.attribute = 'living_arrangement') AS living_arrangement,
        max(p.value) FILTER (WHERE p.attribute = 'platform_elder_id') AS platform_elder_id,
        max(p.value) FILTER (WHERE p.attribute = 'senior_card_no') AS senior_card_no
    FROM library.elder_attribute_provenance AS p
    GROUP BY p.elder_key
),
seen AS (
    SELECT
        l.elder_key,
        count(*) AS records,
        count(DISTINCT l.source_table) AS source_tables,
        bool_or(l.source_table = 'muni_elders') AS in_municipal_registry,
        bool_or(l.source_table = 'district_registry') AS in_district_registry,
        min(l.delivery_date) AS first_seen,
        max(l.delivery_date) AS last_seen
    FROM library.elder_links AS l
    GROUP BY l.elder_key
),
muni AS (
    SELECT
        l.elder_key,
        m.status,
        m.death_date,
        m.updated_at
    FROM staged.muni_elders AS m
    JOIN library.elder_links AS l
        ON l.source_table = 'muni_elders' AND l.source_file = m._source_file AND l.row_number = m._row_number
    QUALIFY row_number() OVER (PARTITION BY l.elder_key ORDER BY m.updated_at DESC, m._row_number DESC) = 1
),
moved AS (
    SELECT l.elder_key, min(CAST(m.updated_at AS DATE)) AS moved_out_date
    FROM staged.muni_elders AS m
    JOIN library.elder_links AS l
        ON l.source_table = 'muni_elders' AND l.source_file = m._source_file AND l.row_number = m._row_number
    WHERE m.status = 'MOVED_OUT'
    GROUP BY l.elder_key
),
assessed AS (
    SELECT
        l.elder_key,
        a.care_level,
        a.assessment_date,
        a.valid_until
    FROM staged.muni_assessments AS a
    JOIN library.elder_links AS l
        ON l.source_table = 'muni_assessments' AND l.source_file = a._source_file AND l.row_number = a._row_number
    QUALIFY row_number() OVER (PARTITION BY l.elder_key ORDER BY a.assessment_date DESC, a.assessment_id DESC) = 1
),
typed AS (
    SELECT
        s.elder_key,
        a.name,
        a.sex,
        CAST(a.birth_date AS DATE) AS birth_date,
        a.id_number,
        a.phone,
        a.residence_address,
        a.street,
        a.committee,
        a.hukou_type,
        a.living_arrangement,
        coalesce(m.status, 'ACTIVE') AS status,
        m.death_date,
        CASE WHEN m.status = 'MOVED_OUT' THEN mv.moved_out_date END AS moved_out_date,
        x.care_level,
        x.assessment_date AS care_level_assessed_on,
        x.valid_until AS care_level_valid_until,
        a.platform_elder_id,
        a.senior_card_no,
        s.in_municipal_registry,
        s.in_district_registry,
        s.source_tables,
        s.records,
        s.first_seen,
        s.last_seen,
        -- age on the build's as-of date, or at death
        least(CAST(getvariable('as_of') AS DATE), coalesce(m.death_date, CAST(getvariable('as_of') AS DATE))) AS age_on
    FROM seen AS s
    LEFT JOIN attrs AS a ON a.elder_key = s.elder_key
    LEFT JOIN muni AS m ON m.elder_key = s.elder_key
    LEFT JOIN moved AS mv ON mv.elder_key = s.elder_key
    LEFT JOIN assessed AS x ON x.elder_key = s.elder_key
),
aged AS (
    SELECT
        t.*,
        CAST(
            year(t.age_on) - year(t.birth_date)
            - CASE WHEN strftime(t.age_on, '%m%d') < strftime(t.birth_date, '%m%d') THEN 1 ELSE 0 END
            AS INTEGER
        ) AS age
    FROM typed AS t
)
SELECT
    g.elder_key,
    g.name,
    g.sex,
    g.birth_date,
    g.age,
    CASE
        WHEN g.age IS NULL THEN NULL
        WHEN g.age < 60 THEN '<60'
        WHEN g.age >= 100 THEN '100+'
        ELSE CAST(g.age // 5 * 5 AS VARCHAR) || '-' || CAST(g.age // 5 * 5 + 4 AS VARCHAR)
    END AS age_band,
    g.id_number,
    g.phone,
    g.residence_address,
    g.street,
    g.committee,
    g.hukou_type,
    g.living_arrangement,
    g.status,
    g.death_date,
    g.moved_out_date,
    g.care_level,
    g.care_level_assessed_on,
    g.care_level_valid_until,
    g.platform_elder_id,
    g.senior_card_no,
    g.in_municipal_registry,
    g.in_district_registry,
    CAST(g.source_tables AS INTEGER) AS source_tables,
    CAST(g.records AS INTEGER) AS records,
    g.first_seen,
    g.last_seen
FROM aged AS g
ORDER BY g.elder_key
