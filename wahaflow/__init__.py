"""wahaflow: WhatsApp history from WAHA into Postgres, through Dagster."""

__version__ = "0.1.0"
