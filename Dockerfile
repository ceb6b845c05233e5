# auditd image: the daemon, `rbd` from Debian's ceph-common for the direct probe transport,
# non-root. Build: docker build -t auditd:0.1.0 .
# The same install steps run in CI in a fresh venv (.ci/run): a locked, hash-checked install of
# the dependencies, then the wheel without its dependencies.

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
COPY requirements.lock ./
# Locked and hash-checked: the same bytes on every build.
RUN python -m venv /opt/auditd \
 && /opt/auditd/bin/pip install --no-cache-dir --require-hashes -r requirements.lock
COPY pyproject.toml README.md LICENSE ./
COPY auditd ./auditd
COPY migrations ./migrations
# The wheel carries the migrations and the simulator (the demo runs from the package); the
# test suite stays out.
RUN /opt/auditd/bin/pip install --no-cache-dir --no-deps .

FROM ${PYTHON_IMAGE}
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="auditd" \
      org.opencontainers.image.description="Audit daemon for Kubernetes DR pairs replicating volumes with Ceph RBD mirroring" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/auditd/auditd" \
      org.opencontainers.image.documentation="https://github.com/auditd/auditd/blob/main/docs/operations.md"
# rbd for the direct transport: Debian bookworm's Ceph 16.2 (Pacific) client, the one the lab tests.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ceph-common=16.2.* \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --home-dir /var/lib/auditd --create-home auditd
COPY --from=build /opt/auditd /opt/auditd
ENV PATH=/opt/auditd/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    AUDITD_CONFIG=/etc/auditd/config/auditd.toml
USER 10001:10001
WORKDIR /var/lib/auditd
# Fails the build if rbd cannot run as the non-root user.
RUN rbd --version && auditd --version
EXPOSE 9464
ENTRYPOINT ["auditd"]
CMD ["run"]
