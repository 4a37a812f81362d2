"""The service's metric instruments, and the tiny API provisioning reports through."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Final

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from observability import attributes as attr
from observability import request_context

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


class Instruments:
    """One set per `Telemetry`: recording goes through these, never through globals."""

    def __init__(self, meter: Meter, active_tenants: Callable[[], int]) -> None:
        self.http_duration = meter.create_histogram(
            attr.HTTP_SERVER_REQUEST_DURATION,
            unit="s",
            description="Duration of HTTP server requests, by route.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self.scim_requests = meter.create_counter(
            attr.SCIM_REQUESTS,
            unit="{request}",
            description="SCIM requests by tenant, resource type, operation and status code.",
        )
        self.scim_duration = meter.create_histogram(
            attr.SCIM_REQUEST_DURATION,
            unit="s",
            description="Duration of SCIM requests by tenant, resource type, operation and "
            "status class.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self.provisioning = meter.create_counter(
            attr.SCIM_PROVISIONING_OPERATIONS,
            unit="{resource}",
            description="Users and groups created, updated, deactivated, reactivated and "
            "deleted, by tenant.",
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
        1,
        {
            attr.LABEL_TENANT: info.tenant_label or attr.OTHER_TENANT,
            attr.LABEL_RESOURCE_TYPE: resource_type,
            attr.LABEL_ACTION: action,
        },
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
