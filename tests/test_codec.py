"""auditd/codec.py: orjson's speed with the standard library's results, whatever comes in."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from auditd import codec

# What a watch stream, a list page or `rbd --format json` can carry: any JSON document.
# Integers within 64 bits: past them orjson reads a float (see the module; tested below).
ints = st.integers(min_value=-(2**63), max_value=2**64 - 1)
scalars = st.none() | st.booleans() | ints | st.floats(allow_nan=False) | st.text()
documents = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


def _same(a: Any, b: Any) -> bool:
    # NaN is not equal to itself, and 0.0 == -0.0: compare spellings as well as values.
    return a == b and json.dumps(a) == json.dumps(b)


@given(documents)
def test_loads_reads_any_document_as_json_does(doc: Any) -> None:
    text = json.dumps(doc)
    assert _same(codec.loads(text.encode()), json.loads(text))
    assert _same(codec.loads(text), json.loads(text))


@pytest.mark.parametrize(
    "text",
    [
        b'{"n": 1e400}',  # too large for a float: json reads inf, orjson refuses
        b'{"x": NaN, "y": Infinity, "z": -Infinity}',  # not JSON, but json reads it
        b'{"name": "a\\ud800b"}',  # a lone surrogate escape (storable() replaces it later)
        '{"k": "v"}'.encode("utf-16"),  # json detects UTF-16; orjson wants UTF-8
    ],
)
def test_loads_falls_back_to_json_where_orjson_refuses(text: bytes) -> None:
    want = json.loads(text)
    got = codec.loads(text)
    assert json.dumps(got) == json.dumps(want)
    if isinstance(want, dict) and isinstance(want.get("x"), float):
        assert math.isnan(got["x"])


@pytest.mark.parametrize("text", [b"", b"{", b'{"a": 1,}', b"\xff\xfe\x00", b"nul"])
def test_loads_refuses_what_json_refuses_with_a_value_error(text: bytes) -> None:
    with pytest.raises(ValueError):
        json.loads(text)
    with pytest.raises(ValueError):
        codec.loads(text)


def test_a_document_nested_too_deeply_is_a_value_error_not_a_recursion_error() -> None:
    deep = b"[" * 5000 + b"]" * 5000  # past orjson's 1,024 levels and Python's recursion limit
    with pytest.raises(ValueError, match="nested too deeply"):
        codec.loads(deep)
    assert codec.loads(b"[" * 500 + b"]" * 500) is not None


@given(documents)
def test_canonical_is_json_dumps_sorted_and_compact_byte_for_byte(doc: Any) -> None:
    # Stored facts (a PVC's labels): another spelling would be a change of every PVC's labels
    # at the first relist after an upgrade.
    assert codec.canonical(doc) == json.dumps(doc, sort_keys=True, separators=(",", ":"))


@pytest.mark.parametrize(
    "labels",
    [
        {"app": "db", "tier": "b", "a.io/x": "1"},
        {"z": "ü", "a": "😀"},  # not ASCII: json escapes, orjson would not
        {"b": "x", "a": 1.5e16},  # a float: spelled differently
        {},
    ],
)
def test_canonical_labels(labels: dict[str, Any]) -> None:
    assert codec.canonical(labels) == json.dumps(labels, sort_keys=True, separators=(",", ":"))


def test_a_large_document_is_decoded_without_orjsons_peak_of_memory() -> None:
    # One pool's status of 10,000 images is 7 MB; orjson peaked at 104 MB decoding it.
    import tracemalloc

    doc = {
        "images": [{"name": f"csi-vol-{i:05d}", "description": "x" * 200} for i in range(20_000)]
    }
    data = json.dumps(doc).encode()
    assert len(data) > codec.ORJSON_UP_TO
    tracemalloc.start()
    try:
        assert codec.loads(data) == doc
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 10 * len(data)  # json: about 6x; orjson: about 17x


def test_an_integer_past_64_bits_is_read_as_a_float_the_one_difference() -> None:
    assert codec.loads(b'{"n": 18446744073709551615}') == {"n": 2**64 - 1}
    assert codec.loads(b'{"n": 18446744073709551616}') == {"n": float(2**64)}


@given(st.dictionaries(st.text(), st.none() | st.text()))
def test_facts_read_back_equal(facts: dict[str, str | None]) -> None:
    assert json.loads(codec.dumps_facts(facts)) == facts
