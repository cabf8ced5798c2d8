"""The meters' byte protocols as pure functions: building requests, checking and parsing replies.

Used by the drivers (adapters/meters/drivers/), by the simulated meters of the tests and demo,
and by the profile loader for test vectors; nothing here does I/O. Each module names the
document its facts come from.
"""
