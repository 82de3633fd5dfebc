-- BUU-LSPINE -> one candidate row per film (JPEG + same-stem CSV) in the configured views.
--
-- Relations (spinebench/ingest.py): endplates(member, row_index, line, x1, y1, x2, y2, label) for every
-- CSV of the configured views, csv_errors(member, error), members, levels(level, level_order),
-- label_map(label, meaning, listhesis).
-- Parameters:
--   $views                  list of 'AP' / 'LA'
--   $flag_level_rule        adjacent_disc | vertebra_caudal_disc
--   $zero_label_is_healthy  boolean
-- Output: the standardized columns plus item, file and reject_reason (NULL when the row is kept).
--
-- Rules (shared/SOURCES.md 3.2, 3.3 and 5):
-- * Files: {view}/{case}Y0.jpg + .csv (AP), {view}/{case}Y1.jpg + .csv (LA). A JPEG without its CSV, a CSV
--   without its JPEG, a stem whose Y0/Y1 suffix contradicts its folder, and any other file directly in a
--   view folder are rejected.
-- * CSV rows are endplates, cranial to caudal: row 0 L1 superior, 1 L1 inferior, 2 L2 superior, ...,
--   9 L5 inferior, 10 S1 superior (LA only). AP needs exactly 10 rows, LA exactly 11.
-- * A row whose label is a listhesis code in the label map flags its endplate. Levels of flagged rows:
--     adjacent_disc:        superior endplate of Lk -> disc above (none for L1), inferior of Lk -> disc
--                           below, S1 superior -> L5/S1;
--     vertebra_caudal_disc: any endplate of Lk -> disc below Lk, S1 superior -> L5/S1.
--   Any flag -> Spondylolisthesis with those levels (possibly none: only L1 superior flagged under
--   adjacent_disc). No flag -> Healthy when $zero_label_is_healthy, else rejected.
-- * Coordinates must be numbers and labels integral codes of the label map, else the film is rejected.
WITH
policies AS (
    SELECT
        CASE WHEN $flag_level_rule IN ('adjacent_disc', 'vertebra_caudal_disc') THEN $flag_level_rule
             ELSE error('unknown flag_level_rule: ' || coalesce($flag_level_rule, 'NULL')) END AS flag_level_rule,
        CASE WHEN $zero_label_is_healthy IS NOT NULL THEN $zero_label_is_healthy::BOOLEAN
             ELSE error('zero_label_is_healthy must be true or false') END AS zero_label_is_healthy
),
view_rules(view, suffix, expected_rows) AS (
    VALUES ('AP', 'Y0', 10), ('LA', 'Y1', 11)
),
view_files AS (
    SELECT
        m.path,
        split_part(m.path, '/', 1) AS view,
        regexp_extract(m.path, '^[^/]+/(.+)\.[^./]+$', 1) AS stem,
        CASE
            WHEN regexp_full_match(lower(m.path), '[^/]+/[^/]+\.jpe?g') THEN 'image'
            WHEN regexp_full_match(lower(m.path), '[^/]+/[^/]+\.csv') THEN 'csv'
        END AS kind
    FROM members AS m
    WHERE list_contains($views::VARCHAR[], split_part(m.path, '/', 1))
),
films AS (
    SELECT
        view, stem,
        list(path ORDER BY path) FILTER (WHERE kind = 'image') AS images,
        list(path ORDER BY path) FILTER (WHERE kind = 'csv') AS csvs
    FROM view_files
    WHERE kind IS NOT NULL
    GROUP BY view, stem
),
rows AS (
    SELECT
        e.*,
        CASE WHEN try_cast(e.label AS DOUBLE) = floor(try_cast(e.label AS DOUBLE))
             THEN CAST(CAST(try_cast(e.label AS DOUBLE) AS BIGINT) AS VARCHAR) END AS label_code,
        m.listhesis = 'true' AS flagged,
        CASE
            WHEN try_cast(e.x1 AS DOUBLE) IS NULL OR try_cast(e.y1 AS DOUBLE) IS NULL
                OR try_cast(e.x2 AS DOUBLE) IS NULL OR try_cast(e.y2 AS DOUBLE) IS NULL
                THEN 'non-numeric coordinate on line ' || e.line
            WHEN m.label IS NULL THEN 'unknown label ' || coalesce(e.label, '(empty)') || ' on line ' || e.line
        END AS problem,
        e.row_index // 2 AS vertebra,          -- 0..4 = L1..L5, 5 = S1
        e.row_index % 2 = 0 AS is_superior
    FROM endplates AS e
    LEFT JOIN label_map AS m
        ON try_cast(e.label AS DOUBLE) = floor(try_cast(e.label AS DOUBLE))
        AND try_cast(m.label AS DOUBLE) = try_cast(e.label AS DOUBLE)
),
flagged_levels AS (
    SELECT r.member, lv.level, lv.level_order
    FROM rows AS r
    CROSS JOIN policies AS pol
    JOIN levels AS lv ON lv.level_order = CASE
        WHEN pol.flag_level_rule = 'adjacent_disc' AND r.is_superior THEN r.vertebra - 1
        WHEN pol.flag_level_rule = 'adjacent_disc' THEN r.vertebra
        ELSE least(r.vertebra, 4)
    END
    WHERE r.flagged AND r.problem IS NULL
),
csv_facts AS (
    SELECT
        member,
        count(*) AS row_count,
        -- The first bad row names the problem; the count says whether more follow.
        arg_min(problem, row_index) FILTER (WHERE problem IS NOT NULL)
            || CASE WHEN count(problem) > 1 THEN ' (and ' || (count(problem) - 1) || ' more bad rows)' ELSE '' END
            AS problems,
        bool_or(coalesce(flagged, false)) AS any_flag,
        -- Raw label codes as integers written back to text ('0.0' and '0' are the same code).
        list(DISTINCT label_code ORDER BY label_code) FILTER (WHERE label_code IS NOT NULL) AS labels
    FROM rows
    GROUP BY member
),
csv_levels AS (
    SELECT member, list(level ORDER BY level_order) AS levels
    FROM (SELECT DISTINCT member, level, level_order FROM flagged_levels)
    GROUP BY member
),
film_rows AS (
    SELECT
        f.view, f.stem,
        regexp_extract(f.stem, '^(.*)Y[0-9]$', 1) AS case_id,
        f.images[1] AS image_member,
        f.csvs[1] AS csv_member,
        vr.suffix, vr.expected_rows,
        coalesce(c.row_count, 0) AS row_count,
        c.problems, c.any_flag, c.labels,
        l.levels,
        err.error AS csv_error,
        len(coalesce(f.images, [])) AS image_count,
        len(coalesce(f.csvs, [])) AS csv_count
    FROM films AS f
    JOIN view_rules AS vr USING (view)
    LEFT JOIN csv_facts AS c ON c.member = f.csvs[1]
    LEFT JOIN csv_levels AS l ON l.member = f.csvs[1]
    LEFT JOIN csv_errors AS err ON err.member = f.csvs[1]
),
film_decisions AS (
    SELECT
        *,
        CASE
            WHEN NOT ends_with(stem, suffix) OR case_id = ''
                THEN 'file name does not end in ' || suffix || ' (view ' || view || ')'
            WHEN image_count > 1 THEN 'several images for one film: ' || stem
            WHEN csv_count > 1 THEN 'several annotation CSVs for one film: ' || stem
            WHEN image_count = 0 THEN 'annotation CSV without image'
            WHEN csv_count = 0 THEN 'image without annotation CSV'
            WHEN csv_error IS NOT NULL THEN 'unreadable annotation CSV: ' || csv_error
            WHEN row_count <> expected_rows
                THEN 'expected ' || expected_rows || ' endplate rows (' || view || '), found ' || row_count
            WHEN problems IS NOT NULL THEN problems
            WHEN NOT any_flag AND NOT (SELECT zero_label_is_healthy FROM policies)
                THEN 'all labels zero (zero_label_is_healthy: false)'
        END AS reject_reason
    FROM film_rows
),
film_output AS (
    SELECT
        CASE WHEN case_id <> '' THEN 'buu-' || case_id || '-' || view END AS image_id,
        'buu' AS source,
        'X-ray' AS modality,
        'lumbar' AS region,
        CASE WHEN any_flag THEN 'Spondylolisthesis' ELSE 'Healthy' END AS disease,
        CASE WHEN any_flag THEN coalesce(levels, []::VARCHAR[]) ELSE []::VARCHAR[] END AS levels,
        image_member AS member,
        view,
        case_id AS study_id,
        NULL::VARCHAR AS series_id,
        NULL::VARCHAR AS instance_number,
        coalesce(labels, []::VARCHAR[]) AS source_labels,
        coalesce(CASE WHEN case_id <> '' THEN 'buu-' || case_id || '-' || view END, view || '/' || stem) AS item,
        coalesce(csv_member, image_member) AS file,
        reject_reason
    FROM film_decisions
),
unexpected_files AS (
    SELECT path AS item, path AS file, 'unexpected file in view folder' AS reject_reason
    FROM view_files
    WHERE kind IS NULL
)
SELECT * FROM film_output
UNION ALL BY NAME SELECT * FROM unexpected_files
