"""Paths a diff may name but no file system can hold: checked once, shown safely (pure, no I/O)."""

from __future__ import annotations

#: what file systems (and so git, ruff and the hosts' file APIs) can hold: 255 bytes a name, 4,096 a path
MAX_NAME_BYTES = 255
MAX_PATH_BYTES = 4096


def path_problem(path: str) -> str | None:
    """Why no file can have this path (a NUL byte, a name over 255 bytes, a path over 4,096), or None."""
    if "\0" in path:
        return "the path contains a NUL byte, which no file name can hold"
    size = len(path.encode("utf-8", "surrogatepass"))
    if size > MAX_PATH_BYTES:
        return f"the path is {size:,} bytes long, over the {MAX_PATH_BYTES:,} a file system allows"
    longest = max((len(part.encode("utf-8", "surrogatepass")) for part in path.split("/")), default=0)
    if longest > MAX_NAME_BYTES:
        return f"a part of the path is {longest:,} bytes long, over the {MAX_NAME_BYTES} a file name may have"
    return None


def display_path(path: str, limit: int = 200) -> str:
    """``path`` as it can be shown in one line: control characters escaped, the middle of a long one cut."""
    shown = "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in path)
    if len(shown) <= limit:
        return shown
    return f"{shown[: limit // 2]}…{shown[-(limit // 2):]}"
