"""Every Prometheus metric the operator exports, defined in one place.

Labels carry only names the operator is configured with or derives (blueprint ``namespace/name``
and kind, states, rules, verbs, status codes): never Secret data, and never per-namespace labels, whose
cardinality would grow with the cluster.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

LEADER = Gauge(
    "secrets_operator_leader",
    "1 while this replica leads (from acquiring the Lease until it is lost, released or the replica "
    "stops; always 1 without leader election), else 0. A leader whose renewals fail stays 1 until "
    "RenewDeadline has passed, though it stops writing when its last renewal is that old.",
    registry=REGISTRY,
)
RECONCILES = Counter(
    "secrets_operator_reconciles_total",
    "Namespace reconciles by result: success (the backoff resets), error (retried with backoff), "
    "throttled (a write got 429; retried after Retry-After, the backoff kept).",
    ["result"],
    registry=REGISTRY,
)
WRITES = Counter(
    "secrets_operator_writes_total",
    "Writes to copies by kind (Secret, ConfigMap), action (create, update, replace, delete) and result "
    "(success; conflict: 409, a precondition failed or the object exists; not_found: 404, the copy or "
    "namespace is gone; throttled: 429; error; skipped: the namespace is terminating).",
    ["kind", "action", "result"],
    registry=REGISTRY,
)
COPIES = Gauge(
    "secrets_operator_copies",
    "Blueprint x namespace pairs by blueprint (namespace/name), kind and state (in_sync, missing, "
    "drifted, conflict, excluded, stale, ...); a copy left under an earlier target name counts as stale.",
    ["blueprint", "kind", "state"],
    registry=REGISTRY,
)
EXCLUDED = Gauge(
    "secrets_operator_excluded_namespaces",
    "Namespaces that are not a blueprint's target, by blueprint, kind and the rule that excluded them "
    "(home, source, opt_out, exclude, include, selector, terminating); stale copies are counted "
    "under the rule that made them stale (renamed: an earlier target name).",
    ["blueprint", "kind", "rule"],
    registry=REGISTRY,
)
PROPAGATION = Histogram(
    "secrets_operator_propagation_seconds",
    "Time from observing a change (event) to the copy being written.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
    registry=REGISTRY,
)
NEW_NAMESPACE_DELAY = Gauge(
    "secrets_operator_new_namespace_delay_seconds",
    "Delay before the first write into a namespace just created, learned from how often a first "
    "create met kube-apiserver's 50 ms wait for namespaces it has not seen yet (0: never).",
    registry=REGISTRY,
)
WATCH_RESTARTS = Counter(
    "secrets_operator_watch_restarts_total",
    "Watch streams restarted, by informer and reason (timeout, inactivity, gone, short, error).",
    ["informer", "reason"],
    registry=REGISTRY,
)
API_REQUESTS = Counter(
    "secrets_operator_api_requests_total",
    "Requests sent to the API server, by HTTP verb (watches count as GET).",
    ["verb"],
    registry=REGISTRY,
)
API_DURATION = Histogram(
    "secrets_operator_api_request_duration_seconds",
    "Time from sending a request (after the rate limiter) to its response, watches excluded, by verb.",
    ["verb"],
    buckets=(0.002, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12),
    registry=REGISTRY,
)
API_ERRORS = Counter(
    "secrets_operator_api_errors_total",
    "API requests that failed, by HTTP status code (0: no response).",
    ["code"],
    registry=REGISTRY,
)
QUEUE_DEPTH = Gauge(
    "secrets_operator_queue_depth",
    "Namespaces waiting to be reconciled: due now, or later (a backoff, a hold, a recheck).",
    registry=REGISTRY,
)
QUEUE_IN_PROGRESS = Gauge(
    "secrets_operator_queue_in_progress",
    "Namespaces being reconciled now: taken from the queue by a worker and not yet done.",
    registry=REGISTRY,
)
EVENTS = Counter(
    "secrets_operator_events_total",
    "Kubernetes Events by result: sent, failed (the API refused it), duplicate (the same note on the "
    "same object within 30 minutes), rate_limited (the per-object spam filter), dropped (the send "
    "queue was full).",
    ["result"],
    registry=REGISTRY,
)
LEADER_TRANSITIONS = Counter(
    "secrets_operator_leadership_changes_total",
    "Times this replica started or stopped leading, by event (acquired, lost, released, stopped).",
    ["event"],
    registry=REGISTRY,
)
