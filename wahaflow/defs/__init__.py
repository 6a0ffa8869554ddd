"""Dagster definitions: partitions, assets, checks, sensors, schedules."""
