-- Cognitive screenings (认知障碍筛查) with the instrument's cut-off applied:
-- AD8 >= 2; MMSE <= 17 illiterate, <= 20 primary school, <= 24 otherwise;
-- MoCA < 26 after +1 point for 12 years of schooling or less.
SELECT
    s.screening_id,
    l.elder_key,
    s.screening_date,
    s.instrument,
    CAST(s.score AS INTEGER) AS score,
    s.education,
    s.result,
    CASE
        WHEN s.score IS NULL THEN NULL
        WHEN s.instrument = 'AD8' THEN s.score >= 2
        WHEN s.instrument = 'MMSE' AND s.education = 'ILLITERATE' THEN s.score <= 17
        WHEN s.instrument = 'MMSE' AND s.education = 'PRIMARY' THEN s.score <= 20
        WHEN s.instrument = 'MMSE' THEN s.score <= 24
        WHEN s.instrument = 'MOCA' AND s.education IN ('ILLITERATE', 'PRIMARY', 'JUNIOR', 'SENIOR') THEN s.score + 1 < 26
        WHEN s.instrument = 'MOCA' THEN s.score < 26
    END AS suspected_impairment,
    s.screening_org,
    'screenings:' || s._source_file || ':' || s._row_number AS record_id
FROM staged.screenings AS s
LEFT JOIN library.elder_links AS l
    ON l.source_table = 'screenings' AND l.source_file = s._source_file AND l.row_number = s._row_number
ORDER BY s.screening_date, s.screening_id
