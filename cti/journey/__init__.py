"""The journey of a call: from the first ring to the last callback."""
