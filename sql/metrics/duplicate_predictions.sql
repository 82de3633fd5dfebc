-- Question ids that occur more than once in the predictions file $predictions (a broken file: every
-- question must have at most one finalized prediction, or it would be counted twice).
SELECT question_id, count(*) AS rows
FROM read_parquet($predictions)
GROUP BY question_id
HAVING count(*) > 1
ORDER BY question_id
LIMIT 5
