from aws_cdk.assertions import Match


def test_bucket_blocks_public_access_encrypts_and_versions(templates):
    templates["storage"].has_resource_properties(
        "AWS::S3::Bucket",
        {
            "PublicAccessBlockConfiguration": {
                "BlockPublicAcls": True, "BlockPublicPolicy": True,
                "IgnorePublicAcls": True, "RestrictPublicBuckets": True,
            },
            "BucketEncryption": {"ServerSideEncryptionConfiguration": [
                {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]},
            "VersioningConfiguration": {"Status": "Enabled"},
        },
    )


def test_bucket_is_retained(templates):
    templates["storage"].has_resource("AWS::S3::Bucket", {"DeletionPolicy": "Retain", "UpdateReplacePolicy": "Retain"})


def test_old_checkpoint_versions_expire(templates):
    templates["storage"].has_resource_properties(
        "AWS::S3::Bucket",
        {"LifecycleConfiguration": {"Rules": [Match.object_like(
            {"NoncurrentVersionExpiration": {"NoncurrentDays": 7}, "Status": "Enabled"})]}},
    )


def test_bucket_policy_denies_insecure_transport(templates):
    templates["storage"].has_resource_properties(
        "AWS::S3::BucketPolicy",
        {"PolicyDocument": {"Statement": Match.array_with([Match.object_like(
            {"Effect": "Deny", "Condition": {"Bool": {"aws:SecureTransport": "false"}}})])}},
    )


def test_stateful_logical_ids_are_pinned(templates):
    # Renaming these replaces the bucket (data loss on a RETAIN bucket means an orphan): keep them stable.
    resources = templates["storage"].to_json()["Resources"]
    assert {"ArtifactsBucket88671897", "ArtifactsBucketPolicyBC103148"} <= set(resources)
