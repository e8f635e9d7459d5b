"""Helpers the tests share (tests/ is on sys.path, so they import as ``lib.<module>``)."""
