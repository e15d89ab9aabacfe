"""Which IAM actions each S3 operation needs under a bucket policy, and the S3 actions a
policy may name (with the kind of resource each applies to). Pure.

Invariants: action names are lowercase ``s3:...``; an operation no bucket policy governs
(ListBuckets, CreateBucket) needs no action; an object operation on a version needs the
``...Version`` action; a write that sets an ACL or tags also needs the ACL or tagging
action, as AWS documents under "Required permissions".
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from bleepstore.s3.router import Op

_OBJECT_ACTIONS = """AbortMultipartUpload BypassGovernanceRetention DeleteObject
DeleteObjectTagging DeleteObjectVersion DeleteObjectVersionTagging GetObject GetObjectAcl
GetObjectAttributes GetObjectLegalHold GetObjectRetention GetObjectTagging GetObjectTorrent
GetObjectVersion GetObjectVersionAcl GetObjectVersionAttributes GetObjectVersionForReplication
GetObjectVersionTagging GetObjectVersionTorrent InitiateReplication ListMultipartUploadParts
ObjectOwnerOverrideToBucketOwner PutObject PutObjectAcl PutObjectLegalHold PutObjectRetention
PutObjectTagging PutObjectVersionAcl PutObjectVersionTagging ReplicateDelete ReplicateObject
ReplicateTags RestoreObject"""
_BUCKET_ACTIONS = """CreateBucket DeleteBucket DeleteBucketOwnershipControls DeleteBucketPolicy
DeleteBucketWebsite GetAccelerateConfiguration GetAnalyticsConfiguration GetBucketAcl
GetBucketCORS GetBucketLocation GetBucketLogging GetBucketNotification
GetBucketObjectLockConfiguration GetBucketOwnershipControls GetBucketPolicy
GetBucketPolicyStatus GetBucketPublicAccessBlock GetBucketRequestPayment GetBucketTagging
GetBucketVersioning GetBucketWebsite GetEncryptionConfiguration
GetIntelligentTieringConfiguration GetInventoryConfiguration GetLifecycleConfiguration
GetMetricsConfiguration GetReplicationConfiguration ListBucket ListBucketMultipartUploads
ListBucketVersions PutAccelerateConfiguration PutAnalyticsConfiguration PutBucketAcl
PutBucketCORS PutBucketLogging PutBucketNotification PutBucketObjectLockConfiguration
PutBucketOwnershipControls PutBucketPolicy PutBucketPublicAccessBlock PutBucketRequestPayment
PutBucketTagging PutBucketVersioning PutBucketWebsite PutEncryptionConfiguration
PutIntelligentTieringConfiguration PutInventoryConfiguration PutLifecycleConfiguration
PutMetricsConfiguration PutReplicationConfiguration"""
_ACCOUNT_ACTIONS = """ListAllMyBuckets GetAccountPublicAccessBlock PutAccountPublicAccessBlock
CreateJob ListJobs ListAccessPoints ListStorageLensConfigurations"""
# Lowercase S3 action -> the kind of resource it applies to.
KNOWN_ACTIONS: dict[str, str] = {
    **{"s3:" + a.lower(): "account" for a in _ACCOUNT_ACTIONS.split()},
    **{"s3:" + a.lower(): "bucket" for a in _BUCKET_ACTIONS.split()},
    **{"s3:" + a.lower(): "object" for a in _OBJECT_ACTIONS.split()},
}
GRANT_HEADERS = ("x-amz-grant-full-control", "x-amz-grant-read", "x-amz-grant-write",
                 "x-amz-grant-read-acp", "x-amz-grant-write-acp")


_OBJECT_OPS: dict[Op, tuple[str, str | None]] = {
    Op.PUT_OBJECT: ("s3:putobject", None), Op.COPY_OBJECT: ("s3:putobject", None),
    Op.POST_OBJECT: ("s3:putobject", None),
    Op.GET_OBJECT: ("s3:getobject", "s3:getobjectversion"),
    Op.HEAD_OBJECT: ("s3:getobject", "s3:getobjectversion"),
    Op.DELETE_OBJECT: ("s3:deleteobject", "s3:deleteobjectversion"),
    Op.GET_OBJECT_ACL: ("s3:getobjectacl", "s3:getobjectversionacl"),
    Op.PUT_OBJECT_ACL: ("s3:putobjectacl", "s3:putobjectversionacl"),
    Op.GET_OBJECT_TAGGING: ("s3:getobjecttagging", "s3:getobjectversiontagging"),
    Op.PUT_OBJECT_TAGGING: ("s3:putobjecttagging", "s3:putobjectversiontagging"),
    Op.DELETE_OBJECT_TAGGING: ("s3:deleteobjecttagging", "s3:deleteobjectversiontagging"),
    Op.GET_OBJECT_ATTRIBUTES: ("s3:getobjectattributes", "s3:getobjectversionattributes"),
    Op.CREATE_MULTIPART_UPLOAD: ("s3:putobject", None),
    Op.UPLOAD_PART: ("s3:putobject", None), Op.UPLOAD_PART_COPY: ("s3:putobject", None),
    Op.COMPLETE_MULTIPART_UPLOAD: ("s3:putobject", None),
    Op.ABORT_MULTIPART_UPLOAD: ("s3:abortmultipartupload", None),
    Op.LIST_PARTS: ("s3:listmultipartuploadparts", None),
    Op.DELETE_OBJECTS: ("s3:deleteobject", None),
}
_BUCKET_OPS: dict[Op, str] = {
    Op.DELETE_BUCKET: "s3:deletebucket", Op.HEAD_BUCKET: "s3:listbucket",
    Op.GET_BUCKET_LOCATION: "s3:getbucketlocation", Op.GET_BUCKET_ACL: "s3:getbucketacl",
    Op.PUT_BUCKET_ACL: "s3:putbucketacl", Op.GET_BUCKET_VERSIONING: "s3:getbucketversioning",
    Op.PUT_BUCKET_VERSIONING: "s3:putbucketversioning",
    Op.LIST_OBJECT_VERSIONS: "s3:listbucketversions",
    Op.GET_BUCKET_TAGGING: "s3:getbuckettagging", Op.PUT_BUCKET_TAGGING: "s3:putbuckettagging",
    Op.DELETE_BUCKET_TAGGING: "s3:putbuckettagging",
    Op.GET_BUCKET_POLICY: "s3:getbucketpolicy", Op.PUT_BUCKET_POLICY: "s3:putbucketpolicy",
    Op.DELETE_BUCKET_POLICY: "s3:deletebucketpolicy",
    Op.GET_BUCKET_POLICY_STATUS: "s3:getbucketpolicystatus",
    Op.GET_PUBLIC_ACCESS_BLOCK: "s3:getbucketpublicaccessblock",
    Op.PUT_PUBLIC_ACCESS_BLOCK: "s3:putbucketpublicaccessblock",
    Op.DELETE_PUBLIC_ACCESS_BLOCK: "s3:putbucketpublicaccessblock",
    Op.GET_BUCKET_CORS: "s3:getbucketcors", Op.PUT_BUCKET_CORS: "s3:putbucketcors",
    Op.DELETE_BUCKET_CORS: "s3:putbucketcors",
    Op.GET_BUCKET_LIFECYCLE: "s3:getlifecycleconfiguration",
    Op.PUT_BUCKET_LIFECYCLE: "s3:putlifecycleconfiguration",
    Op.DELETE_BUCKET_LIFECYCLE: "s3:putlifecycleconfiguration",
    Op.LIST_OBJECTS: "s3:listbucket", Op.LIST_OBJECTS_V2: "s3:listbucket",
    Op.LIST_MULTIPART_UPLOADS: "s3:listbucketmultipartuploads",
}
ANY_KEY_OPS = frozenset({Op.DELETE_OBJECTS, Op.POST_OBJECT})
_ACL_WRITES = frozenset({Op.PUT_OBJECT, Op.COPY_OBJECT, Op.CREATE_MULTIPART_UPLOAD})


def is_object_op(op: Op) -> bool:
    return op in _OBJECT_OPS


def actions_for(op: Op, query: Mapping[str, str], header: Callable[[str], str | None],
                *, versioned: bool = False) -> tuple[str, ...]:
    """The IAM actions a request needs (AWS's "Required permissions" per operation); ()
    for the operations no bucket policy governs (ListBuckets, CreateBucket)."""
    if op in _BUCKET_OPS:
        return (_BUCKET_OPS[op],)
    if op not in _OBJECT_OPS:
        return ()
    plain, by_version = _OBJECT_OPS[op]
    if op is Op.DELETE_OBJECTS:  # NOTE: version ids are in the body: both when versioned
        return ("s3:deleteobject", "s3:deleteobjectversion") if versioned else (plain,)
    actions = [by_version if by_version and "versionId" in query else plain]
    if op in _ACL_WRITES:
        if header("x-amz-acl") is not None or any(
                header(h) is not None for h in GRANT_HEADERS):
            actions.append("s3:putobjectacl")
        if header("x-amz-tagging") is not None:
            actions.append("s3:putobjecttagging")
    return tuple(actions)
