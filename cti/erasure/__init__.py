"""The right to erasure: every trace of a caller's number removed on request."""
