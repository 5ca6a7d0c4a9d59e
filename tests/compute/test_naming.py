"""Instance names and tag values AWS accepts, stable across retries."""

from __future__ import annotations

import hashlib
import re

from hypothesis import given, settings
from hypothesis import strategies as st

from dag_factory.compute.naming import (
    MAX_TAG_VALUE,
    decode_tag_value,
    encode_tag_value,
    instance_name,
)
from tests.servers.sagemaker_rules import NAME_PATTERN, tag_problems

# Airflow's default allowed_run_id_pattern, and what an API caller may send when it is relaxed
RUN_IDS = st.from_regex(r"[A-Za-z0-9_.~:+-]{1,250}", fullmatch=True) | st.text(min_size=1, max_size=250)


def test_names_are_valid_stable_and_unique() -> None:
    name = instance_name("churn-model", "manual__2026-01-05T04:00:00+00:00~x", "de", env="prod")
    assert re.fullmatch(NAME_PATTERN, name) and len(name) <= 63
    assert name == instance_name("churn-model", "manual__2026-01-05T04:00:00+00:00~x", "de", env="prod")
    assert name != instance_name("churn-model", "manual__2026-01-05T04:00:00+00:00~y", "de", env="prod")


SCHEDULED = "scheduled__2026-01-05T04:00:00+00:00"  # the same run id in every environment


def test_environments_in_one_account_never_share_an_instance() -> None:
    """A scheduled run has the same id in preprod and prod: their instances must still differ, or the
    first teardown deletes the other environment's instance."""
    preprod = instance_name("churn-model", SCHEDULED, "de", env="preprod")
    prod = instance_name("churn-model", SCHEDULED, "de", env="prod")
    assert preprod != prod
    assert preprod.startswith("nb-preprod-churn-model-de-") and prod.startswith("nb-prod-churn-model-de-")


@settings(deadline=None)  # generating from regexes is slow on a loaded machine, not the code under test
@given(
    env=st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,40}", fullmatch=True),  # platform environment names
    dag_id=st.from_regex(r"[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?", fullmatch=True),  # spec.job.ProjectName
    group=st.from_regex(r"[A-Za-z0-9](?:[A-Za-z0-9_-]{0,30}[A-Za-z0-9])?", fullmatch=True),  # FanOutValue
    run_id=RUN_IDS,
)
def test_every_name_is_one_sagemaker_accepts_and_names_its_environment(
    env: str, dag_id: str, group: str, run_id: str
) -> None:
    name = instance_name(dag_id, run_id, group, env=env)
    assert re.fullmatch(NAME_PATTERN, name) and len(name) <= 63, name
    assert name != instance_name(dag_id, run_id, group, env=env + "x")


def test_run_ids_are_encoded_reversibly_into_the_allowed_set() -> None:
    assert encode_tag_value("scheduled__2026-01-05T04:00:00+00:00") == "scheduled__2026-01-05T04:00:00+00:00"
    assert encode_tag_value("manual__a~b") == "manual__a=7Eb"
    assert encode_tag_value("a=b") == "a=3Db"  # the escape character itself
    assert encode_tag_value("é") == "=C3=A9"
    assert decode_tag_value("manual__a=7Eb") == "manual__a~b"


@given(RUN_IDS)
def test_any_run_id_becomes_a_valid_tag_value_that_decodes_back(run_id: str) -> None:
    encoded = encode_tag_value(run_id)
    assert tag_problems([{"Key": "run_id", "Value": encoded}]) == []  # what AWS (the harness) accepts
    assert len(encoded) <= MAX_TAG_VALUE
    decoded = decode_tag_value(encoded)
    assert decoded == run_id or (decoded is None and "==" in encoded)


def test_an_overlong_value_is_shortened_with_a_hash() -> None:
    long = "~" * 250  # 750 characters encoded
    encoded = encode_tag_value(long)
    # 79 whole "=7E" escapes fit in 256 - len("==") - 16; the 80th would be cut in half, so it goes
    assert encoded == "=7E" * 79 + "==" + "a18cbf5a2f82f48e"  # sha256("~" * 250)[:16]
    assert encoded[-16:] == hashlib.sha256(long.encode("utf-8")).hexdigest()[:16]
    assert len(encoded) <= MAX_TAG_VALUE
    assert "==" in encoded and decode_tag_value(encoded) is None
    assert encode_tag_value("~" * 249) != encoded  # still unique
