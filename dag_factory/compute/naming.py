"""Names and tags that are valid for AWS and stable across task retries."""

from __future__ import annotations

import hashlib
import re

MAX_INSTANCE_NAME = 63
FACTORY_TAG = "dag-factory"  # tag key marking instances this factory created (for the orphan sweeper)
ENV_TAG = "env"  # the environment that created the instance (the planner's tag): gc touches only its own
MAX_AGE_TAG = "dag-factory-max-age"  # seconds an instance can live in a run of its DAG (plan-derived)
# the tags that say whose an instance is: the same on the instance a create finds under its name = its own
IDENTITY_TAGS = (FACTORY_TAG, ENV_TAG, "dag_id", "run_id", "group")

MAX_TAG_VALUE = 256
# SageMaker tag values: letters, digits, spaces and _ . : / = + - @ (AWS also allows non-ASCII letters,
# which are escaped here all the same); "=" is the escape character, so it is escaped too.
_TAG_SAFE = re.compile(r"[A-Za-z0-9 _.:/+\-@]")
_HASHED = "=="  # never produced by escaping ("=" always becomes "=3D"): marks a shortened value


def instance_name(dag_id: str, run_id: str, group: str, *, env: str) -> str:
    """A SageMaker notebook instance name: unique per environment, run and group, the same on every retry.

    The environment is part of it because run ids repeat across environments (a scheduled run of
    preprod and of prod has the same id) and two environments may share an account.
    `[a-zA-Z0-9](-*[a-zA-Z0-9])*`, at most 63 characters: readable head, hash for uniqueness.
    """
    digest = hashlib.sha256(f"{env}\n{dag_id}\n{run_id}\n{group}".encode()).hexdigest()[:10]
    head = re.sub(r"[^a-zA-Z0-9]+", "-", f"nb-{env}-{dag_id}-{group}").strip("-")
    head = head[: MAX_INSTANCE_NAME - len(digest) - 1].rstrip("-")
    return f"{head}-{digest}"


def encode_tag_value(value: str) -> str:
    """A run-time value (a run id) as a valid SageMaker tag value.

    Reversible (`decode_tag_value`): every character outside the allowed set, and "=" itself, becomes
    "=XX" per UTF-8 byte (quoted-printable style), e.g. ``manual__a~b`` -> ``manual__a=7Eb``. A value
    whose encoding is longer than 256 characters keeps its first part and a hash of the whole
    (``<head>==<16 hex>``): still unique, no longer reversible.
    """
    encoded = "".join(
        ch if _TAG_SAFE.fullmatch(ch) else "".join(f"={b:02X}" for b in ch.encode("utf-8")) for ch in value
    )
    if len(encoded) <= MAX_TAG_VALUE:
        return encoded
    digest = hashlib.sha256(value.encode("utf-8")).hexdigest()[:16]
    head = encoded[: MAX_TAG_VALUE - len(_HASHED) - len(digest)]
    head = re.sub(r"=[0-9A-F]?$", "", head)  # never cut an escape in half
    return f"{head}{_HASHED}{digest}"


def decode_tag_value(encoded: str) -> str | None:
    """The value `encode_tag_value` encoded; None when it was shortened with a hash."""
    if _HASHED in encoded:
        return None
    data = bytearray()
    i = 0
    while i < len(encoded):
        if encoded[i] == "=" and re.fullmatch(r"[0-9A-F]{2}", encoded[i + 1 : i + 3]):
            data.append(int(encoded[i + 1 : i + 3], 16))
            i += 3
        else:
            data.extend(encoded[i].encode("utf-8"))
            i += 1
    return data.decode("utf-8", errors="replace")
