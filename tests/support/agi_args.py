"""A FastAGI command line split as Asterisk splits it, to check what our handlers send."""

from __future__ import annotations


def asterisk_args(line: str) -> list[str]:
    """Split a command line as Asterisk's res_agi parse_args does: quotes group, \\ escapes."""
    args: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    in_arg = False
    for char in line:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            escaped = in_arg = True
        elif char == '"':
            quoted = not quoted
            in_arg = True
        elif char in " \t" and not quoted:
            if in_arg:
                args.append("".join(current))
                current, in_arg = [], False
        else:
            current.append(char)
            in_arg = True
    if in_arg:
        args.append("".join(current))
    return args
