"""Shared steps of the tests: exchanges of a given shape, phones, users, mail, browsers.

A test module (tests/**/test_*.py) imports its helpers from here (or from another
module that is not a test module), never from another test module:
tests/unit/test_layout.py checks.
"""
