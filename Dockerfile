# The Higress standalone initializer: a one-shot container that prepares certificates,
# kubeconfigs, tokens and the base config, then exits.
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
# uv syncs the hash-checked lock; pinned as in the Makefile and install.sh; only in this stage
ARG UV_VERSION=0.13.9
WORKDIR /src
COPY initContainer/ ./initContainer/
# The same script the tests run (tests/test_ship.py), so image and tests install alike.
# (bytecode compiled at install time is kept: every start of this one-shot container saves its compile)
RUN pip install --no-cache-dir "uv==${UV_VERSION}" \
    && UV_NO_CACHE=1 sh initContainer/install.sh /opt/higress-init

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="higress-init" \
      org.opencontainers.image.description="One-shot initializer for the Higress standalone deployment" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/higress-group/higress-standalone"
COPY --from=build /opt/higress-init /opt/higress-init
# Non-root by default; setting VOLUMES_UID/VOLUMES_GID (chown) needs the container run as root.
RUN useradd --system --uid 65532 --user-group --home-dir /nonexistent --shell /usr/sbin/nologin higress-init \
    && mkdir -p /mnt/volumes \
    && chown higress-init:higress-init /mnt/volumes
ENV PATH=/opt/higress-init/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    VOLUMES_ROOT=/mnt/volumes
VOLUME /mnt/volumes
USER 65532:65532
ENTRYPOINT ["higress-init"]
CMD ["run"]
