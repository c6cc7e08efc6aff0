# syntax=docker/dockerfile:1
# The podbw node agent. Build:  docker build --build-arg VERSION=0.1.0 --build-arg REVISION=$(git rev-parse HEAD) -t podbw:0.1.0 .
# Deploy it with the Helm chart in helm/podbw (docs/deploy.md): it runs the image as root with
# every capability dropped except NET_ADMIN and SYS_ADMIN, on a read-only root filesystem.

# Both stages use the same Python image: the venv built in the first is copied as it is.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ARG REVISION=unknown
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY requirements.lock pyproject.toml README.md ./
COPY agent/ agent/
# The dependencies exactly as requirements.lock pins them, each checked against its hashes
# (binary wheels only: no compiler), then podbw's own wheel, with the commit it was built
# from (podbw_build_info{revision}). A venv holds only those, installed with no index and
# without pip itself.
RUN printf '%s\n' "${REVISION}" > agent/revision.txt \
    && pip wheel --no-cache-dir --require-hashes --only-binary :all: --wheel-dir /wheels -r requirements.lock \
    && pip wheel --no-cache-dir --no-deps --wheel-dir /wheels . \
    && python -m venv --without-pip /opt/podbw \
    && pip --python /opt/podbw/bin/python install --no-cache-dir --no-index --find-links /wheels \
       --require-hashes -r requirements.lock \
    && pip --python /opt/podbw/bin/python install --no-cache-dir --no-index --no-deps /wheels/podbw-*.whl

FROM ${PYTHON_IMAGE}
ARG PYTHON_IMAGE
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="podbw" \
      org.opencontainers.image.description="Per-pod bandwidth limits (TBF) and per-pod network metrics for CRI-O nodes" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}"
COPY --from=build /opt/podbw /opt/podbw
# Bytecode was compiled at install time; the root filesystem is read-only at run time.
ENV PATH=/opt/podbw/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# No USER: podbw needs root (the CRI socket and netns pins are root's, and Kubernetes grants
# the capabilities it adds to root only); the chart drops all other capabilities.
# /metrics, /healthz and /readyz (--web.listen-address).
EXPOSE 9637
ENTRYPOINT ["podbw", "run"]
