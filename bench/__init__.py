"""Benchmarks behind `edge-agent bench`: figures measured on the machine, not timed tests."""
