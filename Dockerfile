# syntax=docker/dockerfile:1.7
# secrets-operator image: a wheel built in one stage, installed into a slim Python in another.

ARG PYTHON_IMAGE=python:3.11.7-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
RUN pip install --no-cache-dir build==1.2.2
COPY pyproject.toml README.md ./
COPY src ./src
RUN python -m build --wheel --outdir /dist

FROM ${PYTHON_IMAGE}
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="secrets-operator" \
      org.opencontainers.image.description="Replicates blueprint Secrets into selected namespaces and keeps every copy in sync" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/secrets-operator/secrets-operator"
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
COPY --from=build /dist/ /tmp/dist/
# Install the wheel (and its pinned-by-range dependencies), then leave no pip cache or wheel behind.
RUN pip install --no-cache-dir /tmp/dist/secrets_operator-*.whl \
    && rm -rf /tmp/dist
# A numeric non-root user (the chart's runAsUser); the root filesystem can be read-only.
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["secrets-operator"]
CMD ["run"]
