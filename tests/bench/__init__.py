"""The load harness behind `make bench` (see tests/bench/run.py)."""
