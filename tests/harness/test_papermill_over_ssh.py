"""A notebook run over ssh the way an instance runs it: sync code from S3, activate, papermill to S3."""

from __future__ import annotations

import json
import shlex
import uuid

import nbformat
import pytest
import yaml

from tests.notebooks import notebook_json
from tests.servers.sagemaker import SageMakerEnv

pytestmark = pytest.mark.integration


def tiny_notebook() -> str:
    return notebook_json(
        "import os, boto3\n"
        'print(f"result={country}-{lookback_days * 2}")\n'
        'print("endpoint=" + os.environ["AWS_ENDPOINT_URL"])\n'
        'names = sorted(b["Name"] for b in boto3.client("s3").list_buckets()["Buckets"])\n'
        'print("buckets=" + ",".join(names))',
        parameters='country = "xx"\nlookback_days = 1',
    )


def test_papermill_over_ssh_writes_the_executed_notebook_to_moto(sagemaker_env: SageMakerEnv) -> None:
    s3 = sagemaker_env.moto.client("s3")
    code, output = sagemaker_env.buckets["code"], sagemaker_env.buckets["output"]
    project = f"proj-{uuid.uuid4().hex[:8]}"
    s3.put_object(Bucket=code, Key=f"{project}/notebooks/tiny.ipynb", Body=tiny_notebook().encode())
    s3.put_object(
        Bucket=code, Key=f"{project}/params.yaml", Body=yaml.safe_dump({"country": "de", "lookback_days": 90})
    )
    s3.put_object(Bucket=code, Key=f"{project}/requirements.txt", Body=b"")
    out_key = f"{project}/run-1/de/tiny.ipynb"
    command = " && ".join(
        [
            f"aws s3 sync s3://{code}/{project} ~/{project} --delete --only-show-errors",
            sagemaker_env.sshd.activate_command("python3"),
            f"cd ~/{project}",
            "papermill notebooks/tiny.ipynb "
            + shlex.quote(f"s3://{output}/{out_key}")
            + " -k python3 -f params.yaml --log-output",
        ]
    )
    # the ssh login needs no env from us: the fixture put the moto endpoint in the login environment
    result = sagemaker_env.sshd.run(command, host=sagemaker_env.ip, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr

    executed = nbformat.reads(s3.get_object(Bucket=output, Key=out_key)["Body"].read().decode(), as_version=4)
    injected = [c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1
    assert 'country = "de"' in injected[0].source
    assert "lookback_days = 90" in injected[0].source
    printed = "".join(o.get("text", "") for o in executed.cells[-1].outputs)
    assert "result=de-180" in printed
    assert f"endpoint={sagemaker_env.endpoint_url}" in printed
    assert "buckets=" + ",".join(sorted(sagemaker_env.buckets.values())) in printed
    assert executed.metadata["papermill"]["parameters"] == {"country": "de", "lookback_days": 90}
    json.dumps(executed.metadata["papermill"])  # plain data


def test_aws_shim_copies_both_ways(sagemaker_env: SageMakerEnv) -> None:
    s3 = sagemaker_env.moto.client("s3")
    bucket = sagemaker_env.buckets["intermediate"]
    d = f"shim-{uuid.uuid4().hex[:8]}"
    result = sagemaker_env.sshd.run(
        f"mkdir -p ~/{d}/a/b && echo one > ~/{d}/a/one.txt && echo two > ~/{d}/a/b/two.log"
        f" && aws s3 sync ~/{d}/a s3://{bucket}/{d}/up --exclude '*.log' --quiet"
        f" && aws s3 cp ~/{d}/a/b/two.log s3://{bucket}/{d}/single/"
        f" && aws s3 cp s3://{bucket}/{d}/up/one.txt ~/{d}/down/"
        f" && aws s3 cp s3://{bucket}/{d}/up ~/{d}/rec --recursive --quiet"
        f" && cat ~/{d}/down/one.txt ~/{d}/rec/one.txt && aws s3 ls s3://{bucket}/{d}/"
    )
    assert result.returncode == 0, result.stderr
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=d)["Contents"])
    assert keys == [f"{d}/single/two.log", f"{d}/up/one.txt"]
    assert result.stdout.splitlines()[:2] == ["one", "one"]
    unsupported = sagemaker_env.sshd.run("aws ec2 describe-instances")
    assert unsupported.returncode == 2
    assert "only `aws s3 sync|cp|ls`" in unsupported.stderr
