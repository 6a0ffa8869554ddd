"""Shared fixtures. Each fixture family lives in its own plugin module under `plugins/`."""

pytest_plugins = [
    "wahaflow_tests.plugins.postgres",
    "wahaflow_tests.plugins.simulator",
    "wahaflow_tests.plugins.pipeline",
]
