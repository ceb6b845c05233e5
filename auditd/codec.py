"""JSON where the daemon spends its time, at C speed, with the standard library's results.

Every watch event, list page and `rbd` status document is decoded here (orjson up to 1 MiB,
json beyond: see ORJSON_UP_TO), and every object's facts are encoded here for the objects
table. The standard library's json took about a sixth of the CPU an event costs in
bench/watch_scale.py (2026-12-07: decoding a 1.2 KB watch event 8.2 us, encoding a PVC's facts
2.0 us, its labels 2.0 us; orjson 3.1, 0.17 and 0.13 us).

What json accepts and orjson refuses (NaN and Infinity, a number too large for a float, a
lone surrogate escape, UTF-16 input) is decoded by json, so a document never becomes garbage
by coming through here. One difference stays: an integer outside 64 bits
(below -2**63 or above 2**64 - 1) is read as a float. No Kubernetes field is wider than int64
and no Ceph one wider than uint64, so only garbage carries one, and a fact made of it is a
string either way. What is stored as a fact (``canonical``) is what json.dumps wrote before,
byte for byte: a different spelling of the same labels would be a change of every PVC's labels
at the first relist after an upgrade.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import orjson

# orjson holds about 17 times a document's size at its peak while decoding it, json about 6
# (tracemalloc, 2026-12-07): for a watch event that is nothing, for a list page of 500 PVCs
# (600 KB) 10 MB instead of 4, but for one pool's `rbd mirror pool status` of 10,000 images
# (7 MB) it was 104 MB instead of 26, and 50,000 images would be half a gigabyte. Larger
# documents go to json: their decode is a small part of what their parse costs anyway.
ORJSON_UP_TO = 1 << 20


def loads(data: bytes | str) -> Any:
    """json.loads's result; raises ValueError where json.loads refuses the document, and for
    one nested too deeply for either (json raised RecursionError: no caller expected that)."""
    if len(data) <= ORJSON_UP_TO:
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass
    try:
        return json.loads(data)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def dumps_facts(facts: Mapping[str, str | None]) -> str:
    """An object's facts as JSON text that json.loads reads back equal (orjson's spelling)."""
    return orjson.dumps(facts).decode()


def canonical(value: Any) -> str:
    """``json.dumps(value, sort_keys=True, separators=(",", ":"))``, byte for byte. orjson
    writes the same for a mapping of strings to strings in ASCII (labels); anything else
    (floats and non-ASCII are spelled differently) goes to json."""
    if isinstance(value, dict) and all(type(v) is str for v in value.values()):
        out = orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
        if out.isascii():
            return out.decode()
    return json.dumps(value, sort_keys=True, separators=(",", ":"))
