"""WAHA client: HTTP, paging, retries, normalization into Polars frames."""
