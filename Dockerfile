# secrets-operator image: the locked dependencies and the wheel installed into a virtualenv in one
# stage, copied onto a slim Python without pip in another.
#
# Build with the version that git gives (tools/release computes every argument below):
#   docker build $(python -m tools.release build-args) -t <registry>/secrets-operator:<version> .

# A current, supported Python on current Debian, pinned by digest (python:3.13-slim-trixie; the
# tests build a stand-in from Debian trixie's own python3, the same minor).
ARG PYTHON_IMAGE=python:3.13-slim-trixie@sha256:9d2e5553305c7c7b0097999bb17187c69b921ccd6bc9d40e4bb5ebe652c00285

FROM ${PYTHON_IMAGE} AS build
# The build has no .git: the version is given, never guessed.
ARG VERSION
ARG SOURCE_DATE_EPOCH
RUN test -n "${VERSION}" && test -n "${SOURCE_DATE_EPOCH}" \
    || { echo "VERSION and SOURCE_DATE_EPOCH are required: see python -m tools.release build-args" >&2; exit 1; }
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH} \
    SETUPTOOLS_SCM_PRETEND_VERSION=${VERSION}
WORKDIR /src
# The runtime dependencies, exactly as locked (hashes required, wheels only), into a virtualenv
# without pip; the base's pip installs into it. SOURCE_DATE_EPOCH makes the .pyc files
# hash-checked, so two builds of one commit install the same bytes.
COPY requirements.lock ./
RUN python -m venv --without-pip /opt/secrets-operator \
    && python -m pip --python /opt/secrets-operator/bin/python install \
       --require-hashes --only-binary=:all: --no-deps -r requirements.lock
RUN python -m pip install build==1.2.2
COPY pyproject.toml README.md ./
COPY src ./src
RUN python -m build --wheel --outdir /dist \
    && python -m pip --python /opt/secrets-operator/bin/python install --no-deps /dist/secrets_operator-*.whl

FROM ${PYTHON_IMAGE}
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
