"""Text from outside made storable: what every source applies to strings it hands on."""

from __future__ import annotations

import hashlib
import re

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
REPLACEMENT = "\ufffd"


def storable(text: str) -> str:
    """The same text with what no database can store replaced: PostgreSQL refuses NUL in text
    and JSON, and a lone surrogate cannot be encoded as UTF-8 for SQLite or PostgreSQL."""
    if text.isascii() and "\x00" not in text:
        return text  # the common case, at C speed
    return _UNSTORABLE.sub(REPLACEMENT, text)


def clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, kept distinct from other cuts by a hash."""
    if len(text) <= limit:
        return text
    digest = hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()[:10]
    return f"{text[: limit - 12]}~{digest}"
