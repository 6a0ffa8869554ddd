"""wahaflow's benchmark harness: `make bench` / `python -m benchmarks [--only NAME ...] [--quick]`.

See benchmarks/README.md for the sections, what each measures and how to read the results.
"""
