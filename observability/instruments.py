"""The service's metric instruments, and the tiny API provisioning reports through."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Final, Protocol

from opentelemetry.metrics import CallbackOptions, Counter, Histogram, Meter, Observation
from opentelemetry.trace import Span

from observability import attributes as attr
from observability import request_context
from observability.metering import Labels, Metering, attributes_of

# Seconds. The semantic conventions' advice for HTTP server durations.
DURATION_BUCKETS: Final = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
)


HTTP_DURATION_LABELS: Final = (
    attr.HTTP_REQUEST_METHOD,
    attr.HTTP_RESPONSE_STATUS_CODE,
    attr.HTTP_ROUTE,
    attr.ERROR_TYPE,
)
SCIM_REQUEST_LABELS: Final = (
    attr.LABEL_TENANT,
    attr.LABEL_RESOURCE_TYPE,
    attr.LABEL_OPERATION,
    attr.LABEL_STATUS_CODE,
)
SCIM_DURATION_LABELS: Final = (
    attr.LABEL_TENANT,
    attr.LABEL_RESOURCE_TYPE,
    attr.LABEL_OPERATION,
    attr.LABEL_STATUS_CLASS,
)
PROVISIONING_LABELS: Final = (attr.LABEL_TENANT, attr.LABEL_RESOURCE_TYPE, attr.LABEL_ACTION)
USER_CHANGE_LABELS: Final = (attr.LABEL_TENANT, attr.LABEL_FOUND)
WRITE_DEADLOCK_LABELS: Final = (attr.LABEL_TENANT,)


class CounterInstrument(Protocol):
    def add(self, amount: int, values: Labels, span: Span | None = None) -> None:
        """Add ``amount`` for the attributes ``values`` names, measured in ``span``."""


class HistogramInstrument(Protocol):
    def record(self, value: float, values: Labels, span: Span | None = None) -> None:
        """Record ``value`` for the attributes ``values`` names, measured in ``span``."""


class _SdkCounter:
    """The SDK's counter behind our call: its exemplar comes from the current context."""

    def __init__(self, counter: Counter, labels: tuple[str, ...]) -> None:
        self._counter = counter
        self._labels = labels

    def add(self, amount: int, values: Labels, span: Span | None = None) -> None:
        del span
        self._counter.add(amount, attributes_of(self._labels, values))


class _SdkHistogram:
    def __init__(self, histogram: Histogram, labels: tuple[str, ...]) -> None:
        self._histogram = histogram
        self._labels = labels

    def record(self, value: float, values: Labels, span: Span | None = None) -> None:
        del span
        self._histogram.record(value, attributes_of(self._labels, values))


class Instruments:
    """One set per `Telemetry`: recording goes through these, never through globals.

    With ``metering``, the request path's counters and histograms are its lean
    ones (`observability.metering`); without, the SDK's, through ``meter``.
    """

    def __init__(
        self, meter: Meter, active_tenants: Callable[[], int], metering: Metering | None = None
    ) -> None:
        def counter(
            name: str, unit: str, description: str, labels: tuple[str, ...]
        ) -> CounterInstrument:
            if metering is not None:
                return metering.counter(name, unit=unit, description=description, labels=labels)
            return _SdkCounter(
                meter.create_counter(name, unit=unit, description=description), labels
            )

        def histogram(name: str, description: str, labels: tuple[str, ...]) -> HistogramInstrument:
            if metering is not None:
                return metering.histogram(
                    name, unit="s", description=description, labels=labels, bounds=DURATION_BUCKETS
                )
            created = meter.create_histogram(
                name,
                unit="s",
                description=description,
                explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
            )
            return _SdkHistogram(created, labels)

        self.http_duration = histogram(
            attr.HTTP_SERVER_REQUEST_DURATION,
            "Duration of HTTP server requests, by route.",
            HTTP_DURATION_LABELS,
        )
        self.scim_requests = counter(
            attr.SCIM_REQUESTS,
            "{request}",
            "SCIM requests by tenant, resource type, operation and status code.",
            SCIM_REQUEST_LABELS,
        )
        self.scim_duration = histogram(
            attr.SCIM_REQUEST_DURATION,
            "Duration of SCIM requests by tenant, resource type, operation and status class.",
            SCIM_DURATION_LABELS,
        )
        self.provisioning = counter(
            attr.SCIM_PROVISIONING_OPERATIONS,
            "{resource}",
            "Users and groups created, updated, deactivated, reactivated and deleted, by tenant.",
            PROVISIONING_LABELS,
        )
        self.user_changes = counter(
            attr.SCIM_USER_CHANGES,
            "{change}",
            "User PATCHes and PUTs without a lock, by tenant and by how they found the user: "
            "seen (one statement), stale or read (two).",
            USER_CHANGE_LABELS,
        )
        self.write_deadlocks = counter(
            attr.SCIM_WRITE_DEADLOCKS,
            "{write}",
            "SCIM writes PostgreSQL ended as a deadlock's victim, nothing written, by tenant; "
            "each runs again, up to 3 times in all.",
            WRITE_DEADLOCK_LABELS,
        )

        def observe_active(options: CallbackOptions) -> Iterable[Observation]:
            del options
            return (Observation(active_tenants()),)

        meter.create_observable_gauge(
            attr.SCIM_ACTIVE_TENANTS,
            callbacks=[observe_active],
            unit="{tenant}",
            description="Tenants with an authenticated request in the last five minutes, "
            "on this process.",
        )


def provisioned(resource_type: str, action: str) -> None:
    """A resource of ``resource_type`` (`User`, `Group`) was ``action``-ed by this request."""
    info = request_context.current()
    if info is None:
        return
    info.telemetry.instruments.provisioning.add(
        1, (info.tenant_label or attr.OTHER_TENANT, resource_type, action), info.span
    )


def user_change_found(found: str) -> None:
    """A user's change without a lock found its user as ``found`` says (`attr.FOUND_SEEN`,
    `attr.FOUND_STALE`, `attr.FOUND_READ`)."""
    info = request_context.current()
    if info is None:
        return
    info.telemetry.instruments.user_changes.add(
        1, (info.tenant_label or attr.OTHER_TENANT, found), info.span
    )


def write_deadlocked() -> None:
    """PostgreSQL ended this request's write as a deadlock's victim (it runs again, or
    fails if that was its last attempt)."""
    info = request_context.current()
    if info is None:
        return
    info.telemetry.instruments.write_deadlocks.add(
        1, (info.tenant_label or attr.OTHER_TENANT,), info.span
    )


def changed(resource_type: str, before: dict[str, Any], after: dict[str, Any]) -> None:
    """A resource went from ``before`` to ``after``: updated, and maybe (de)activated.

    Identical states (a PUT repeating what is stored) are no change at all.
    """
    if before == after:
        return
    provisioned(resource_type, attr.ACTION_UPDATED)
    was_active, is_active = before.get("active", True), after.get("active", True)
    if was_active and not is_active:
        provisioned(resource_type, attr.ACTION_DEACTIVATED)
    elif is_active and not was_active:
        provisioned(resource_type, attr.ACTION_REACTIVATED)
