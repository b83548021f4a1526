"""Listening in on an agent's call: listen, whisper, barge (ChanSpy through the AMI client)."""
