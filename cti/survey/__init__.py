"""The post-call survey (Klant In Focus): asked when the agent hangs up first."""
