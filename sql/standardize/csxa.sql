-- CSXA (Cervical Spine X-ray Atlas) -> one candidate row per PNG (or per unusable sheet row / JSON).
--
-- Relations (spinebench/ingest.py): sheet(row, number, curvature) from datasets.xlsx (row = Excel row),
-- labelme(member, landmarks, duplicate_labels), json_errors(member, error), members,
-- label_map(curvature, meaning, disease).
-- Parameters: $require_landmarks  boolean
-- Output: the standardized columns plus item, file and reject_reason (NULL when the row is kept).
--
-- Rules (shared/SOURCES.md 4.2, 4.3 and 5):
-- * datasets-PNG/{stem}.png, stem = 4-digit case number + 3-digit age. The age in the name does not always
--   match the sheet, so a PNG links to its sheet row by the case number (first 4 characters) only.
-- * Curvature code (1..5) -> disease through the label map (1 lordosis, 2 straight, 3 and 4 sigmoid,
--   5 kyphosis). Excel may store codes and case numbers as 3 or 3.0; both mean 3.
-- * No sheet row, a case listed twice with different codes, an empty or unknown code -> rejected.
-- * $require_landmarks: the PNG's LabelMe JSON must exist, parse, and hold the 23 landmarks with distinct
--   labels (SOURCES.md 4.3: every file has 23 shapes; one repeats a label, i.e. lacks one landmark).
--   Otherwise the JSON is not consulted for the image; a malformed JSON is still reported on its own row.
-- * A JSON without its PNG and a sheet row whose case has no PNG are rejected (nothing to render).
WITH
policies AS (
    SELECT CASE WHEN $require_landmarks IS NOT NULL THEN $require_landmarks::BOOLEAN
                ELSE error('require_landmarks must be true or false') END AS require_landmarks
),
expected AS (
    SELECT 23 AS landmarks  -- C2 centroid + 2 C2 bottom corners + 4 corners of C3..C7
),
sheet_rows AS (
    SELECT
        row, number, curvature,
        CASE WHEN try_cast(number AS DOUBLE) = floor(try_cast(number AS DOUBLE))
             THEN CAST(try_cast(number AS DOUBLE) AS BIGINT) END AS case_number,
        CASE WHEN try_cast(curvature AS DOUBLE) = floor(try_cast(curvature AS DOUBLE))
             THEN CAST(CAST(try_cast(curvature AS DOUBLE) AS BIGINT) AS VARCHAR) END AS code
    FROM sheet
),
cases AS (
    SELECT
        case_number,
        list(DISTINCT coalesce(code, coalesce(curvature, '(empty)')) ORDER BY coalesce(code, coalesce(curvature, '(empty)')))
            AS codes,
        min(row) AS first_row
    FROM sheet_rows
    WHERE case_number IS NOT NULL
    GROUP BY case_number
),
pngs AS (
    SELECT
        path,
        regexp_extract(path, '^datasets-PNG/(.+)\.[Pp][Nn][Gg]$', 1) AS stem
    FROM members
    WHERE regexp_full_match(path, 'datasets-PNG/[^/]+\.[Pp][Nn][Gg]')
),
jsons AS (
    SELECT
        path,
        regexp_extract(path, '^datasets-JSON/(.+)\.[Jj][Ss][Oo][Nn]$', 1) AS stem
    FROM members
    WHERE regexp_full_match(path, 'datasets-JSON/[^/]+\.[Jj][Ss][Oo][Nn]')
),
png_rows AS (
    SELECT
        p.path, p.stem,
        CASE WHEN regexp_full_match(left(p.stem, 4), '[0-9]{4}') THEN try_cast(left(p.stem, 4) AS BIGINT) END
            AS case_number,
        c.codes, c.first_row,
        m.disease,
        j.path AS json_path,
        lm.landmarks, lm.duplicate_labels,
        je.error AS json_error
    FROM pngs AS p
    LEFT JOIN cases AS c
        ON regexp_full_match(left(p.stem, 4), '[0-9]{4}') AND c.case_number = try_cast(left(p.stem, 4) AS BIGINT)
    LEFT JOIN label_map AS m ON len(c.codes) = 1 AND m.curvature = c.codes[1]
    LEFT JOIN jsons AS j ON j.stem = p.stem
    LEFT JOIN labelme AS lm ON lm.member = j.path
    LEFT JOIN json_errors AS je ON je.member = j.path
),
image_rows AS (
    SELECT
        'csxa-' || r.stem AS image_id,
        'csxa' AS source,
        'X-ray' AS modality,
        'cervical' AS region,
        r.disease,
        []::VARCHAR[] AS levels,
        r.path AS member,
        'lateral' AS view,
        left(r.stem, 4) AS study_id,
        NULL::VARCHAR AS series_id,
        NULL::VARCHAR AS instance_number,
        coalesce(r.codes, []::VARCHAR[]) AS source_labels,
        'csxa-' || r.stem AS item,
        CASE WHEN pol.require_landmarks AND r.json_path IS NOT NULL THEN r.json_path ELSE r.path END AS file,
        CASE
            WHEN r.case_number IS NULL THEN 'file name does not start with a 4-digit case number'
            WHEN r.codes IS NULL THEN 'no datasets.xlsx row for case ' || left(r.stem, 4)
            WHEN len(r.codes) > 1
                THEN 'conflicting curvature codes for case ' || left(r.stem, 4) || ': '
                    || array_to_string(r.codes, ', ')
            WHEN r.disease IS NULL THEN 'unknown curvature code: ' || r.codes[1]
            WHEN pol.require_landmarks AND r.json_path IS NULL THEN 'no LabelMe JSON (require_landmarks)'
            WHEN pol.require_landmarks AND r.json_error IS NOT NULL
                THEN 'malformed LabelMe JSON: ' || r.json_error
            WHEN pol.require_landmarks AND r.landmarks - r.duplicate_labels < (SELECT landmarks FROM expected)
                THEN 'LabelMe JSON lacks landmarks: ' || (r.landmarks - r.duplicate_labels) || ' distinct of '
                    || (SELECT landmarks FROM expected)
        END AS reject_reason
    FROM png_rows AS r
    CROSS JOIN policies AS pol
),
orphan_jsons AS (
    SELECT
        'csxa-' || j.stem AS item, j.path AS file, 'LabelMe JSON without PNG' AS reject_reason
    FROM jsons AS j
    WHERE NOT EXISTS (SELECT 1 FROM pngs AS p WHERE p.stem = j.stem)
),
-- Without require_landmarks the JSON is not used, but a broken one is still reported (image kept).
unused_bad_jsons AS (
    SELECT
        r.json_path AS item, r.json_path AS file, 'malformed LabelMe JSON: ' || r.json_error AS reject_reason
    FROM png_rows AS r
    CROSS JOIN policies AS pol
    WHERE r.json_error IS NOT NULL AND NOT pol.require_landmarks
),
sheet_rejections AS (
    SELECT
        'case ' || coalesce(s.number, '(empty)') AS item,
        'datasets.xlsx row ' || s.row AS file,
        CASE
            WHEN s.case_number IS NULL THEN 'malformed case number: ' || coalesce(s.number, '(empty)')
            ELSE 'datasets.xlsx row without PNG'
        END AS reject_reason
    FROM sheet_rows AS s
    WHERE s.case_number IS NULL
        OR NOT EXISTS (
            SELECT 1 FROM png_rows AS r WHERE r.case_number = s.case_number
        )
),
other_files AS (
    SELECT path AS item, path AS file, 'unexpected file in the PNG or JSON archive' AS reject_reason
    FROM members
    WHERE path <> 'datasets.xlsx'
        AND path NOT IN (SELECT path FROM pngs)
        AND path NOT IN (SELECT path FROM jsons)
)
SELECT * FROM image_rows
UNION ALL BY NAME SELECT * FROM orphan_jsons
UNION ALL BY NAME SELECT * FROM unused_bad_jsons
UNION ALL BY NAME SELECT * FROM sheet_rejections
UNION ALL BY NAME SELECT * FROM other_files
