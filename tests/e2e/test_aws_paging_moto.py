"""Paged AWS reads: botocore's paginators, boto3 over HTTP to moto's server on 127.0.0.1.

Each page is one HTTP request (``SENT`` counts what AWS would see), the page cap
holds, and an error on a page arrives as the pack's ``AwsError``, as from one call.
"""

from __future__ import annotations

import pytest

pytest.importorskip("moto.server")
from moto.server import ThreadedMotoServer  # noqa: E402

from prtg_ai.backends import aws  # noqa: E402

REGION = "us-east-1"


@pytest.fixture(scope="module")
def env():
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing-secret",
           "AWS_DEFAULT_REGION": REGION, "AWS_ENDPOINT_URL": f"http://{host}:{port}"}
    import boto3

    ec2 = boto3.client("ec2", region_name=REGION, endpoint_url=env["AWS_ENDPOINT_URL"],
                       aws_access_key_id="testing", aws_secret_access_key="testing-secret")
    image = ec2.describe_images()["Images"][0]["ImageId"]
    for _ in range(7):  # seven reservations of one instance each
        ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, InstanceType="g5.xlarge")
    yield env
    server.stop()


def test_every_page_is_read_one_request_each_and_the_cap_holds(env):
    session = aws.Aws(env=env)
    pages = session._paged("ec2", "DescribeInstances", {"MaxResults": 5}, "Reservations", "NextToken", 50,
                           region=REGION)
    assert len(pages) == 7 and session.sent("ec2") == 2  # 5 + 2 reservations, two requests
    capped = session._paged("ec2", "DescribeInstances", {"MaxResults": 5}, "Reservations", "NextToken", 1,
                            region=REGION)
    assert len(capped) == 5 and session.sent("ec2") == 3
    assert ("ec2", "DescribeInstances") in aws.CALLED


def test_an_error_on_a_page_is_an_aws_error(env):
    with pytest.raises(aws.AwsError) as caught:
        aws.Aws(env=env)._paged("ec2", "DescribeInstances", {"InstanceIds": ["i-0123456789abcdef0"]},
                                "Reservations", "NextToken", 50, region=REGION)
    assert caught.value.code == "InvalidInstanceID.NotFound"
