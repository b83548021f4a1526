"""Calls as the exchange saw them: the tracker of AMI events and the gauges from the database."""
