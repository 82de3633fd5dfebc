-- VinDr-SpineXR -> one candidate row per image (or per unusable annotation row).
--
-- Relations (spinebench/ingest.py): annotations(split, line, study_id, series_id, image_id, rad_id,
-- lesion_type, xmin, ymin, xmax, ymax) over the configured splits, members, label_map(source_label,
-- disease, action, map_order) with action keep | drop | healthy.
-- Parameters: $multi_lesion  most_boxes | drop
-- Output: the standardized columns plus item, file and reject_reason (NULL when the row is kept).
--
-- Rules (shared/SOURCES.md 2.3 and 5):
-- * Rows are grouped by image_id across radiologists (rad_id); every row of an image counts as one box.
--   An exact duplicate row (same split, ids, rad_id, lesion_type and box text) is one box drawn once and
--   written twice: only its first line counts, the others are rejected rows saying so (they would
--   otherwise tip most_boxes).
-- * Label map: Other lesions and Surgical implant are dropped, Spondylolysthesis is renamed, No finding
--   means Healthy. A lesion_type missing from the label map rejects the whole image: an unknown label may
--   be the finding that matters, so no diagnosis is made without it.
-- * An image with both No finding and kept lesions (radiologists disagreeing) takes the lesions: a lesion
--   box is positive evidence, "No finding" only the absence of one reader's boxes.
-- * An image whose findings were all dropped is rejected, never called Healthy (SOURCES.md 5.5).
-- * Several kept lesion types: $multi_lesion most_boxes keeps the type with most boxes (ties: label-map
--   order), drop rejects the image.
-- * The DICOM member {split}_images/{image_id}.dicom must exist; an image id in several splits is
--   rejected (its split, hence its file, is ambiguous). Film region is unknown from the data: 'spine'.
--   A missing image names the CSV lines that point at it: `annotations/train.csv lines 2, 3 -> member`.
WITH
policies AS (
    SELECT CASE WHEN $multi_lesion IN ('most_boxes', 'drop') THEN $multi_lesion
                ELSE error('unknown multi_lesion: ' || coalesce($multi_lesion, 'NULL')) END AS multi_lesion
),
-- Copies of one annotation row: the first line is the row, the later ones are duplicates.
numbered_rows AS (
    SELECT
        *,
        row_number() OVER copies AS copy,
        min(line) OVER copies AS first_line
    FROM annotations
    WINDOW copies AS (
        PARTITION BY split, study_id, series_id, image_id, rad_id, lesion_type, xmin, ymin, xmax, ymax
        ORDER BY line
    )
),
rows AS (
    SELECT
        a.split, a.line, a.study_id, a.series_id, a.image_id, a.lesion_type,
        m.disease, m.action, m.map_order,
        CASE WHEN NOT regexp_full_match(coalesce(a.image_id, ''), '[0-9A-Fa-f]+')
             THEN 'malformed image_id: ' || coalesce(a.image_id, '(empty)') END AS problem
    FROM numbered_rows AS a
    LEFT JOIN label_map AS m ON m.source_label = a.lesion_type
    WHERE a.copy = 1
),
image_facts AS (
    SELECT
        image_id,
        list(DISTINCT split ORDER BY split) AS splits,
        list(DISTINCT study_id ORDER BY study_id) FILTER (WHERE study_id IS NOT NULL) AS study_ids,
        list(DISTINCT series_id ORDER BY series_id) FILTER (WHERE series_id IS NOT NULL) AS series_ids,
        list(DISTINCT coalesce(lesion_type, '(empty)') ORDER BY coalesce(lesion_type, '(empty)'))
            FILTER (WHERE action IS NULL) AS unknown_labels,
        list(DISTINCT lesion_type ORDER BY lesion_type) FILTER (WHERE action = 'drop') AS dropped_labels,
        bool_or(action = 'healthy') AS has_healthy,
        list(DISTINCT lesion_type ORDER BY lesion_type) FILTER (WHERE lesion_type IS NOT NULL) AS source_labels,
        list(line ORDER BY line) AS lines
    FROM rows
    WHERE problem IS NULL
    GROUP BY image_id
),
lesion_counts AS (
    SELECT image_id, disease, count(*) AS boxes, min(map_order) AS map_order
    FROM rows
    WHERE problem IS NULL AND action = 'keep'
    GROUP BY image_id, disease
),
ranked_lesions AS (
    SELECT
        *,
        count(*) OVER (PARTITION BY image_id) AS lesion_types,
        row_number() OVER (PARTITION BY image_id ORDER BY boxes DESC, map_order, disease) AS preference,
        string_agg(disease, '; ') OVER (
            PARTITION BY image_id ORDER BY map_order, disease
            ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING
        ) AS lesion_names
    FROM lesion_counts
),
chosen AS (
    SELECT * FROM ranked_lesions WHERE preference = 1
),
image_decisions AS (
    SELECT
        'vindr-' || f.image_id AS image_id,
        'vindr' AS source,
        'X-ray' AS modality,
        'spine' AS region,
        CASE WHEN c.disease IS NOT NULL THEN c.disease WHEN f.has_healthy THEN 'Healthy' END AS disease,
        []::VARCHAR[] AS levels,
        f.splits[1] || '_images/' || f.image_id || '.dicom' AS member,
        NULL::VARCHAR AS view,
        f.study_ids[1] AS study_id,
        f.series_ids[1] AS series_id,
        NULL::VARCHAR AS instance_number,
        coalesce(f.source_labels, []::VARCHAR[]) AS source_labels,
        'vindr-' || f.image_id AS item,
        f.splits[1] AS first_split,
        f.lines,
        CASE WHEN len(f.splits) = 1 THEN f.splits[1] || '_images/' || f.image_id || '.dicom'
             ELSE 'annotations/{' || array_to_string(f.splits, ',') || '}.csv' END AS file,
        CASE
            WHEN len(coalesce(f.unknown_labels, [])) > 0
                THEN 'unknown lesion_type: ' || array_to_string(f.unknown_labels, '; ')
            WHEN len(f.splits) > 1
                THEN 'image_id in several splits: ' || array_to_string(f.splits, ', ')
            WHEN len(coalesce(f.study_ids, [])) > 1 OR len(coalesce(f.series_ids, [])) > 1
                THEN 'conflicting study_id/series_id across rows'
            WHEN NOT EXISTS (
                SELECT 1 FROM members AS m WHERE m.path = f.splits[1] || '_images/' || f.image_id || '.dicom'
            ) THEN 'missing image'
            WHEN c.disease IS NULL AND NOT coalesce(f.has_healthy, false)
                THEN 'only dropped findings: ' || array_to_string(f.dropped_labels, ', ')
            WHEN c.lesion_types > 1 AND pol.multi_lesion = 'drop'
                THEN 'several lesion types (multi_lesion: drop): ' || c.lesion_names
        END AS reject_reason
    FROM image_facts AS f
    CROSS JOIN policies AS pol
    LEFT JOIN chosen AS c USING (image_id)
),
-- A missing image is found again from the CSV lines that point at it (at most 5 listed).
image_rows AS (
    SELECT
        * EXCLUDE (first_split, lines, file),
        CASE WHEN reject_reason = 'missing image'
             THEN 'annotations/' || first_split || '.csv '
                 || CASE WHEN len(lines) = 1 THEN 'line ' ELSE 'lines ' END
                 || array_to_string(lines[1:5], ', ')
                 || CASE WHEN len(lines) > 5 THEN ' and ' || (len(lines) - 5) || ' more' ELSE '' END
                 || ' -> ' || file
             ELSE file END AS file
    FROM image_decisions
),
row_rejections AS (
    SELECT
        coalesce(image_id, '(no image_id)') AS item,
        'annotations/' || split || '.csv line ' || line AS file,
        problem AS reject_reason
    FROM rows
    WHERE problem IS NOT NULL
),
duplicate_rows AS (
    SELECT
        'vindr-' || coalesce(image_id, '?') || ' ' || coalesce(rad_id, '?') || ' '
            || coalesce(lesion_type, '?') AS item,
        'annotations/' || split || '.csv line ' || line || ' (same as line ' || first_line || ')' AS file,
        'exact duplicate annotation row (counted once)' AS reject_reason
    FROM numbered_rows
    WHERE copy > 1
)
SELECT * FROM image_rows
UNION ALL BY NAME SELECT * FROM row_rejections
UNION ALL BY NAME SELECT * FROM duplicate_rows
