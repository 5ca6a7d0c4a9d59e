"""moto's SageMaker notebook instances, made as strict and as slow as AWS's.

moto accepts any tag, any name, a subset of the instance types, and moves an instance between states
at once. AWS does not, so a test on plain moto cannot see what production would. ``StrictNotebooks``
patches moto's model classes in this process (moto runs in-process as ``ThreadedMotoServer``):

- **Input rules** from AWS's own API model (botocore's ``sagemaker`` service definition, the source of
  the API reference): notebook instance name (``[a-zA-Z0-9](-*[a-zA-Z0-9])*``, at most 63), tags (at most
  50, unique keys, key 1-128 and value 0-256 characters of letters, digits, spaces and ``_ . : / = + - @``,
  no ``aws:`` prefix), the instance-type enum (moto rejects some types AWS accepts; AWS's list wins),
  volume size 5-16384 GB, and a lifecycle configuration that must exist. Answers are AWS's
  ``ValidationException: N validation error(s) detected: Value '...' at '...' failed to satisfy
  constraint: ...``.
- **Life cycle with latencies**: create and start go Pending -> InService after ``pending_s``; stop goes
  Stopping -> Stopped after ``stopping_s``; delete goes Deleting -> gone after ``deleting_s``. A call
  in a state AWS refuses it in (stop while Pending, delete while InService or Deleting, start unless
  Stopped) answers AWS's ``Status (X) not in ([...]). Unable to transition to (Y)``.
- **Lifecycle-config failures**: ``fail_lifecycle(config, times)`` makes the next ``times`` starts of an
  instance with that (existing) lifecycle configuration end in Failed, with a FailureReason.
- **Auto-stop**: ``auto_stop(times)``: the next ``times`` instances to reach InService stop themselves
  (as SageMaker's idle auto-stop lifecycle scripts do).
- **Held**: ``hold(part)``: instances whose name contains ``part`` stay Pending until ``release(part)``
  (a test orders events without betting on how fast a loaded machine is).
- **Quotas**: ``quotas = {"ml.t3.medium": 1}``: a create or start beyond that many instances of the type
  (all but Stopped and Failed count) answers ``ResourceLimitExceeded``, as AWS's service quota does.
- **The factory's hardening**: a create carrying the factory's tag (``dag-factory: true``) must say
  ``DirectInternetAccess``, ``RootAccess`` and ``InstanceMetadataServiceConfiguration`` (AWS would take its
  own defaults: internet, root and IMDSv1 on), as the product always does; stricter than AWS on purpose,
  for instances the product creates. DescribeNotebookInstance answers the IMDS configuration too (moto
  drops it), so a test reads back what was sent. ``HARDENED`` is what a test's own create sends.
- **Lost answers**: ``lose_answers(action, times)``: the next ``times`` calls of ``action`` are carried
  out and then answered HTTP 500 (the answer never arrived), so botocore retries them.
- **Slow to show**: ``hide(part, times)``: the next ``times`` DescribeNotebookInstance calls of an
  instance whose name contains ``part`` answer RecordNotFound, as AWS may right after a create.

Every transition is kept in ``history`` and every status DescribeNotebookInstance answered in
``described``, so a test can prove that the waits ran. ``rejected`` holds every call refused.
"""

from __future__ import annotations

import base64
import threading
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

LIMITED_STATES = ("Pending", "InService", "Stopping", "Updating", "Deleting")  # count toward quotas
TAG_PUNCTUATION = set("_.:/=+-@")
NAME_PATTERN = r"[a-zA-Z0-9](-*[a-zA-Z0-9])*"
FACTORY_TAG = "dag-factory"  # as dag_factory.compute.naming (the fake does not import the product)
HARDENING = ("DirectInternetAccess", "RootAccess", "InstanceMetadataServiceConfiguration")
# what a test's own create of a factory-tagged instance sends (the product's defaults)
HARDENED: dict[str, Any] = {
    "DirectInternetAccess": "Disabled",
    "RootAccess": "Disabled",
    "InstanceMetadataServiceConfiguration": {"MinimumInstanceMetadataServiceVersion": "2"},
}


@dataclass(frozen=True)
class Latencies:
    pending_s: float = 3.0
    stopping_s: float = 2.0
    deleting_s: float = 2.0


@dataclass(frozen=True)
class Transition:
    name: str
    status: str  # "Deleted" when it is gone
    at: float  # time.monotonic()


def _model() -> Any:
    import botocore.session

    return botocore.session.get_session().get_service_model("sagemaker")


def aws_instance_types() -> list[str]:
    """Every notebook instance type AWS accepts (the API model's enum)."""
    shape = _model().operation_model("CreateNotebookInstance").input_shape.members["InstanceType"]
    return list(shape.enum)


def _tag_text_ok(text: str) -> bool:
    """AWS's ``[\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]*``: letters, separators (spaces), numbers, that punctuation."""
    return all(unicodedata.category(ch)[0] in "LZN" or ch in TAG_PUNCTUATION for ch in text)


def _name_ok(name: str) -> bool:
    import re

    return len(name) <= 63 and re.fullmatch(NAME_PATTERN, name) is not None


def validation_problems(kwargs: dict[str, Any], known_lifecycle_configs: set[str]) -> list[str]:
    """AWS's input checks of CreateNotebookInstance, as AWS words them (one per violation)."""
    problems: list[str] = []
    name = str(kwargs.get("notebook_instance_name") or "")
    if not _name_ok(name):
        problems.append(
            f"Value '{name}' at 'notebookInstanceName' failed to satisfy constraint: Member must satisfy "
            f"regular expression pattern: {NAME_PATTERN} and have length less than or equal to 63"
        )
    instance_type = kwargs.get("instance_type")
    if instance_type not in aws_instance_types():
        problems.append(
            f"Value '{instance_type}' at 'instanceType' failed to satisfy constraint: Member must satisfy "
            "enum value set: [see the CreateNotebookInstance API reference]"
        )
    volume = kwargs.get("volume_size_in_gb")
    if volume is not None and not 5 <= int(volume) <= 16384:
        problems.append(
            f"Value '{volume}' at 'volumeSizeInGB' failed to satisfy constraint: Member must have value "
            "between 5 and 16384"
        )
    problems.extend(tag_problems(kwargs.get("tags") or []))
    config = kwargs.get("lifecycle_config_name")
    if config and config not in known_lifecycle_configs:
        problems.append(f"Notebook Instance Lifecycle Config '{config}' does not exist")
    return problems


def tag_problems(tags: list[dict[str, str]]) -> list[str]:
    problems = []
    if len(tags) > 50:
        problems.append(f"Value at 'tags' failed to satisfy constraint: Member must have length less than "
                        f"or equal to 50 (got {len(tags)})")  # fmt: skip
    keys = [t.get("Key", "") for t in tags]
    if len(set(keys)) != len(keys):
        problems.append("Duplicate tag keys are not allowed")
    pattern = "[\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]*"
    for i, tag in enumerate(tags, start=1):
        key, value = tag.get("Key", ""), tag.get("Value", "")
        if not 1 <= len(key) <= 128 or not _tag_text_ok(key):
            problems.append(
                f"Value '{key}' at 'tags.{i}.member.key' failed to satisfy constraint: Member "
                f"must satisfy regular expression pattern: {pattern} and have length 1-128"
            )
        elif key.lower().startswith("aws:"):
            problems.append(f"Tag key '{key}' uses the reserved prefix 'aws:'")
        if len(value) > 256 or not _tag_text_ok(value):
            problems.append(
                f"Value '{value}' at 'tags.{i}.member.value' failed to satisfy constraint: "
                f"Member must satisfy regular expression pattern: {pattern} and have length "
                "less than or equal to 256"
            )
    return problems


def hardening_problems(kwargs: dict[str, Any], imds: Any) -> list[str]:
    """A factory-tagged create that leaves a hardening field to AWS's default (see module doc)."""
    tags = {t.get("Key"): t.get("Value") for t in kwargs.get("tags") or []}
    if tags.get(FACTORY_TAG) != "true":
        return []
    sent = {
        "DirectInternetAccess": kwargs.get("direct_internet_access"),
        "RootAccess": kwargs.get("root_access"),
        "InstanceMetadataServiceConfiguration": imds,
    }
    missing = [field for field in HARDENING if not sent[field]]
    return [f"the factory's instances must be hardened: {', '.join(missing)} not sent"] if missing else []


def _validation_error(problems: list[str]) -> Exception:
    from moto.sagemaker.exceptions import ValidationError

    count = f"{len(problems)} validation error{'s' if len(problems) > 1 else ''} detected"
    return ValidationError(message=f"{count}: {'; '.join(problems)}")


def _resource_limit_error(message: str) -> Exception:
    from moto.sagemaker.exceptions import SagemakerClientError

    class ResourceLimitExceeded(SagemakerClientError):
        code = "ResourceLimitExceeded"

    return ResourceLimitExceeded(message)


def _transition_error(notebook: Any, allowed: list[str], target: str) -> Exception:
    from moto.sagemaker.exceptions import ValidationError

    return ValidationError(
        message=f"Status ({notebook.status}) not in ([{', '.join(allowed)}]). Unable to transition to "
        f"({target}) for Notebook Instance ({notebook.arn})"
    )


@dataclass
class StrictNotebooks:
    """The patch (see module doc). ``on_gone(backend, notebook)`` runs when an instance is finally gone."""

    latencies: Latencies = field(default_factory=Latencies)
    slow: dict[str, Latencies] = field(default_factory=dict)  # name substring -> its own latencies
    quotas: dict[str, int] = field(default_factory=dict)  # instance type -> instances at once
    on_gone: Callable[[Any, Any], None] | None = None
    history: list[Transition] = field(default_factory=list)
    described: list[tuple[str, str]] = field(default_factory=list)  # (name, status answered)
    rejected: list[tuple[str, str, str]] = field(default_factory=list)  # (action, name, message)
    held: set[str] = field(default_factory=set)  # name substrings kept Pending until released
    lost: list[tuple[str, str]] = field(default_factory=list)  # (action, name) answered 500 after doing it
    _failing: dict[str, int] = field(default_factory=dict)
    _losing: dict[str, int] = field(default_factory=dict)
    _hidden: dict[str, int] = field(default_factory=dict)
    _request: threading.local = field(default_factory=threading.local, repr=False)
    _auto_stops: int = 0
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    # --- what tests arrange ----------------------------------------------------------------------
    def fail_lifecycle(self, config_name: str, times: int = 1) -> None:
        """The next ``times`` starts of instances with lifecycle config ``config_name`` end in Failed."""
        with self._lock:
            self._failing[config_name] = self._failing.get(config_name, 0) + times

    def auto_stop(self, times: int = 1) -> None:
        with self._lock:
            self._auto_stops += times

    def hold(self, part: str) -> None:
        """Instances whose name contains ``part`` stay Pending (however long) until ``release(part)``."""
        with self._lock:
            self.held.add(part)

    def release(self, part: str) -> None:
        with self._lock:
            self.held.discard(part)

    def lose_answers(self, action: str, times: int = 1) -> None:
        """The next ``times`` calls of ``action`` (e.g. "CreateNotebookInstance") are carried out, then
        answered HTTP 500, as when the answer is lost on the way: botocore retries them."""
        with self._lock:
            self._losing[action] = self._losing.get(action, 0) + times

    def hide(self, part: str, times: int = 1) -> None:
        """The next ``times`` descriptions of instances whose name contains ``part`` say RecordNotFound."""
        with self._lock:
            self._hidden[part] = self._hidden.get(part, 0) + times

    def _take(self, counters: dict[str, int], key: str) -> bool:
        with self._lock:
            if counters.get(key, 0) > 0:
                counters[key] -= 1
                return True
            return False

    def statuses(self, name: str) -> list[str]:
        """Every status ``name`` went through, in order."""
        with self._lock:
            return [t.status for t in self.history if t.name == name]

    def latencies_of(self, name: str) -> Latencies:
        return next((lat for part, lat in self.slow.items() if part in name), self.latencies)

    # --- the state machine -----------------------------------------------------------------------
    def _set(self, notebook: Any, status: str, then: str | None = None, after: float = 0.0) -> None:
        notebook.status = status
        notebook._strict_next = (then, time.monotonic() + after) if then else None
        self.history.append(Transition(notebook.notebook_instance_name, status, time.monotonic()))

    def _begin_start(self, notebook: Any) -> None:
        failing = notebook.lifecycle_config_name and self._failing.get(notebook.lifecycle_config_name, 0)
        if failing:
            self._failing[notebook.lifecycle_config_name] -= 1
        notebook._strict_fail = bool(failing)
        self._set(notebook, "Pending", "Failed" if failing else "InService",
                  self.latencies_of(notebook.notebook_instance_name).pending_s)  # fmt: skip

    def reconcile(self, backend: Any) -> None:
        """Apply every transition that is due (called before each backend call reads state)."""
        with self._lock:
            for name, notebook in list(backend.notebook_instances.items()):
                while (pending := getattr(notebook, "_strict_next", None)) and pending[1] <= time.monotonic():
                    target = pending[0]
                    if target == "InService" and any(part in name for part in self.held):
                        break
                    if target == "Deleted":
                        del backend.notebook_instances[name]
                        self.history.append(Transition(name, "Deleted", time.monotonic()))
                        if self.on_gone is not None:
                            self.on_gone(backend, notebook)
                        break
                    if target == "Failed":
                        notebook.failure_reason = self._failure_reason(backend, notebook)
                    latencies = self.latencies_of(name)
                    if target == "InService" and self._auto_stops > 0:
                        self._auto_stops -= 1
                        self._set(notebook, "InService")
                        self._set(notebook, "Stopping", "Stopped", latencies.stopping_s)
                    else:
                        self._set(notebook, target)

    @staticmethod
    def _failure_reason(backend: Any, notebook: Any) -> str:
        config = backend.notebook_instance_lifecycle_configurations.get(notebook.lifecycle_config_name)
        arn = config.arn if config is not None else notebook.lifecycle_config_name
        return (
            f"Notebook Instance Lifecycle Config '{arn}' for Notebook Instance '{notebook.arn}' failed: "
            "the OnStart script exited with a non-zero status. Please check your CloudWatch logs."
        )

    def _check_quota(self, backend: Any, instance_type: str) -> None:
        quota = self.quotas.get(instance_type)
        if quota is None:
            return
        used = sum(
            1
            for nb in backend.notebook_instances.values()
            if nb.instance_type == instance_type and nb.status in LIMITED_STATES
        )
        if used + 1 > quota:
            raise _resource_limit_error(
                f"The account-level service limit '{instance_type} for notebook instance usage' is {quota} "
                f"Instances, with current utilization of {used} Instances and a request delta of 1 "
                "Instances. Please use AWS Service Quotas to request an increase for this quota. If AWS "
                "Service Quotas is not available, contact AWS support to request an increase for this quota."
            )

    def _refuse(self, action: str, name: str, error: Exception) -> Exception:
        self.rejected.append((action, name, str(getattr(error, "message", error))))
        return error

    # --- installing it ---------------------------------------------------------------------------
    def install(self, monkeypatch: pytest.MonkeyPatch) -> StrictNotebooks:  # noqa: C901 (one patch per call)
        from moto.sagemaker.models import FakeSagemakerNotebookInstance, SageMakerModelBackend
        from moto.sagemaker.responses import SageMakerResponse

        strict = self
        backend_cls = SageMakerModelBackend
        original = {
            name: getattr(backend_cls, name)
            for name in ("create_notebook_instance", "get_notebook_instance", "list_notebook_instances",
                         "_get_resource_from_arn")
        }  # fmt: skip
        original_to_dict = FakeSagemakerNotebookInstance.to_dict
        original_describe = SageMakerResponse.describe_notebook_instance
        original_create_response = SageMakerResponse.create_notebook_instance

        def create_notebook_instance(backend: Any, *args: Any, **kwargs: Any) -> Any:
            with strict._lock:
                strict.reconcile(backend)
                name = kwargs.get("notebook_instance_name", "")
                imds = getattr(strict._request, "imds", None)
                problems = validation_problems(
                    kwargs, set(backend.notebook_instance_lifecycle_configurations)
                ) + hardening_problems(kwargs, imds)
                if problems:
                    raise strict._refuse("CreateNotebookInstance", name, _validation_error(problems))
                try:
                    strict._check_quota(backend, kwargs["instance_type"])
                except Exception as exc:
                    raise strict._refuse("CreateNotebookInstance", name, exc) from None
                try:
                    notebook = original["create_notebook_instance"](backend, *args, **kwargs)
                except Exception as exc:  # a duplicate name
                    raise strict._refuse("CreateNotebookInstance", name, exc) from None
                notebook.instance_metadata_service_configuration = imds
                return notebook

        def create_notebook_instance_response(response: Any) -> Any:
            # moto's response drops InstanceMetadataServiceConfiguration: hand it to the backend's create
            strict._request.imds = response._get_param("InstanceMetadataServiceConfiguration")
            try:
                answer = original_create_response(response)
            finally:
                strict._request.imds = None
            if strict._take(strict._losing, "CreateNotebookInstance"):
                with strict._lock:
                    strict.lost.append(
                        ("CreateNotebookInstance", response._get_param("NotebookInstanceName"))
                    )
                body = '{"__type": "InternalFailure", "message": "We encountered an internal error."}'
                return body, {"status": 500, "Content-Type": "application/x-amz-json-1.1"}
            return answer

        def get_notebook_instance(backend: Any, name: str) -> Any:
            strict.reconcile(backend)
            return original["get_notebook_instance"](backend, name)

        def list_notebook_instances(backend: Any, *args: Any, **kwargs: Any) -> Any:
            strict.reconcile(backend)
            return original["list_notebook_instances"](backend, *args, **kwargs)

        def get_resource_from_arn(backend: Any, arn: str) -> Any:
            strict.reconcile(backend)
            return original["_get_resource_from_arn"](backend, arn)

        def start_notebook_instance(backend: Any, name: str) -> None:
            with strict._lock:
                notebook = get_notebook_instance(backend, name)
                if notebook.status != "Stopped":
                    raise strict._refuse("StartNotebookInstance", name,
                                         _transition_error(notebook, ["Stopped"], "Pending"))  # fmt: skip
                try:
                    strict._check_quota(backend, notebook.instance_type)
                except Exception as exc:
                    raise strict._refuse("StartNotebookInstance", name, exc) from None
                strict._begin_start(notebook)

        def stop_notebook_instance(backend: Any, name: str) -> None:
            with strict._lock:
                notebook = get_notebook_instance(backend, name)
                if notebook.status != "InService":
                    raise strict._refuse("StopNotebookInstance", name,
                                         _transition_error(notebook, ["InService"], "Stopping"))  # fmt: skip
                strict._set(notebook, "Stopping", "Stopped", strict.latencies_of(name).stopping_s)

        def delete_notebook_instance(backend: Any, name: str) -> None:
            with strict._lock:
                notebook = get_notebook_instance(backend, name)
                if notebook.status not in ("Stopped", "Failed"):
                    error = _transition_error(notebook, ["Stopped", "Failed"], "Deleting")
                    raise strict._refuse("DeleteNotebookInstance", name, error)
                strict._set(notebook, "Deleting", "Deleted", strict.latencies_of(name).deleting_s)

        def start(notebook: Any) -> None:  # moto calls it from __init__: a new instance is Pending
            with strict._lock:
                strict._begin_start(notebook)

        def to_dict(notebook: Any) -> dict[str, Any]:
            answer: dict[str, Any] = original_to_dict(notebook)
            if notebook.status == "Failed" and getattr(notebook, "failure_reason", None):
                answer["FailureReason"] = notebook.failure_reason
            imds = getattr(notebook, "instance_metadata_service_configuration", None)
            if imds:
                answer["InstanceMetadataServiceConfiguration"] = imds
            return answer

        def describe_notebook_instance(response: Any) -> Any:
            from moto.sagemaker.exceptions import ValidationError

            name = response._get_param("NotebookInstanceName")
            if any(part in name and strict._take(strict._hidden, part) for part in list(strict._hidden)):
                raise ValidationError(message="RecordNotFound")  # as moto says for an unknown instance
            answer = original_describe(response)
            notebook = response.sagemaker_backend.notebook_instances.get(name)
            if notebook is not None:
                with strict._lock:
                    strict.described.append((name, notebook.status))
            return answer

        for name, patched in {
            "create_notebook_instance": create_notebook_instance,
            "get_notebook_instance": get_notebook_instance,
            "list_notebook_instances": list_notebook_instances,
            "_get_resource_from_arn": get_resource_from_arn,
            "start_notebook_instance": start_notebook_instance,
            "stop_notebook_instance": stop_notebook_instance,
            "delete_notebook_instance": delete_notebook_instance,
        }.items():
            monkeypatch.setattr(backend_cls, name, patched)
        monkeypatch.setattr(FakeSagemakerNotebookInstance, "start", start)
        monkeypatch.setattr(FakeSagemakerNotebookInstance, "to_dict", to_dict)
        # AWS's instance-type list replaces moto's shorter one (checked in create_notebook_instance)
        monkeypatch.setattr(FakeSagemakerNotebookInstance, "validate_instance_type", lambda self, t: None)
        monkeypatch.setattr(SageMakerResponse, "describe_notebook_instance", describe_notebook_instance)
        monkeypatch.setattr(SageMakerResponse, "create_notebook_instance", create_notebook_instance_response)
        return self


def lifecycle_config(client: Any, name: str, on_start: str = "#!/bin/bash\nset -e\n") -> str:
    """Create a notebook instance lifecycle configuration (AWS needs it to exist); its ARN."""
    content = base64.b64encode(on_start.encode()).decode()
    answer = client.create_notebook_instance_lifecycle_config(
        NotebookInstanceLifecycleConfigName=name, OnStart=[{"Content": content}]
    )
    return str(answer["NotebookInstanceLifecycleConfigArn"])
