-- Per-question scores of one model on the localization questions that count under $split
-- ('subset': the SpineBench-Sub questions in $subset; 'full': every question in $questions).
-- Answers are sorted letters joined by ','. Per question i: m_i = |pred ∩ truth|, p_i = |pred| (distinct
-- letters; 0 when there is no prediction row or the answer is null), g_i = |truth|;
-- correct = 1[m_i = g_i and p_i = g_i], precision = m_i / p_i (0 when p_i = 0), recall = m_i / g_i.
-- Columns are the same, in the same order, as score_diagnosis.sql.
WITH counted AS (
    SELECT question_id, image_id, CAST(answer AS VARCHAR) AS truth
    FROM read_parquet($questions)
    WHERE $split = 'full'
       OR question_id IN (SELECT question_id FROM read_parquet($subset) WHERE task = 'localization')
),
predicted AS (
    SELECT
        question_id,
        CAST(answer AS VARCHAR) AS answer,
        CAST(extraction AS VARCHAR) AS extraction,
        error IS NOT NULL AS has_error
    FROM read_parquet($predictions)
),
letter_sets AS (
    SELECT
        counted.question_id,
        counted.image_id,
        counted.truth,
        predicted.answer,
        predicted.extraction,
        predicted.has_error,
        list_distinct(string_split(counted.truth, ',')) AS truth_letters,
        CASE
            WHEN predicted.answer IS NULL OR predicted.answer = '' THEN CAST([] AS VARCHAR[])
            ELSE list_distinct(string_split(predicted.answer, ','))
        END AS predicted_letters
    FROM counted
    LEFT JOIN predicted ON predicted.question_id = counted.question_id
),
counts AS (
    SELECT
        *,
        CAST(len(list_intersect(predicted_letters, truth_letters)) AS INTEGER) AS matched,
        CAST(len(predicted_letters) AS INTEGER) AS predicted_count,
        CAST(len(truth_letters) AS INTEGER) AS truth_count
    FROM letter_sets
)
SELECT
    'localization' AS task,
    counts.question_id,
    counts.image_id,
    CAST(catalog.source AS VARCHAR) AS source,
    CAST(catalog.modality AS VARCHAR) AS modality,
    CAST(catalog.disease AS VARCHAR) AS disease,
    counts.truth,
    counts.answer AS predicted,
    coalesce(counts.extraction, 'missing') AS extraction,
    coalesce(counts.has_error, false) AS has_error,
    CAST(matched = truth_count AND predicted_count = truth_count AS INTEGER) AS correct,
    matched,
    predicted_count,
    truth_count,
    CASE WHEN predicted_count = 0 THEN 0.0 ELSE matched / predicted_count END AS precision,
    matched / truth_count AS recall
FROM counts
LEFT JOIN read_parquet($catalog) AS catalog ON catalog.image_id = counts.image_id
ORDER BY counts.question_id
