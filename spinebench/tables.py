"""Arrow schemas of tables that several stages read or write, kept in one light module.

Modules that only consume a table (the catalog) import its schema from here instead of from the stage
that writes it, which would pull in that stage's decoders.
"""

from __future__ import annotations

import pyarrow as pa

# The images table of docs/contracts.md (written by render, read by catalog, embed and predict).
IMAGES_SCHEMA = pa.schema(
    [
        ("image_id", pa.string()),
        ("png", pa.binary()),
        ("png_sha256", pa.string()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("variance", pa.float64()),
        ("laplacian_variance", pa.float64()),
        ("contrast", pa.float64()),
    ]
)
