"""How much of one output a run's record keeps.

The checks see a node's whole output; the run's record (results.json,
junit.xml's properties, MLflow's per-run table and traces, the HTML report)
keeps at most :data:`MAX_OUTPUT_CHARS` characters of it, cut with a marker
that says how much was left out. The provider's ``max_response_bytes``
bounds what is read; this bounds what one run writes.
"""

from __future__ import annotations

import json
from typing import Any

MAX_OUTPUT_CHARS = 100_000
"""Longest output kept in a run's record, in characters."""


def for_record(output: Any, limit: int = MAX_OUTPUT_CHARS) -> Any:
    """``output`` as the record keeps it: unchanged when short enough; a
    longer text (or parsed JSON whose JSON text is longer) cut to ``limit``
    characters followed by ``… [promptab: N more characters not kept]``."""
    if isinstance(output, str):
        text = output
    elif isinstance(output, (dict, list)):
        text = json.dumps(output, ensure_ascii=False, default=str)
    else:
        return output
    if len(text) <= limit:
        return output
    return f"{text[:limit]}… [promptab: {len(text) - limit} more characters not kept]"

