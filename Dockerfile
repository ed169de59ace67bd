# secrets-operator image: the locked dependencies and the wheel installed into a virtualenv in one
# stage, copied onto a slim Python without pip in another.
#
# Build with the version that git gives (tools/release computes every argument below):
#   docker build $(python -m tools.release build-args) -t <registry>/secrets-operator:<version> .

# A current, supported Python on current Debian, pinned by digest (python:3.13-slim-trixie; the
# tests build a stand-in from Debian trixie's own python3, the same minor).
ARG PYTHON_IMAGE=python:3.13-slim-trixie@sha256:9d2e5553305c7c7b0097999bb17187c69b921ccd6bc9d40e4bb5ebe652c00285

# The build stage runs on the machine's own platform, so an arm64 image is built without emulating
# pip: the target's wheels are chosen by platform tag and only unpacked. BuildKit sets
# BUILDPLATFORM, TARGETPLATFORM and TARGETARCH; the classic builder is given them (`build-args`
# below prints this machine's) and no --platform flag. BUILD_PYTHON_IMAGE: the same Python for
# the build stage, where PYTHON_IMAGE is one platform's image rather than an index.
ARG BUILD_PYTHON_IMAGE=${PYTHON_IMAGE}
ARG BUILDPLATFORM
ARG TARGETPLATFORM
FROM --platform=${BUILDPLATFORM} ${BUILD_PYTHON_IMAGE} AS build
# The build has no .git: the version is given, never guessed.
ARG VERSION
ARG SOURCE_DATE_EPOCH
ARG TARGETARCH
RUN test -n "${VERSION}" && test -n "${SOURCE_DATE_EPOCH}" \
    || { echo "VERSION and SOURCE_DATE_EPOCH are required: see python -m tools.release build-args" >&2; exit 1; }
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH} \
    SETUPTOOLS_SCM_PRETEND_VERSION=${VERSION}
WORKDIR /src
# The runtime dependencies, exactly as locked (hashes required, wheels only, for the target's
# machine and this Python), into a virtualenv without pip. The final stage's Python is this one
# on the target platform, at the same path, so the venv's links and the .pyc files hold there
# too. pip --target unpacks in a temporary directory whose name would end up in every .pyc, so
# they are compiled in place afterwards, hash-checked: two builds of one commit install the same
# bytes (an end-to-end test compares them).
COPY requirements.lock ./
RUN set -eu; \
    arch="${TARGETARCH:-$(dpkg --print-architecture)}"; \
    case "$arch" in amd64) machine=x86_64 ;; arm64) machine=aarch64 ;; \
      *) echo "unsupported TARGETARCH $arch (amd64 or arm64)" >&2; exit 1 ;; esac; \
    python -m venv --without-pip /opt/secrets-operator; \
    site="$(/opt/secrets-operator/bin/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')"; \
    version="$(python -c 'import sys; print("%d.%d" % sys.version_info[:2])')"; \
    abi="$(python -c 'import sys; print("cp%d%d" % sys.version_info[:2])')"; \
    python -m pip install --require-hashes --only-binary=:all: --no-deps --no-compile --target "$site" \
      --implementation cp --python-version "$version" --abi "$abi" \
      --platform "manylinux_2_28_$machine" --platform "manylinux_2_17_$machine" \
      --platform "manylinux2014_$machine" -r requirements.lock; \
    rm -rf "${site:?}/bin"; \
    python -m compileall -q --invalidation-mode checked-hash "$site"
RUN python -m pip install build==1.2.2
COPY pyproject.toml README.md ./
COPY src ./src
# The package itself is compiled the same way as its dependencies (pip would stamp its .pyc files
# with the install's clock).
RUN python -m build --wheel --outdir /dist \
    && python -m pip --python /opt/secrets-operator/bin/python install --no-deps --no-compile \
      /dist/secrets_operator-*.whl \
    && /opt/secrets-operator/bin/python -m compileall -q --invalidation-mode checked-hash \
      "$(/opt/secrets-operator/bin/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')/secrets_operator"

# Redundant for BuildKit, needed by the classic builder, which is given no --platform.
# hadolint ignore=DL3065
FROM --platform=${TARGETPLATFORM} ${PYTHON_IMAGE}
ARG VERSION
ARG REVISION=unknown
ARG CREATED=1970-01-01T00:00:00Z
LABEL org.opencontainers.image.title="secrets-operator" \
      org.opencontainers.image.description="Copies blueprint Secrets and ConfigMaps into selected namespaces and keeps every copy in sync" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/secrets-operator/secrets-operator"
# No pip, setuptools or wheels to install them from: nothing in the image can install code.
RUN python -m pip uninstall --yes --quiet pip setuptools wheel \
    && rm -rf "$(python -c 'import ensurepip, os; print(os.path.dirname(ensurepip.__file__))')" \
       /usr/share/python-wheels /root/.cache
COPY --from=build /opt/secrets-operator /opt/secrets-operator
ENV PATH=/opt/secrets-operator/bin:${PATH} \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# A numeric non-root user (the chart's runAsUser); the root filesystem can be read-only.
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["secrets-operator"]
CMD ["run"]
