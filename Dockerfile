# wahaflow's image: the `wahaflow` commands (webhook receiver, sync) and Dagster's webserver, daemon
# and code server, all from one install. docker-compose.yml runs each as its own service.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DAGSTER_HOME=/opt/dagster/home \
    WAHAFLOW_HOME=/var/lib/wahaflow

# A fixed, unprivileged user; nothing runs as root.
RUN groupadd --system --gid 10001 wahaflow \
    && useradd --system --uid 10001 --gid wahaflow --home-dir /home/wahaflow --create-home \
       --shell /usr/sbin/nologin wahaflow

# A regular (not editable) install into site-packages: the sources are not kept.
COPY pyproject.toml README.md /tmp/wahaflow-src/
COPY wahaflow /tmp/wahaflow-src/wahaflow
RUN pip install /tmp/wahaflow-src && rm -rf /tmp/wahaflow-src

# The production instance (Postgres storage from DAGSTER_PG_*) and the gRPC workspace.
COPY deploy/dagster.yaml ${DAGSTER_HOME}/dagster.yaml
COPY deploy/workspace.yaml /opt/dagster/workspace.yaml
# Writable: Dagster's local artifacts and compute logs (a volume shared by the Dagster services) and
# wahaflow's local state.
RUN mkdir -p ${DAGSTER_HOME}/storage ${WAHAFLOW_HOME} \
    && chown wahaflow:wahaflow ${DAGSTER_HOME} ${DAGSTER_HOME}/storage ${WAHAFLOW_HOME}

USER wahaflow
WORKDIR /opt/dagster
EXPOSE 3000 4000 8000
CMD ["wahaflow", "--help"]
