from __future__ import annotations

from aws_cdk import CfnOutput, Stack
from constructs import Construct

from stacks.constructs.artifact_bucket import ArtifactBucket


class StorageStack(Stack):
    """Stateful: the artifact bucket (RETAIN). Deployed once, outlives every compute stack."""

    def __init__(self, scope: Construct, construct_id: str, *, noncurrent_version_days: int, **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.bucket = ArtifactBucket(self, "Artifacts", noncurrent_version_days=noncurrent_version_days).bucket
        CfnOutput(self, "BucketName", value=self.bucket.bucket_name)
