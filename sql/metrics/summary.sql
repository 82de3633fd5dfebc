-- Per-task metrics of the scored questions (table `scored`): means over questions.
-- Diagnosis precision and recall are null (the task has one answer letter).
SELECT
    task,
    count(*) AS questions,
    count(DISTINCT image_id) AS images,
    sum(correct) AS correct,
    avg(correct) AS accuracy,
    avg(precision) AS precision,
    avg(recall) AS recall,
    count(*) FILTER (WHERE has_error) AS errors
FROM scored
GROUP BY task
ORDER BY task
