-- How the counted answers were obtained (table `scored`): questions per task and extraction path
-- ('missing': no prediction row).
SELECT task, extraction, count(*) AS questions
FROM scored
GROUP BY task, extraction
ORDER BY task, extraction
