"""Benchmark suites: each runs one paper's protocol end to end and writes results.json + report.md."""
