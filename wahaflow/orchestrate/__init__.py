"""The `wahaflow sync` and `wahaflow demo` commands: Dagster runs driven from the terminal."""
