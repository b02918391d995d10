"""Strict parsing of a JSON request body: anything the decoder cannot (or should not) take is a 400.

The standard decoder is the parser; these hooks only narrow what it accepts to RFC 8259's
interoperable subset, because each leniency is a way for a client and the service to read
one body differently, or a way to a 500:

- UTF-8 only (a BOM is ignored, as RFC 8259 allows); ``json.loads(bytes)`` would also accept
  UTF-16/32 and UTF-8-encoded surrogates;
- no lone surrogates (``"\\ud800"``): not Unicode text, and unencodable in any answer that echoes them;
- no duplicate keys: parsers disagree on which one wins;
- no ``NaN``/``Infinity`` and no number outside float range (``1e999999`` would become inf);
- integers of at most ``MAX_INT_DIGITS`` digits (Python refuses longer ones with a ValueError);
- nesting the decoder can recurse into (deeper raises RecursionError).
"""

from __future__ import annotations

import json
import math
from typing import Any

from app.errors import MalformedJson

MAX_INT_DIGITS = 4300  # Python's own int/str conversion limit (sys.int_info.default_max_str_digits)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:40]} is outside the range of a 64-bit float")
    return value


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise ValueError(f"an integer has {len(text.lstrip('-'))} digits; at most {MAX_INT_DIGITS} are accepted")
    return int(text)


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON (RFC 8259 has no NaN or Infinity)")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise ValueError(f"key {key!r} appears twice in one object")
        found[key] = value
    return found


def parse_json_body(data: bytes) -> Any:
    """The decoded body, or ``MalformedJson`` (400) saying what is wrong with it."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise MalformedJson(f"the JSON body is not valid UTF-8 (byte {exc.start}: {exc.reason})") from exc
    try:
        value = json.loads(text, parse_float=_finite_float, parse_int=_bounded_int,
                           parse_constant=_no_constants, object_pairs_hook=_unique_keys)
        # A lone surrogate survives decoding ("\ud800" is a valid escape) but is not text:
        # encoding the whole value once finds any, wherever it is nested.
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except RecursionError as exc:
        raise MalformedJson("the JSON body is nested too deeply to parse") from exc
    except UnicodeEncodeError as exc:
        raise MalformedJson("the JSON body holds a lone surrogate (\\ud800-\\udfff escape without its pair); "
                            "strings must be valid Unicode") from exc
    except json.JSONDecodeError as exc:
        raise MalformedJson(f"the JSON body does not parse: {exc}") from exc
    except ValueError as exc:  # raised by the hooks above, with their own message
        raise MalformedJson(f"the JSON body is refused: {exc}") from exc
    return value
