"""The one error type of the delivery stage."""


class DeliveryError(Exception):
    """A load could not be done; the message names the file/table and the fix."""
