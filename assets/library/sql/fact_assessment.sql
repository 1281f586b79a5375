-- Needs assessments (需求评估) linked to the elder.
SELECT
    a.assessment_id,
    l.elder_key,
    a.assessment_date,
    a.assessment_type,
    a.care_level,
    a.valid_until,
    a.assessor_org,
    'muni_assessments:' || a._source_file || ':' || a._row_number AS record_id
FROM staged.muni_assessments AS a
LEFT JOIN library.elder_links AS l
    ON l.source_table = 'muni_assessments' AND l.source_file = a._source_file AND l.row_number = a._row_number
ORDER BY a.assessment_date, a.assessment_id
