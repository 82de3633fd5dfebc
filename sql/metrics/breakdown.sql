-- Per-task metrics of the scored questions (table `scored`) by disease, by source and by modality.
SELECT task, 'disease' AS dimension, disease AS value, count(*) AS questions,
       avg(correct) AS accuracy, avg(precision) AS precision, avg(recall) AS recall
FROM scored
GROUP BY task, disease
UNION ALL
SELECT task, 'source' AS dimension, source AS value, count(*) AS questions,
       avg(correct) AS accuracy, avg(precision) AS precision, avg(recall) AS recall
FROM scored
GROUP BY task, source
UNION ALL
SELECT task, 'modality' AS dimension, modality AS value, count(*) AS questions,
       avg(correct) AS accuracy, avg(precision) AS precision, avg(recall) AS recall
FROM scored
GROUP BY task, modality
ORDER BY task, dimension, value
