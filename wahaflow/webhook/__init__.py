"""Webhook receiver (ASGI) and its durable inbox."""
