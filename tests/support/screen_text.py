"""What the screens' text may not contain: words for a script, not for a supervisor."""

from __future__ import annotations

import re

# An API path, an HTTP verb before a path, or a `bereik` command: words for a script, not
# for a supervisor, who is told where to click instead.
TECHNICAL = re.compile(r"/api/|\b(GET|POST|PUT|DELETE) /|\bbereik [a-z-]+\b")
