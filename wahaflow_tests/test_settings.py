from wahaflow.settings import Settings


def test_defaults_follow_design(monkeypatch):
    for var in ["WAHA_URL", "WAHA_API_KEY", "WAHA_SESSIONS", "WAHAFLOW_SCHEMA", "WAHAFLOW_CHUNK_SIZE"]:
        monkeypatch.delenv(var, raising=False)
    s = Settings(_env_file=None)
    assert s.waha_url == "http://127.0.0.1:3000"
    assert s.waha_sessions == ["default"]
    assert s.db_schema == "wahaflow"
    assert s.session_gap_seconds == 1800
    assert s.chunk_size == 100


def test_api_key_never_in_repr(monkeypatch):
    monkeypatch.setenv("WAHA_API_KEY", "super-secret-key")
    monkeypatch.setenv("WAHA_SESSIONS", "a, b ,,c")
    s = Settings(_env_file=None)
    assert "super-secret-key" not in repr(s)
    assert s.api_key() == "super-secret-key"
    assert s.waha_sessions == ["a", "b", "c"]


def test_heap_fragmentation_limit_applies_or_is_a_no_op() -> None:
    from wahaflow.runtime import limit_heap_fragmentation

    limit_heap_fragmentation()  # glibc: mallopt accepted; elsewhere: nothing to do
    limit_heap_fragmentation()  # idempotent


def test_polars_allocator_returns_memory_promptly_unless_configured() -> None:
    """Set before Polars loads, in every process that imports wahaflow; an explicit setting wins."""
    import os
    import subprocess
    import sys

    probe = "import os, wahaflow, polars; print(os.environ.get('_RJEM_MALLOC_CONF'))"
    env = {k: v for k, v in os.environ.items() if k != "_RJEM_MALLOC_CONF"}
    default = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True)
    # Polars puts its own defaults first; jemalloc takes the last value of each option
    assert default.stdout.strip().endswith(",background_thread:true,dirty_decay_ms:100,muzzy_decay_ms:0")
    env["_RJEM_MALLOC_CONF"] = "dirty_decay_ms:0"
    explicit = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True)
    assert explicit.stdout.strip().endswith(",dirty_decay_ms:0")
