"""Benchmark suites (the application layer): each runs one paper's protocol end to end and writes
results.json + report.md. One package per system: ``protocol`` (world, split, features, groups),
``plan`` (the models, as data), ``report`` (tables and figures); the seed loop, ranking fits and
output are shared in :mod:`.common`."""

SUITES = ("base", "poso", "mail", "dauc", "uie")
