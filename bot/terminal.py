"""Text for a terminal (pure): what a pull request wrote must show as written and never drive the terminal.

A file name, a review or a host's answer may hold an ANSI escape (``ESC [ 2 J`` clears the screen), a carriage
return that hides what came before it on the line, or a bidirectional override that reorders what follows it
(the "Trojan Source" trick). Before such text reaches stdout or stderr, those characters are written out as
visible escapes (``\\x1b``, ``\\r``, ``\\u202e``), so the reader sees them instead of their effect.
"""

from __future__ import annotations

import unicodedata

#: directional embeddings, overrides and isolates, and the invisible direction marks
_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _shown(char: str) -> str:
    if char.isascii():
        return repr(char)[1:-1]  # \x1b, \r, \t, \x7f
    return f"\\u{ord(char):04x}"


def printable(text: object, *, keep_newlines: bool = False) -> str:
    """``text`` with every control character (C0, DEL, C1), line/paragraph separator and bidi control written
    out as an escape; newlines (and tabs) are kept only with ``keep_newlines``."""
    text = str(text)
    if keep_newlines:
        text = text.replace("\r\n", "\n")
    out = []
    for char in text:
        hidden = unicodedata.category(char) in ("Cc", "Zl", "Zp") or char in _BIDI
        if hidden and not (keep_newlines and char in "\n\t"):
            out.append(_shown(char))
        else:
            out.append(char)
    return "".join(out)


def one_line(text: object) -> str:
    """``text`` as one terminal line: a newline inside it shows as ``\\n`` instead of starting a new line."""
    return printable(text, keep_newlines=False)
