"""The benchmark's fixed vocabularies: diseases, lumbar levels, tasks and option letters.

Every table and every prompt uses these exact strings; label maps in resources/label_maps/ map
source labels onto them.
"""

from __future__ import annotations

HEALTHY = "Healthy"

# The 11 standardized diseases of the paper (Appendix Table 5), in the paper's order.
DISEASES: tuple[str, ...] = (
    "Disc space narrowing",
    "Foraminal stenosis",
    "Subarticular stenosis",
    "Osteophytes",
    "Spinal canal stenosis",
    "Spondylolisthesis",
    "Straight cervical vertebrae",
    "Vertebral collapse",
    "Cervical kyphosis",
    "Cervical lordosis",
    "Sigmoid cervical vertebrae",
)

# Every label an image can carry: the diseases plus Healthy.
LABELS: tuple[str, ...] = DISEASES + (HEALTHY,)

# Lumbar intervertebral levels, cranial to caudal: the localization options.
LEVELS: tuple[str, ...] = ("L1/L2", "L2/L3", "L3/L4", "L4/L5", "L5/S1")

TASKS: tuple[str, ...] = ("diagnosis", "localization")

# Option letters of both tasks (5 options each).
LETTERS: tuple[str, ...] = ("A", "B", "C", "D", "E")

SOURCES: tuple[str, ...] = ("rsna", "vindr", "buu", "csxa")
