"""The one S3 error hierarchy (L0, stdlib only).

Every S3 error code is a class carrying its HTTP status and standard message.
Helpers raise these anywhere; ``bleepstore.web.errors`` renders them in one place.
Extra context elements (``BucketName``, ``Key`` ...) are kept in insertion order,
because s3-api.md §5.1 pins the element order of the error body.
"""

from __future__ import annotations

from typing import ClassVar


class S3Error(Exception):
    """Base class: ``code``/``status``/``message`` are class attributes."""

    code: ClassVar[str] = "InternalError"
    status: ClassVar[int] = 500
    message: ClassVar[str] = "We encountered an internal error. Please try again."

    def __init__(self, message: str | None = None, /, **extra: object) -> None:
        self.msg = message or self.message
        # Keyword names are S3 element names; values are rendered with str().
        self.extra: dict[str, str] = {k: str(v) for k, v in extra.items() if v is not None}
        self.headers: dict[str, str] = {}
        super().__init__(f"{self.code}: {self.msg}")

    def with_header(self, name: str, value: str) -> S3Error:
        self.headers[name] = value
        return self


class AccessDenied(S3Error):
    code, status, message = "AccessDenied", 403, "Access Denied"


class AccessForbidden(S3Error):
    """A CORS preflight (``OPTIONS``) that no CORS rule of the bucket allows."""

    code, status = "AccessForbidden", 403
    message = "CORSResponse: CORS is not enabled for this bucket."


class AuthorizationHeaderMalformed(S3Error):
    code, status = "AuthorizationHeaderMalformed", 400
    message = "The authorization header is malformed."


class AuthorizationQueryParametersError(S3Error):
    code, status = "AuthorizationQueryParametersError", 400
    message = "Error parsing the X-Amz-Credential parameter."


class BadDigest(S3Error):
    code, status = "BadDigest", 400
    message = "The Content-MD5 you specified did not match what we received."


class ChecksumMismatch(BadDigest):
    """BadDigest for a flexible ``x-amz-checksum-<alg>`` value that does not match the
    payload (a separate class: on CompleteMultipartUpload that header names the object's
    checksum, not the body's, so Complete checks it against the object instead)."""


class BadRequest(S3Error):
    """A CORS preflight (``OPTIONS``) without an ``Origin`` or with a bad request method;
    also a tag set over the object limit."""

    code, status = "BadRequest", 400
    message = "Insufficient information. Origin request header needed."


class BucketAlreadyExists(S3Error):
    code, status = "BucketAlreadyExists", 409
    message = (
        "The requested bucket name is not available. The bucket namespace is shared by all "
        "users of the system. Please select a different name and try again."
    )


class BucketAlreadyOwnedByYou(S3Error):
    code, status = "BucketAlreadyOwnedByYou", 409
    message = (
        "Your previous request to create the named bucket succeeded and you already own it."
    )


class BucketNotEmpty(S3Error):
    code, status, message = "BucketNotEmpty", 409, "The bucket you tried to delete is not empty"


class EntityTooLarge(S3Error):
    code, status = "EntityTooLarge", 400
    message = "Your proposed upload exceeds the maximum allowed size"


class EntityTooSmall(S3Error):
    code, status = "EntityTooSmall", 400
    message = "Your proposed upload is smaller than the minimum allowed size"


class IllegalLocationConstraintException(S3Error):
    code, status = "IllegalLocationConstraintException", 400
    message = (
        "The location constraint is incompatible for the region specific endpoint "
        "this request was sent to."
    )


class RequestTimeout(S3Error):
    """The request body stalled for ``server.body_read_timeout_s`` (the connection closes)."""

    code, status = "RequestTimeout", 400
    message = ("Your socket connection to the server was not read from or written to within "
               "the timeout period. Idle connections will be closed.")


class IncompleteBody(S3Error):
    code, status = "IncompleteBody", 400
    message = "You did not provide the number of bytes specified by the Content-Length HTTP header."


class InternalError(S3Error):
    pass


class InvalidAccessKeyId(S3Error):
    code, status = "InvalidAccessKeyId", 403
    message = "The AWS Access Key Id you provided does not exist in our records."


class InvalidArgument(S3Error):
    code, status, message = "InvalidArgument", 400, "Invalid Argument"


class InvalidBucketName(S3Error):
    code, status, message = "InvalidBucketName", 400, "The specified bucket is not valid."


class InvalidDigest(S3Error):
    code, status, message = "InvalidDigest", 400, "The Content-MD5 you specified is not valid."


class InvalidPart(S3Error):
    code, status = "InvalidPart", 400
    message = (
        "One or more of the specified parts could not be found. The part may not have been "
        "uploaded, or the specified entity tag may not match the part's entity tag."
    )


class InvalidPartOrder(S3Error):
    code, status = "InvalidPartOrder", 400
    message = (
        "The list of parts was not in ascending order. Parts must be ordered by part number."
    )


class InvalidPartNumber(S3Error):
    """GetObject/HeadObject ``partNumber`` past the object's parts (with
    ``PartNumberRequested`` and ``ActualPartCount``, as S3 sends)."""

    code, status = "InvalidPartNumber", 416
    message = "The requested partnumber is not satisfiable"


class InvalidRange(S3Error):
    code, status, message = "InvalidRange", 416, "The requested range is not satisfiable"


class InvalidURI(S3Error):
    """The path (bucket or key) is not UTF-8 once percent-decoded."""

    code, status, message = "InvalidURI", 400, "Couldn't parse the specified URI."


class InvalidRequest(S3Error):
    code, status, message = "InvalidRequest", 400, "Invalid Request"


class InvalidStorageClass(S3Error):
    code, status = "InvalidStorageClass", 400
    message = "The storage class you specified is not valid"


class KeyTooLongError(S3Error):
    code, status, message = "KeyTooLongError", 400, "Your key is too long"


class MalformedACLError(S3Error):
    code, status = "MalformedACLError", 400
    message = (
        "The XML you provided was not well-formed or did not validate against our "
        "published schema"
    )


class MalformedTrailerError(S3Error):
    code, status = "MalformedTrailerError", 400
    message = (
        "The request contained trailing data that was not well-formed or did not conform "
        "to our published schema."
    )


class MalformedXML(S3Error):
    code, status = "MalformedXML", 400
    message = (
        "The XML you provided was not well-formed or did not validate against our "
        "published schema"
    )


class MaxMessageLengthExceeded(S3Error):
    code, status, message = "MaxMessageLengthExceeded", 400, "Your request was too big."


class MetadataTooLarge(S3Error):
    code, status = "MetadataTooLarge", 400
    message = "Your metadata headers exceed the maximum allowed metadata size."


class MethodNotAllowed(S3Error):
    code, status = "MethodNotAllowed", 405
    message = "The specified method is not allowed against this resource."


class MissingContentLength(S3Error):
    code, status = "MissingContentLength", 411
    message = "You must provide the Content-Length HTTP header."


class MissingRequestBodyError(S3Error):
    code, status, message = "MissingRequestBodyError", 400, "Request Body is empty."


class MissingSecurityHeader(S3Error):
    code, status = "MissingSecurityHeader", 400
    message = "Your request was missing a required header."


class NoSuchBucket(S3Error):
    code, status, message = "NoSuchBucket", 404, "The specified bucket does not exist"


class NoSuchKey(S3Error):
    code, status, message = "NoSuchKey", 404, "The specified key does not exist."


class NoSuchUpload(S3Error):
    code, status = "NoSuchUpload", 404
    message = (
        "The specified upload does not exist. The upload ID may be invalid, or the upload "
        "may have been aborted or completed."
    )


class NoSuchVersion(S3Error):
    code, status = "NoSuchVersion", 404
    message = "The specified version does not exist."


class NotImplemented_(S3Error):
    code, status = "NotImplemented", 501
    message = "A header you provided implies functionality that is not implemented."


class PreconditionFailed(S3Error):
    code, status = "PreconditionFailed", 412
    message = "At least one of the pre-conditions you specified did not hold"


class RequestTimeTooSkewed(S3Error):
    code, status = "RequestTimeTooSkewed", 403
    message = "The difference between the request time and the current time is too large."


class ServiceUnavailable(S3Error):
    code, status = "ServiceUnavailable", 503
    message = "Service is unable to handle request."


class OutcomeUnknown(ServiceUnavailable):
    """Cluster mode: a write whose Raft command timed out or lost its leader. It may still
    commit, so what it staged must not be deleted at once (cluster.md §2)."""


class InsufficientStorage(ServiceUnavailable):
    """A write refused because a disk (blobs or metadata) is full: same wire code, so a
    client retries it later; nothing of the refused write is kept."""

    message = "Insufficient storage space to complete this request."


class SignatureDoesNotMatch(S3Error):
    code, status = "SignatureDoesNotMatch", 403
    message = (
        "The request signature we calculated does not match the signature you provided. "
        "Check your key and signing method."
    )


class SlowDown(S3Error):
    code, status, message = "SlowDown", 503, "Please reduce your request rate."


class TooManyBuckets(S3Error):
    code, status = "TooManyBuckets", 400
    message = "You have attempted to create more buckets than allowed"


class UnexpectedContent(S3Error):
    code, status, message = "UnexpectedContent", 400, "This request does not support content"


class UnresolvableGrantByEmailAddress(S3Error):
    code, status = "UnresolvableGrantByEmailAddress", 400
    message = "The e-mail address you provided does not match any account on record."


class XAmzContentSHA256Mismatch(S3Error):
    code, status = "XAmzContentSHA256Mismatch", 400
    message = "The provided 'x-amz-content-sha256' header does not match what was computed."


class MalformedPOSTRequest(S3Error):
    code, status = "MalformedPOSTRequest", 400
    message = "The body of your POST request is not well-formed multipart/form-data."


class MaxPostPreDataLengthExceeded(S3Error):
    code, status = "MaxPostPreDataLengthExceeded", 400
    message = "Your POST request fields preceeding the upload file was too large."


class MalformedPolicy(S3Error):
    code, status, message = "MalformedPolicy", 400, "Policy has invalid resource"


class NoSuchBucketPolicy(S3Error):
    code, status, message = "NoSuchBucketPolicy", 404, "The bucket policy does not exist"


class NoSuchCORSConfiguration(S3Error):
    code, status = "NoSuchCORSConfiguration", 404
    message = "The CORS configuration does not exist"


class NoSuchLifecycleConfiguration(S3Error):
    code, status = "NoSuchLifecycleConfiguration", 404
    message = "The lifecycle configuration does not exist"


class NoSuchPublicAccessBlockConfiguration(S3Error):
    code, status = "NoSuchPublicAccessBlockConfiguration", 404
    message = "The public access block configuration was not found"


class NoSuchTagSet(S3Error):
    code, status, message = "NoSuchTagSet", 404, "The TagSet does not exist"


class InvalidTag(S3Error):
    code, status, message = "InvalidTag", 400, "The TagSet is not valid."


class InvalidPolicyDocument(S3Error):
    code, status = "InvalidPolicyDocument", 400
    message = ("The content of the form does not meet the conditions specified in the "
               "policy document.")


# NOTE: ``NotImplemented`` is a Python builtin constant; the class keeps a trailing
# underscore in code and the wire code "NotImplemented".
S3NotImplemented = NotImplemented_

__all__ = [name for name, obj in list(globals().items())
           if isinstance(obj, type) and issubclass(obj, S3Error)]


class WriteTaskTimeout(S3Error):
    """[BS] events.md §5.4: a sync-mode write not finished within queue.sync_timeout_ms."""

    code, status = "WriteTaskTimeout", 504
    message = ("The write was accepted but did not complete within the timeout; it may "
               "still complete.")


def error_class(code: str) -> type[S3Error]:
    """The class of an S3 error code (a stored task error is raised again by its code)."""
    pending: list[type[S3Error]] = [S3Error]
    while pending:
        cls = pending.pop()
        if cls.code == code and cls is not S3Error:
            return cls
        pending.extend(cls.__subclasses__())
    return InternalError
