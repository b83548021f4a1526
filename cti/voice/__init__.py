"""The caller's question in their own words: recordings that belong to a hopper."""
