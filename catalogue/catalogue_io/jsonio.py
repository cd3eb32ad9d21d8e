"""Reading and writing catalogue JSON without ever going through float.

``loads`` turns every JSON number with a fraction or exponent into ``Decimal`` (integers stay
``int``) and refuses ``NaN``/``Infinity``. ``dumps`` writes ``Decimal`` as a plain JSON number
in its shortest exact form (``0.440000`` → ``0.44``, ``1000000.0000`` → ``1000000``), keeps key
order, and is deterministic, so an export can be compared byte for byte with another.
No Django imports here: the demo generator uses this module standalone.
"""

import json
from decimal import Decimal
from typing import Any

INDENT = "  "
# Lists of scalars are written on one line when that line stays this short.
_INLINE_LIMIT = 100


class JsonError(ValueError):
    """The text is not a JSON document we accept."""


def _refuse_constant(name: str):
    raise JsonError(f"{name} is not a number JSON allows")


def loads(text: str | bytes) -> Any:
    try:
        return json.loads(text, parse_float=Decimal, parse_constant=_refuse_constant)
    except JsonError:
        raise
    except UnicodeDecodeError as exc:
        raise JsonError(f"not UTF-8 text: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise JsonError(f"not valid JSON: {exc}") from exc
    except RecursionError as exc:
        raise JsonError("not valid JSON: nested too deeply") from exc


def decimal_text(value: Decimal) -> str:
    """The shortest exact decimal notation, never an exponent."""
    if not value.is_finite():
        raise ValueError(f"{value} cannot be written as JSON")
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "0") else text


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, Decimal):
        return decimal_text(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, float):
        raise TypeError("catalogue JSON never carries floats; use Decimal")
    raise TypeError(f"cannot write {type(value).__name__} as catalogue JSON")


def _write(value: Any, depth: int, out: list[str]) -> None:
    pad = INDENT * (depth + 1)
    if isinstance(value, dict):
        if not value:
            out.append("{}")
            return
        out.append("{\n")
        for i, (key, item) in enumerate(value.items()):
            if not isinstance(key, str):
                raise TypeError("object keys must be strings")
            out.append(f"{pad}{json.dumps(key, ensure_ascii=False)}: ")
            _write(item, depth + 1, out)
            out.append(",\n" if i < len(value) - 1 else "\n")
        out.append(INDENT * depth + "}")
    elif isinstance(value, (list, tuple)):
        if not value:
            out.append("[]")
            return
        if not any(isinstance(item, (dict, list, tuple)) for item in value):
            inline = "[" + ", ".join(_scalar(item) for item in value) + "]"
            if len(inline) + len(pad) <= _INLINE_LIMIT:
                out.append(inline)
                return
        out.append("[\n")
        for i, item in enumerate(value):
            out.append(pad)
            _write(item, depth + 1, out)
            out.append(",\n" if i < len(value) - 1 else "\n")
        out.append(INDENT * depth + "]")
    else:
        out.append(_scalar(value))


def dumps(value: Any) -> str:
    """Indented JSON text ending with a newline."""
    out: list[str] = []
    _write(value, 0, out)
    out.append("\n")
    return "".join(out)
