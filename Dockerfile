# The admission webhook image (`admission-cli serve`): `make image` builds it with BuildKit (docs/image.md).
#
# Hermetic: the build context is not the checkout but a folder make image prepares (tools/image/build.py): the
# project's own wheel and the wheels requirements.lock pins, for each target platform, and requirements.txt with the
# hash of every one. They are installed with `--no-index --require-hashes`, and every RUN has no network: nothing is
# downloaded in a RUN.
# Multi-platform without emulation: the builder runs on the build platform and installs the target's wheels with
# `pip --platform`; the runtime stage runs nothing, so linux/arm64 builds on an amd64 machine.
# Reproducible: make image passes SOURCE_DATE_EPOCH (the commit's time) and the labels from the commit, and asks
# BuildKit to rewrite the layers' timestamps, so one commit gives the same platform images.

# A pinned Python base; PYTHON_DIGEST (sha256:...) pins it to one exact image as well. PYTHON_VERSION is the base's
# Python, which make image fetches the wheels for; the builder checks it against the base.
ARG PYTHON_IMAGE=python:3.12.11-slim-bookworm
ARG PYTHON_DIGEST=
ARG PYTHON_VERSION=3.12

FROM --platform=$BUILDPLATFORM ${PYTHON_IMAGE}${PYTHON_DIGEST:+@${PYTHON_DIGEST}} AS builder
ARG PYTHON_IMAGE
ARG PYTHON_VERSION
ARG TARGETOS
ARG TARGETARCH
# The commit's time: whatever honours it in this stage records no build time.
ARG SOURCE_DATE_EPOCH
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1
# The base must run the Python, a glibc and the architecture the wheels were fetched for; otherwise the build stops
# here and says why. Prints the wheels' platform tags for `pip --platform`.
RUN --network=none --mount=type=bind,target=/context \
    python3 /context/preflight.py --python "$PYTHON_VERSION" --base "$PYTHON_IMAGE" --arch "$TARGETARCH" \
      --wheels "/context/wheels/$TARGETOS-$TARGETARCH" > /tmp/platforms
# A virtualenv without pip: the builder's pip fills it, so the runtime image has no installer. `pip --target` is how
# pip installs another platform's wheels (their scripts land in site-packages/bin and move to the venv's bin), and
# `--python` makes the scripts start with the venv's interpreter. Bytecode is compiled afterwards, in place, keyed by
# the sources' hashes instead of their times, so the same files give the same .pyc files. Every file then takes the
# commit's time: BuildKit's rewrite only lowers newer times, and a step cached from an earlier build holds older ones
# (naming SOURCE_DATE_EPOCH here also makes a new commit time run this step again).
RUN --network=none python3 -m venv --without-pip /opt/venv
RUN --network=none --mount=type=bind,target=/context \
    site="$(/opt/venv/bin/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')" \
    && PIP_PLATFORM="$(cat /tmp/platforms)" python3 -m pip --python /opt/venv/bin/python install --no-index \
         --find-links "/context/wheels/$TARGETOS-$TARGETARCH" --require-hashes --only-binary=:all: --no-compile \
         --target "$site" --requirement /context/requirements.txt \
    && mv "$site"/bin/* /opt/venv/bin/ \
    && rmdir "$site/bin" \
    && PYTHONHASHSEED=0 /opt/venv/bin/python -m compileall -q --invalidation-mode unchecked-hash "$site" \
    && if [ -n "$SOURCE_DATE_EPOCH" ]; then find /opt/venv -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +; fi

FROM ${PYTHON_IMAGE}${PYTHON_DIGEST:+@${PYTHON_DIGEST}} AS runtime
ARG PYTHON_IMAGE
# OCI annotations from the commit (make image passes them): none says when or where the build ran.
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
