# syntax=docker/dockerfile:1
# The admission webhook image (`admission-cli serve`): `make image` builds it.
#
# Multi-stage: the builder installs the package and its dependencies into a virtualenv; the runtime stage
# copies only that virtualenv onto the same slim base, so no compiler, pip cache, source tree or curl ships.
# Every dependency has wheels for linux/amd64 and linux/arm64, so the builder needs no compiler either.

# A pinned Python base; PYTHON_DIGEST (sha256:...) pins it to one exact image as well.
ARG PYTHON_IMAGE=python:3.12.11-slim-bookworm
ARG PYTHON_DIGEST=

FROM ${PYTHON_IMAGE}${PYTHON_DIGEST:+@${PYTHON_DIGEST}} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# A virtualenv without pip: the builder's pip installs into it, so the runtime image has no installer.
RUN python -m venv --without-pip /opt/venv
# Only what the build needs (.dockerignore keeps the rest, and every secret, out of the context).
COPY pyproject.toml README.md ./
COPY admission/ ./admission/
RUN pip --python /opt/venv/bin/python install --no-cache-dir "./[server]" \
    && /opt/venv/bin/admission-cli --version

FROM ${PYTHON_IMAGE}${PYTHON_DIGEST:+@${PYTHON_DIGEST}} AS runtime
# OCI annotations: where the image came from and when (make image passes them).
ARG VERSION=0.1.0
ARG SOURCE=""
ARG REVISION=""
ARG CREATED=""
LABEL org.opencontainers.image.title="admission" \
      org.opencontainers.image.description="Validating admission webhook and CI linter for production container images" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
COPY --from=builder /opt/venv /opt/venv
# A numeric uid:gid that exists nowhere else: Kubernetes' runAsNonRoot can verify it without /etc/passwd.
USER 10001:10001
EXPOSE 8443
# Liveness from Python's standard library (the image has no curl): /healthz over HTTPS when the server has a
# certificate, else plain HTTP; the certificate is not verified, only that the process answers.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, ssl, sys, urllib.request as r\nport = os.environ.get('ADMISSION_PORT', '8443')\nctx = ssl._create_unverified_context()\nfor scheme in ('https', 'http'):\n    try:\n        r.urlopen(f'{scheme}://127.0.0.1:{port}/healthz', timeout=4, context=ctx)\n        sys.exit(0)\n    except Exception:\n        pass\nsys.exit(1)\n"]
ENTRYPOINT ["admission-cli"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8443"]
