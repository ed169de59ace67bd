"""Configuration from environment variables (prefix ``SECRETS_OPERATOR_``), validated at start.

Every variable is parsed here, once: lists of globs, the blueprints (read by
:mod:`~secrets_operator.blueprint_config`), the label selector and the leader-election timings.
A bad value is a :class:`ConfigError` whose message names the variable and what is wrong (for a
blueprint, also the item's number and the item, cut short), and the command line turns it into
exit status 2 with that one line. Nothing here reads Secrets or talks to the cluster.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from secrets_operator.blueprint_config import parse_blueprints, split_list
from secrets_operator.discovery import SERVICE_ACCOUNT_NAMESPACE_FILE, own_namespace, process_identity
from secrets_operator.model import BlueprintRef
from secrets_operator.names import check_namespace_name, check_object_name
from secrets_operator.planning import BlueprintSpec, Policy
from secrets_operator.selectors import LabelSelector, parse_label_selector

ENV_PREFIX = "SECRETS_OPERATOR_"


class ConfigError(ValueError):
    """A configuration value is wrong; ``str()`` is one line naming the variable."""


Globs = Annotated[tuple[str, ...], NoDecode]


class Settings(BaseSettings):
    """The operator's settings. Field descriptions feed ``--help`` and docs/configuration.md."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, case_sensitive=False, extra="ignore", frozen=True, allow_inf_nan=False
    )

    blueprints: Annotated[tuple[BlueprintSpec, ...], NoDecode] = Field(
        description="The blueprints (required): comma-separated `namespace/name` of Secrets, or a JSON list "
        "whose items are such strings or objects with per-blueprint options: `source` (`namespace/name`), "
        "`kind` (`Secret` or `ConfigMap`), `targetName`, `namespaceSelector`, `includeNamespaces`, "
        "`excludeNamespaces`, `previousTargetNames` (see docs/configuration.md).",
        json_schema_extra={"example": "auth/htpasswd,registry/pull-secret"},
    )
    namespace_selector: Annotated[LabelSelector, NoDecode] = Field(
        default_factory=LabelSelector,
        description="Label selector (kubectl syntax) for target namespaces; empty selects all. "
        "A blueprint's own `namespaceSelector` replaces it.",
        json_schema_extra={"example": "env in (dev,prod),!legacy", "default_text": "(empty: all)"},
    )
    include_namespaces: Globs = Field(
        default=("*",),
        description="Comma-separated globs matched against the whole namespace name; only these are targets. "
        "A blueprint's own `includeNamespaces` replaces it.",
        json_schema_extra={"example": "team-*,shared"},
    )
    exclude_namespaces: Globs = Field(
        default=("kube-system", "kube-public", "kube-node-lease"),
        description="Comma-separated globs of namespaces that are never targets. "
        "A blueprint's own `excludeNamespaces` replaces it.",
        json_schema_extra={"example": "kube-*,openshift-*"},
    )
    conflict_policy: Literal["skip", "adopt"] = Field(
        default="skip",
        description="`skip`: a Secret or ConfigMap with a copy's name not created by the operator is left "
        "alone and reported; "
        "`adopt`: it is overwritten in place and becomes managed (never deleted: one that could only be "
        "replaced, of another type or immutable, stays a reported conflict).",
        json_schema_extra={"example": "adopt"},
    )
    prune: bool = Field(
        default=False,
        description="Delete copies whose blueprint was deleted or whose namespace no longer matches, and "
        "copies left under a blueprint's `previousTargetNames`. Never deletes an object the operator did "
        "not create.",
        json_schema_extra={"example": "true"},
    )
    prune_grace_seconds: float = Field(
        default=60.0,
        ge=0,
        le=7 * 86400,
        description="With PRUNE, how long a blueprint must stay missing before its copies are deleted; "
        "a blueprint deleted and created again within it (`kubectl replace --force`, Argo CD "
        "`Replace=true`, rotating an immutable blueprint) keeps its copies.",
        json_schema_extra={"example": "300"},
    )
    copy_metadata: Globs = Field(
        default=(),
        description="Comma-separated globs over label and annotation keys of the blueprint to copy "
        "(ownership and tracking keys are never copied).",
        json_schema_extra={"example": "team,example.com/*", "default_text": "(empty: none)"},
    )
    leader_election: bool = Field(
        default=True,
        description="Elect one writer through a Lease; `false` only for a single replica.",
        json_schema_extra={"example": "false"},
    )
    lease_name: str = Field(
        default="secrets-operator",
        description="Name of the coordination.k8s.io/v1 Lease.",
        json_schema_extra={"example": "secrets-operator"},
    )
    lease_namespace: str = Field(
        default="",
        description="Namespace of the Lease; default POD_NAMESPACE, else the in-cluster namespace file, "
        "else `default`.",
        json_schema_extra={"example": "secrets-operator", "default_text": "POD_NAMESPACE"},
    )
    lease_duration_seconds: float = Field(
        default=15.0,
        gt=0,
        le=86400,
        description="How long a Lease stays valid without renewal; must exceed RENEW_DEADLINE_SECONDS.",
        json_schema_extra={"example": "15"},
    )
    renew_deadline_seconds: float = Field(
        default=10.0,
        gt=0,
        description="The leader stops writing when it has not renewed for this long; "
        "must exceed 1.2 x RETRY_PERIOD_SECONDS.",
        json_schema_extra={"example": "10"},
    )
    retry_period_seconds: float = Field(
        default=2.0,
        gt=0,
        description="Interval between attempts to acquire or renew the Lease.",
        json_schema_extra={"example": "2"},
    )
    identity: str = Field(
        default="",
        description="Holder identity written into the Lease; must be unique per process. Default: "
        "POD_NAME (else `<hostname>-<pid>`) plus `_` and 8 random hex digits drawn at start, so a "
        "restarted container never takes over its predecessor's claim.",
        json_schema_extra={"example": "secrets-operator-7d9f-abcde", "default_text": "POD_NAME_<random>"},
    )
    http_port: int = Field(
        default=8080,
        ge=0,
        le=65535,
        description="Port of `/healthz`, `/readyz` and `/metrics` (0 picks a free port).",
        json_schema_extra={"example": "8080"},
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO",
        description="`DEBUG`, `INFO`, `WARNING` or `ERROR`.",
        json_schema_extra={"example": "DEBUG"},
    )
    log_format: Literal["json", "text"] = Field(
        default="json",
        description="`json` (one object per line) or `text`.",
        json_schema_extra={"example": "text"},
    )
    resync_seconds: float = Field(
        default=600.0,
        gt=0,
        le=7 * 86400,
        description="Period of the full reconcile from the caches (writes only what differs).",
        json_schema_extra={"example": "300"},
    )
    max_concurrent_writes: int = Field(
        default=16,
        ge=1,
        le=1000,
        description="Upper bound on writes in flight at once.",
        json_schema_extra={"example": "32"},
    )
    api_qps: float = Field(
        default=0.0,
        ge=0,
        description="Optional client-side cap on API requests per second (every request, one per watch "
        "opened). 0: no client-side limit; writes are bounded by MAX_CONCURRENT_WRITES and the API "
        "server's Priority and Fairness, whose 429 Retry-After the operator honours. Set it to be "
        "gentler than the server requires.",
        json_schema_extra={"example": "50", "default_text": "0 (no client-side limit)"},
    )
    api_burst: int = Field(
        default=100,
        ge=1,
        description="With API_QPS set, requests allowed in a burst above it.",
        json_schema_extra={"example": "200"},
    )

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("conflict_policy", "log_format", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("blueprints", mode="before")
    @classmethod
    def _parse_blueprints(cls, value: Any) -> Any:
        if isinstance(value, str | list | tuple):
            return parse_blueprints(value)
        return value

    @field_validator("namespace_selector", mode="before")
    @classmethod
    def _parse_selector(cls, value: Any) -> Any:
        if isinstance(value, str):
            return parse_label_selector(value)
        return value

    @field_validator("include_namespaces", "exclude_namespaces", "copy_metadata", mode="before")
    @classmethod
    def _parse_globs(cls, value: Any) -> Any:
        return split_list(value)

    @field_validator("include_namespaces")
    @classmethod
    def _check_include(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("is empty, so no namespace would ever be a target; use * for all")
        return value

    @field_validator("lease_name")
    @classmethod
    def _check_lease_name(cls, value: str) -> str:
        check_object_name(value, "Lease")
        return value

    @field_validator("lease_namespace")
    @classmethod
    def _check_lease_namespace(cls, value: str) -> str:
        if value:
            check_namespace_name(value, "namespace")
        return value

    @model_validator(mode="after")
    def _check_timings(self) -> Settings:
        if not self.lease_duration_seconds > self.renew_deadline_seconds:
            raise ValueError(
                f"{ENV_PREFIX}LEASE_DURATION_SECONDS must be greater than {ENV_PREFIX}RENEW_DEADLINE_SECONDS "
                f"({self.lease_duration_seconds:g} <= {self.renew_deadline_seconds:g})"
            )
        if not self.renew_deadline_seconds > 1.2 * self.retry_period_seconds:
            raise ValueError(
                f"{ENV_PREFIX}RENEW_DEADLINE_SECONDS must be greater than "
                f"1.2 x {ENV_PREFIX}RETRY_PERIOD_SECONDS "
                f"({self.renew_deadline_seconds:g} <= 1.2 x {self.retry_period_seconds:g})"
            )
        return self

    # -- derived values

    @property
    def refs(self) -> tuple[BlueprintRef, ...]:
        """The blueprints' references, in configured order."""
        return tuple(spec.ref for spec in self.blueprints)

    @property
    def policy(self) -> Policy:
        return Policy(
            selector=self.namespace_selector,
            include=self.include_namespaces,
            exclude=self.exclude_namespaces,
            conflict_policy=self.conflict_policy,
            prune=self.prune,
            prune_grace_seconds=self.prune_grace_seconds,
            copy_metadata=self.copy_metadata,
            blueprints=self.blueprints,
        )

    def resolved_lease_namespace(self, *, namespace_file: Path = SERVICE_ACCOUNT_NAMESPACE_FILE) -> str:
        """LEASE_NAMESPACE, else the namespace this process runs in."""
        return self.lease_namespace or own_namespace(namespace_file=namespace_file)

    def resolved_identity(self) -> str:
        """This process's identity in the Lease, the same for every call within one process.

        IDENTITY, else the name :func:`~secrets_operator.discovery.process_identity` draws for it.
        """
        return self.identity or process_identity()


_SHOW_INPUT = {
    "greater_than",
    "greater_than_equal",
    "less_than_equal",
    "less_than",
    "float_parsing",
    "int_parsing",
    "bool_parsing",
    "finite_number",
}


def load() -> Settings:
    """Read and validate the settings; raise ConfigError with a one-line message naming the variable."""
    try:
        return Settings()  # type: ignore[call-arg]  # the required fields come from the environment
    except ValidationError as exc:
        error = exc.errors()[0]
        message = str(error["msg"]).removeprefix("Value error, ")
        if error["type"] == "missing":
            message = "is required"
        elif error["type"] == "literal_error":
            message = f"must be {error['ctx']['expected']}, got {error['input']!r}"
        elif error["type"] in _SHOW_INPUT:
            message = f"{message}, got {error['input']!r}"
        if error["loc"]:
            message = f"{ENV_PREFIX}{str(error['loc'][0]).upper()}: {message}"
        raise ConfigError(message) from None
