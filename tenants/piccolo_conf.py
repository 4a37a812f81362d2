"""Piccolo's configuration module (`PICCOLO_CONF=tenants.piccolo_conf`).

Piccolo finds its engine here as `DB`. The address of the database is only
known once the service has resolved it (an embedded server listens on a socket
of its own), and Piccolo's engine connects as soon as it is built, so `DB` is
looked up lazily from `tenants.control`, which builds it when the pool opens.
"""

from typing import Any

from piccolo.conf.apps import AppRegistry

APP_REGISTRY = AppRegistry(apps=["tenants.piccolo_app"])


def __getattr__(name: str) -> Any:
    if name == "DB":
        from tenants.control import engine

        return engine()
    raise AttributeError(name)
