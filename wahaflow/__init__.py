"""wahaflow: WhatsApp history from WAHA into Postgres, through Dagster."""

__version__ = "0.1.0"

from wahaflow.runtime import return_freed_memory_promptly

return_freed_memory_promptly()  # before any module of the package loads Polars
