"""The one error type of the delivery stage."""

from dag_factory.errors import DagFactoryError


class DeliveryError(DagFactoryError):
    """A load could not be done; the message names the file/table and the fix."""
