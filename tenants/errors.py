"""Errors of the control plane, each meaning one thing to an operator."""


class ControlPlaneError(Exception):
    """Base class; the message is safe to show to the operator."""


class NotFound(ControlPlaneError):
    pass


class Conflict(ControlPlaneError):
    pass


class InvalidInput(ControlPlaneError):
    pass
