"""The one exception tree of aroutd.

Every error aroutd answers by itself is an :class:`HTTPError`: it knows its HTTP
status, the SPEC §13 ``type`` and the message a client may see. The message is
public by construction: never put a credential, a path on disk or a foreign
exception's text into it.

    Exception
    ├── ConfigError            config / key table problems, each "file:line: what"
    └── HTTPError              status + type + public message (+ optional code, headers)
        ├── BadRequest               400 invalid_request_error
        ├── Unauthorized             401 authentication_error
        ├── PaymentRequired          402 payment_required
        ├── Forbidden                403 forbidden_error
        ├── NotFound                 404 not_found_error
        ├── MethodNotAllowed         405 invalid_request_error
        ├── Conflict                 409 invalid_request_error
        ├── RequestTimeout           408 invalid_request_error
        ├── PayloadTooLarge          413 invalid_request_error
        ├── HeaderTooLarge           431 invalid_request_error
        ├── TooManyRequests          429 rate_limit_error
        ├── InternalError            500 server_error (a fault caught by the barrier)
        ├── NotImplementedCoding     501 server_error
        ├── BadGateway               502 server_error
        ├── ServiceUnavailable       503 server_error
        └── GatewayTimeout           504 server_error
"""

from __future__ import annotations

import json
from collections.abc import Sequence

__all__ = [
    "BadGateway",
    "BadRequest",
    "ConfigError",
    "Conflict",
    "Forbidden",
    "GatewayTimeout",
    "HTTPError",
    "HeaderTooLarge",
    "InternalError",
    "MethodNotAllowed",
    "NotFound",
    "NotImplementedCoding",
    "PayloadTooLarge",
    "PaymentRequired",
    "RequestTimeout",
    "ServiceUnavailable",
    "TooManyRequests",
    "Unauthorized",
    "error_body",
]


def error_body(message: str, type_: str, code: str | None = None) -> bytes:
    """The SPEC §13 envelope, as compact JSON bytes."""
    err: dict[str, str] = {"message": message, "type": type_}
    if code is not None:
        err["code"] = code
    return json.dumps({"error": err}, separators=(",", ":")).encode()


class ConfigError(Exception):
    """A config file or key table that cannot be used.

    ``problems`` holds one "file:line: message" string per problem; str() joins them.
    """

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(self.problems))


class HTTPError(Exception):
    """An error answered to the client as JSON with ``status``."""

    status: int = 500
    type: str = "server_error"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        headers: Sequence[tuple[str, str]] = (),
        close: bool = False,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.headers = tuple(headers)
        # close: the connection cannot be trusted any more (framing errors, limits).
        self.close = close

    def body(self) -> bytes:
        return error_body(self.message, self.type, self.code)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.status}, {self.message!r})"


class BadRequest(HTTPError):
    status = 400
    type = "invalid_request_error"


class Unauthorized(HTTPError):
    status = 401
    type = "authentication_error"


class PaymentRequired(HTTPError):
    status = 402
    type = "payment_required"


class Forbidden(HTTPError):
    status = 403
    type = "forbidden_error"


class NotFound(HTTPError):
    status = 404
    type = "not_found_error"


class MethodNotAllowed(HTTPError):
    status = 405
    type = "invalid_request_error"


class RequestTimeout(HTTPError):
    status = 408
    type = "invalid_request_error"


class Conflict(HTTPError):
    status = 409
    type = "invalid_request_error"


class PayloadTooLarge(HTTPError):
    status = 413
    type = "invalid_request_error"


class TooManyRequests(HTTPError):
    status = 429
    type = "rate_limit_error"


class HeaderTooLarge(HTTPError):
    status = 431
    type = "invalid_request_error"


class InternalError(HTTPError):
    status = 500
    type = "server_error"


class NotImplementedCoding(HTTPError):
    status = 501
    type = "server_error"


class BadGateway(HTTPError):
    status = 502
    type = "server_error"


class ServiceUnavailable(HTTPError):
    status = 503
    type = "server_error"


class GatewayTimeout(HTTPError):
    status = 504
    type = "server_error"
