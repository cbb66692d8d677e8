"""A thin fault layer over moto: AWS's documented answers that moto does not give, injected at botocore's
`before-call` hook so the code under test makes its real calls and botocore raises as it would on AWS."""
from __future__ import annotations

from botocore.awsrequest import AWSResponse


def _error(status: int, code: str, message: str):
    return AWSResponse("https://fault.invalid/", status, {}, None), {
        "Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}}


def deny_missing_keys(s3) -> None:
    """S3 to a caller without s3:ListBucket on a key (the instance role: ListBucket only under an s3:prefix
    condition): GetObject/HeadObject of a key that does not exist answer 403 AccessDenied, not 404 (S3 API
    reference, GetObject: "If you don't have the s3:ListBucket permission, Amazon S3 returns an HTTP status
    code 403 Access Denied error"). Listing under the prefix stays allowed, as the condition allows it."""

    def exists(bucket: str, key: str) -> bool:
        listed = s3.list_objects_v2(Bucket=bucket, Prefix=key, MaxKeys=1).get("Contents", [])
        return any(obj["Key"] == key for obj in listed)

    def remember(params, context, **_):  # before-call sees the serialized request; keep the API parameters
        context["fault_target"] = (params["Bucket"], params["Key"])

    def answer(context, **_):
        if not exists(*context["fault_target"]):
            return _error(403, "AccessDenied", "Access Denied")
        return None

    for operation in ("GetObject", "HeadObject"):
        s3.meta.events.register(f"before-parameter-build.s3.{operation}", remember)
        s3.meta.events.register(f"before-call.s3.{operation}", answer)


def deny_everything(s3, operations=("GetObject", "HeadObject", "ListObjectsV2")) -> None:
    """A caller with no permission on the bucket at all: 403 for every key, listing included."""
    for operation in operations:
        s3.meta.events.register(f"before-call.s3.{operation}", lambda **_: _error(403, "AccessDenied", "Access Denied"))
