-- Time-bank volunteers (时间银行志愿者): hours earned and spent, elders served.
SELECT
    t.volunteer_id,
    -- ties broken by the row's lineage: scans of encrypted files come in no fixed order
    arg_max(t.volunteer_name, (t.txn_date, t._source_file, t._row_number)) AS name,
    arg_max(t.volunteer_phone, (t.txn_date, t._source_file, t._row_number)) AS phone,
    mode(t.street ORDER BY t.street) AS street,
    round(sum(CASE WHEN t.txn_type = 'EARN' THEN t.hours ELSE 0 END), 2) AS hours_earned,
    round(sum(CASE WHEN t.txn_type = 'SPEND' THEN t.hours ELSE 0 END), 2) AS hours_spent,
    CAST(count(DISTINCT l.elder_key) AS INTEGER) AS elders_served,
    min(t.txn_date) AS first_service,
    max(t.txn_date) AS last_service
FROM staged.timebank_transactions AS t
LEFT JOIN library.elder_links AS l
    ON l.source_table = 'timebank_transactions' AND l.source_file = t._source_file AND l.row_number = t._row_number
GROUP BY t.volunteer_id
ORDER BY t.volunteer_id
