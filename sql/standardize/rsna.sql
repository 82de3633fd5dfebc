-- RSNA 2024 Lumbar Spine Degenerative Classification -> one candidate row per 2D image or bad raw row.
--
-- Relations (spinebench/ingest.py): coordinates, train, series_descriptions, members, levels,
-- label_map(condition, train_column, disease). All raw columns are strings as written in the CSVs.
-- Parameters:
--   $slice_policy     labeled_instance | middle_slice
--   $min_severity     NULL | 'Normal/Mild' | 'Moderate' | 'Severe'
--   $multi_condition  most_points | highest_severity | drop
-- Output: the standardized columns plus item, file and reject_reason (NULL when the row is kept).
--
-- Rules (shared/SOURCES.md 1.3 and 5):
-- * A point is one row of train_label_coordinates.csv. It is rejected on its own when its ids are not
--   integers, its condition or level is unknown, its severity (from train.csv) is not a known grade, or
--   another row has the same (study, condition, level) - the CSV promises one point per key, so both
--   copies are ambiguous and neither is trusted.
-- * Image: labeled_instance -> the instance a point sits on; middle_slice -> the middle instance (natural
--   numeric order, lower middle for an even count) of every series that has a point, carrying all the
--   series' points. The DICOM member must exist; a missing one is rejected naming the CSV lines of its
--   points and the file looked for (`train_label_coordinates.csv lines 2, 5 -> train_images/1/10/8.dcm`).
-- * Severity comes from train.csv (wide: <condition>_<level> columns). With $min_severity set, a point
--   below it (or with no severity) is not a finding. An image left with no finding is REJECTED rather than
--   called Healthy: a sub-threshold grade says one labelled level is mild, not that the slice is healthy,
--   and the other conditions on that slice were never graded.
-- * Left/Right variants merge through the label map (both foraminal -> Foraminal stenosis, both
--   subarticular -> Subarticular stenosis). Several merged conditions on one image are resolved by
--   $multi_condition; levels = the distinct levels of the chosen condition's findings.
-- * view = the series description from train_series_descriptions.csv (NULL when absent).
WITH
severity_grades(severity, grade) AS (
    VALUES ('Normal/Mild', 1), ('Moderate', 2), ('Severe', 3)
),
threshold AS (
    SELECT CASE
        WHEN $min_severity IS NULL THEN 0
        ELSE coalesce(
            (SELECT grade FROM severity_grades WHERE severity = $min_severity),
            error('unknown min_severity: ' || $min_severity)
        )
    END AS min_grade
),
policies AS (
    SELECT
        CASE WHEN $slice_policy IN ('labeled_instance', 'middle_slice') THEN $slice_policy
             ELSE error('unknown slice_policy: ' || coalesce($slice_policy, 'NULL')) END AS slice_policy,
        CASE WHEN $multi_condition IN ('most_points', 'highest_severity', 'drop') THEN $multi_condition
             ELSE error('unknown multi_condition: ' || coalesce($multi_condition, 'NULL')) END AS multi_condition
),
-- train.csv rows; a study listed twice has ambiguous grades, so its rows are rejected and not used.
train_rows AS (
    SELECT *, count(*) OVER (PARTITION BY study_id) AS copies FROM train
),
train_grades AS (
    UNPIVOT (SELECT * EXCLUDE (line, copies) FROM train_rows WHERE copies = 1)
    ON COLUMNS(* EXCLUDE (study_id))
    INTO NAME train_key VALUE severity
),
points AS (
    SELECT
        c.line, c.study_id, c.series_id, c.instance_number, c.condition, c.level,
        m.disease, lv.level_order, g.severity, sg.grade,
        CASE
            WHEN NOT regexp_full_match(coalesce(c.study_id, ''), '[0-9]+')
                THEN 'malformed study_id: ' || coalesce(c.study_id, '(empty)')
            WHEN NOT regexp_full_match(coalesce(c.series_id, ''), '[0-9]+')
                THEN 'malformed series_id: ' || coalesce(c.series_id, '(empty)')
            WHEN NOT regexp_full_match(coalesce(c.instance_number, ''), '[0-9]+')
                THEN 'malformed instance_number: ' || coalesce(c.instance_number, '(empty)')
            WHEN m.condition IS NULL THEN 'unknown condition: ' || coalesce(c.condition, '(empty)')
            WHEN lv.level IS NULL THEN 'unknown level: ' || coalesce(c.level, '(empty)')
            WHEN count(*) OVER (PARTITION BY c.study_id, c.condition, c.level) > 1
                THEN 'duplicate point for (study, condition, level)'
            WHEN g.severity IS NOT NULL AND sg.grade IS NULL THEN 'unknown severity: ' || g.severity
        END AS problem
    FROM coordinates AS c
    LEFT JOIN label_map AS m ON m.condition = c.condition
    LEFT JOIN levels AS lv ON lv.level = c.level
    LEFT JOIN train_grades AS g
        ON g.study_id = c.study_id
        AND g.train_key = m.train_column || '_' || lower(replace(c.level, '/', '_'))
    LEFT JOIN severity_grades AS sg ON sg.severity = g.severity
),
valid_points AS (
    SELECT *, (coalesce(grade, 0) >= (SELECT min_grade FROM threshold)) AS is_finding
    FROM points WHERE problem IS NULL
),
-- Every DICOM instance of the training series, for middle_slice and the existence check.
instances AS (
    SELECT
        path,
        regexp_extract(path, '^train_images/([0-9]+)/([0-9]+)/([0-9]+)\.dcm$', 1) AS study_id,
        regexp_extract(path, '^train_images/([0-9]+)/([0-9]+)/([0-9]+)\.dcm$', 2) AS series_id,
        regexp_extract(path, '^train_images/([0-9]+)/([0-9]+)/([0-9]+)\.dcm$', 3) AS instance_number
    FROM members
    WHERE regexp_full_match(path, 'train_images/[0-9]+/[0-9]+/[0-9]+\.dcm')
),
middle_instances AS (
    SELECT study_id, series_id, instance_number
    FROM instances
    QUALIFY row_number() OVER (
        PARTITION BY study_id, series_id ORDER BY try_cast(instance_number AS HUGEINT), instance_number
    ) = (count(*) OVER (PARTITION BY study_id, series_id) - 1) // 2 + 1
),
-- Points placed on the image they describe, under the slice policy.
placed_points AS (
    SELECT
        p.*,
        CASE WHEN pol.slice_policy = 'labeled_instance' THEN p.instance_number
             ELSE mi.instance_number END AS image_instance
    FROM valid_points AS p
    CROSS JOIN policies AS pol
    LEFT JOIN middle_instances AS mi
        ON pol.slice_policy = 'middle_slice' AND mi.study_id = p.study_id AND mi.series_id = p.series_id
),
series_views AS (
    SELECT
        study_id, series_id,
        list(DISTINCT series_description ORDER BY series_description) AS descriptions
    FROM series_descriptions
    WHERE series_description IS NOT NULL
    GROUP BY study_id, series_id
),
condition_scores AS (
    SELECT
        study_id, series_id, image_instance, disease,
        count(*) AS findings,
        max(coalesce(grade, 0)) AS top_grade
    FROM placed_points
    WHERE is_finding
    GROUP BY ALL
),
ranked_conditions AS (
    SELECT
        s.*,
        count(*) OVER image AS conditions,
        string_agg(disease, '; ') OVER (image ORDER BY disease ROWS BETWEEN UNBOUNDED PRECEDING
            AND UNBOUNDED FOLLOWING) AS condition_names,
        row_number() OVER (
            image ORDER BY
                CASE WHEN pol.multi_condition = 'highest_severity' THEN top_grade ELSE findings END DESC,
                CASE WHEN pol.multi_condition = 'highest_severity' THEN findings ELSE top_grade END DESC,
                disease
        ) AS preference
    FROM condition_scores AS s
    CROSS JOIN policies AS pol
    WINDOW image AS (PARTITION BY study_id, series_id, image_instance)
),
chosen AS (
    SELECT * FROM ranked_conditions WHERE preference = 1
),
chosen_levels AS (
    SELECT study_id, series_id, image_instance, list(level ORDER BY level_order) AS levels
    FROM (
        SELECT DISTINCT p.study_id, p.series_id, p.image_instance, p.level, p.level_order
        FROM placed_points AS p
        JOIN chosen AS c USING (study_id, series_id, image_instance, disease)
        WHERE p.is_finding
    )
    GROUP BY ALL
),
images AS (
    SELECT
        p.study_id, p.series_id, p.image_instance AS instance_number,
        list(DISTINCT p.condition ORDER BY p.condition) AS source_labels,
        list(p.line ORDER BY p.line) AS lines
    FROM placed_points AS p
    WHERE p.image_instance IS NOT NULL
    GROUP BY p.study_id, p.series_id, p.image_instance
),
image_decisions AS (
    SELECT
        'rsna-' || i.study_id || '-' || i.series_id || '-' || i.instance_number AS image_id,
        'rsna' AS source,
        'MRI' AS modality,
        'lumbar' AS region,
        c.disease,
        coalesce(l.levels, []::VARCHAR[]) AS levels,
        'train_images/' || i.study_id || '/' || i.series_id || '/' || i.instance_number || '.dcm' AS member,
        v.descriptions[1] AS view,
        i.study_id, i.series_id, i.instance_number,
        i.source_labels,
        'rsna-' || i.study_id || '-' || i.series_id || '-' || i.instance_number AS item,
        i.lines,
        'train_images/' || i.study_id || '/' || i.series_id || '/' || i.instance_number || '.dcm' AS file,
        CASE
            WHEN NOT EXISTS (
                SELECT 1 FROM instances AS x
                WHERE x.study_id = i.study_id AND x.series_id = i.series_id
                AND x.instance_number = i.instance_number
            ) THEN 'missing image'
            WHEN len(coalesce(v.descriptions, [])) > 1
                THEN 'conflicting series descriptions: ' || array_to_string(v.descriptions, '; ')
            WHEN c.disease IS NULL
                THEN 'no finding at or above min_severity ' || $min_severity
            WHEN c.conditions > 1 AND pol.multi_condition = 'drop'
                THEN 'several conditions (multi_condition: drop): ' || c.condition_names
        END AS reject_reason
    FROM images AS i
    CROSS JOIN policies AS pol
    LEFT JOIN chosen AS c
        ON c.study_id = i.study_id AND c.series_id = i.series_id AND c.image_instance = i.instance_number
    LEFT JOIN chosen_levels AS l
        ON l.study_id = i.study_id AND l.series_id = i.series_id AND l.image_instance = i.instance_number
    LEFT JOIN series_views AS v ON v.study_id = i.study_id AND v.series_id = i.series_id
),
-- middle_slice on a series whose folder holds no DICOM: there is no image to name.
empty_series AS (
    SELECT
        'rsna-' || study_id || '-' || series_id AS item,
        list(line ORDER BY line) AS lines,
        'train_images/' || study_id || '/' || series_id || '/' AS file,
        'missing image: no DICOM instances in the series' AS reject_reason
    FROM placed_points
    WHERE image_instance IS NULL
    GROUP BY study_id, series_id
),
-- A missing image is found again from the coordinate lines that point at it (at most 5 listed).
image_rows AS (
    SELECT
        * EXCLUDE (lines, file),
        CASE WHEN starts_with(reject_reason, 'missing image')
             THEN 'train_label_coordinates.csv '
                 || CASE WHEN len(lines) = 1 THEN 'line ' ELSE 'lines ' END
                 || array_to_string(lines[1:5], ', ')
                 || CASE WHEN len(lines) > 5 THEN ' and ' || (len(lines) - 5) || ' more' ELSE '' END
                 || ' -> ' || file
             ELSE file END AS file
    FROM (SELECT * FROM image_decisions UNION ALL BY NAME SELECT * FROM empty_series)
),
point_rows AS (
    SELECT
        'study ' || coalesce(study_id, '?') || ' ' || coalesce(condition, '?') || ' ' || coalesce(level, '?') AS item,
        'train_label_coordinates.csv line ' || line AS file,
        problem AS reject_reason
    FROM points
    WHERE problem IS NOT NULL
),
train_duplicate_rows AS (
    SELECT
        'study ' || coalesce(study_id, '?') AS item,
        'train.csv line ' || line AS file,
        'duplicate study_id in train.csv (its grades are not used)' AS reject_reason
    FROM train_rows
    WHERE copies > 1
)
SELECT * FROM image_rows
UNION ALL BY NAME SELECT * FROM point_rows
UNION ALL BY NAME SELECT * FROM train_duplicate_rows
