-- Per-question scores of one model on the diagnosis questions that count under $split
-- ('subset': the SpineBench-Sub questions in $subset; 'full': every question in $questions).
-- A counted question with no prediction row, or whose extracted answer is null, is wrong.
-- Image attributes (source, modality, disease) come from the catalog $catalog; a question whose image is
-- missing there keeps null attributes, which the caller rejects.
-- Columns are the same, in the same order, as score_localization.sql.
WITH counted AS (
    SELECT question_id, image_id, CAST(answer AS VARCHAR) AS truth
    FROM read_parquet($questions)
    WHERE $split = 'full'
       OR question_id IN (SELECT question_id FROM read_parquet($subset) WHERE task = 'diagnosis')
),
predicted AS (
    SELECT
        question_id,
        CAST(answer AS VARCHAR) AS answer,
        CAST(extraction AS VARCHAR) AS extraction,
        error IS NOT NULL AS has_error
    FROM read_parquet($predictions)
)
SELECT
    'diagnosis' AS task,
    counted.question_id,
    counted.image_id,
    CAST(catalog.source AS VARCHAR) AS source,
    CAST(catalog.modality AS VARCHAR) AS modality,
    CAST(catalog.disease AS VARCHAR) AS disease,
    counted.truth,
    predicted.answer AS predicted,
    coalesce(predicted.extraction, 'missing') AS extraction,
    coalesce(predicted.has_error, false) AS has_error,
    CAST(coalesce(predicted.answer = counted.truth, false) AS INTEGER) AS correct,
    CAST(NULL AS INTEGER) AS matched,
    CAST(NULL AS INTEGER) AS predicted_count,
    CAST(NULL AS INTEGER) AS truth_count,
    CAST(NULL AS DOUBLE) AS precision,
    CAST(NULL AS DOUBLE) AS recall
FROM counted
LEFT JOIN predicted ON predicted.question_id = counted.question_id
LEFT JOIN read_parquet($catalog) AS catalog ON catalog.image_id = counted.image_id
ORDER BY counted.question_id
