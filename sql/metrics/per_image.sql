-- Per-image totals of the scored questions (table `scored`): the units the bootstrap resamples.
-- Every drawn image contributes all its counted questions, so sums over drawn images give every metric.
SELECT
    image_id,
    count(*) FILTER (WHERE task = 'diagnosis') AS diagnosis_questions,
    coalesce(sum(correct) FILTER (WHERE task = 'diagnosis'), 0) AS diagnosis_correct,
    count(*) FILTER (WHERE task = 'localization') AS localization_questions,
    coalesce(sum(correct) FILTER (WHERE task = 'localization'), 0) AS localization_correct,
    coalesce(sum(precision) FILTER (WHERE task = 'localization'), 0.0) AS localization_precision_sum,
    coalesce(sum(recall) FILTER (WHERE task = 'localization'), 0.0) AS localization_recall_sum
FROM scored
GROUP BY image_id
ORDER BY image_id
