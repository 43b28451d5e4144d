# iotmon as a container image: `docker build -t iotmon .`, then e.g.
#   docker run --rm iotmon consume --help
#   docker run --rm iotmon demo --duration 30 --no-live
# compose.yaml uses it for the simulator and the consumer; every option of `iotmon consume`
# can be set through its IOTMON_<OPTION> environment variable (see README, "Configuration").
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Only what the package build needs, so edits to tests or docs do not invalidate this layer.
WORKDIR /src
COPY pyproject.toml README.md ./
COPY iotmon ./iotmon
RUN pip install . && rm -rf /src

# An unprivileged user owns the state directory (checkpoints, outbox, dead letters). A named
# volume mounted there starts out with this ownership.
RUN useradd --system --uid 10001 --user-group --create-home --home-dir /home/iotmon iotmon \
    && mkdir -p /var/lib/iotmon \
    && chown iotmon:iotmon /var/lib/iotmon
ENV IOTMON_STATE_DIR=/var/lib/iotmon
VOLUME ["/var/lib/iotmon"]

USER iotmon
WORKDIR /home/iotmon

# Prometheus metrics, when the consumer runs with --metrics-port 9464 --metrics-host 0.0.0.0.
EXPOSE 9464

ENTRYPOINT ["iotmon"]
CMD ["--help"]
