"""Phone numbers shown where the full number is not needed: logs, old audit rows, lists.

`0612345678` -> `06******78`: enough to tell two callers apart in a log or a list, not
enough to call anyone. The one masking rule; the screens' role check is in cti.web.auth.
"""

from __future__ import annotations

import re

# A run of six or more digits (a phone number, possibly with a leading +) inside a text.
NUMBER_IN_TEXT = re.compile(r"\+?\d{6,}")


def mask_number(number: str) -> str:
    if len(number) <= 4:
        return "*" * len(number)
    return number[:2] + "*" * (len(number) - 4) + number[-2:]


def mask_numbers_in(text: str) -> str:
    """Every phone number inside a free text masked (log lines, audit details)."""
    return NUMBER_IN_TEXT.sub(lambda found: mask_number(found.group(0)), text)
