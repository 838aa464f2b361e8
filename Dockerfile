# streamproxy container image.
#
# Two stages on the same base: the builder makes a self-contained virtualenv in /opt/streamproxy,
# the runtime stage copies only that venv. Any base that has `python3` (3.11+) on PATH with the
# `venv` module works: the default is the official slim image; offline, scripts/pod-base-image.sh
# makes an equivalent from Debian's packages (docs/image.md).
#
# Build (BuildKit; the CA secret is only needed behind a TLS-inspecting proxy and never lands in a layer):
#   docker build -t streamproxy .
#   docker build --secret id=ca,src=/etc/ssl/certs/ca-certificates.crt -t streamproxy .
#
# The runtime is non-root (10001:10001), needs no capability and writes nothing to its root
# filesystem: bytecode is compiled here and PYTHONDONTWRITEBYTECODE stops any attempt at run time.

ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS builder

ENV PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

RUN python3 -m venv /opt/streamproxy

WORKDIR /src

# Dependencies first, from the runtime lock alone (requirements/runtime.txt, written by
# scripts/lock.sh), so that editing the code does not reinstall them: every artifact's sha256 is
# checked, and nothing outside the lock is installed. pip's cache survives between builds in a
# cache mount: https://docs.docker.com/build/cache/optimize/#use-cache-mounts
COPY requirements/runtime.txt requirements/build.txt ./requirements/
RUN --mount=type=cache,target=/root/.cache/pip \
    --mount=type=secret,id=ca \
    if [ -s /run/secrets/ca ]; then export PIP_CERT=/run/secrets/ca; fi \
    && /opt/streamproxy/bin/pip install --require-hashes --no-deps -r requirements/runtime.txt \
    && python3 -m venv /opt/build \
    && /opt/build/bin/pip install --require-hashes --no-deps -r requirements/build.txt

# Then the package itself, built by the locked hatchling (a build venv that stays in this stage)
# and installed with --no-deps (hatchling insists on the README that pyproject.toml names, which
# the image itself does not need).
COPY pyproject.toml README.md* LICENSE* ./
COPY sidecar ./sidecar
RUN --mount=type=cache,target=/root/.cache/pip \
    { [ -f README.md ] || echo '# streamproxy' > README.md; } \
    && /opt/build/bin/pip wheel --no-deps --no-build-isolation --wheel-dir /tmp/wheel . \
    && /opt/streamproxy/bin/pip install --no-deps --no-index /tmp/wheel/streamproxy-*.whl \
    && /opt/streamproxy/bin/pip check \
    && /opt/streamproxy/bin/pip uninstall -y pip setuptools \
    && /opt/streamproxy/bin/python -c 'import compileall; compileall.compile_dir("/opt/streamproxy", quiet=2, workers=0)' \
    && /opt/streamproxy/bin/streamproxy --help > /dev/null

FROM ${BASE_IMAGE}

LABEL org.opencontainers.image.title="streamproxy" \
      org.opencontainers.image.description="Streaming HTTP sidecar proxy with a shared Redis request counter" \
      org.opencontainers.image.licenses="Apache-2.0"

ENV PATH=/opt/streamproxy/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

# A named user for tools that look the UID up; the numeric USER below is what runAsNonRoot checks.
# Some bases ship the standard library without bytecode: compile it now, since a read-only root
# cannot cache it later (a no-op where it is already compiled).
RUN echo 'streamproxy:x:10001:10001:streamproxy:/nonexistent:/usr/sbin/nologin' >> /etc/passwd \
    && echo 'streamproxy:x:10001:' >> /etc/group \
    && python3 -c 'import compileall, sysconfig; compileall.compile_dir(sysconfig.get_path("stdlib"), quiet=2, workers=0)'

COPY --from=builder /opt/streamproxy /opt/streamproxy

USER 10001:10001
EXPOSE 15000 15020

ENTRYPOINT ["streamproxy"]
CMD ["run"]
