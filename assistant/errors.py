"""Errors the assistant raises on purpose. Each message says what the user can do about it.

`status` is the HTTP status the API maps the error to; the UI shows the message in a gr.Error.
"""


class AssistantError(Exception):
    status = 500
    code = "server_error"


class ModelNotFoundError(AssistantError):
    """The configured model path does not exist or cannot be loaded."""

    code = "model_not_found"


class InputTooLongError(AssistantError):
    status = 400
    code = "context_length_exceeded"


class InvalidRequestError(AssistantError):
    status = 400
    code = "invalid_request_error"


class QueueFullError(AssistantError):
    status = 429
    code = "queue_full"

    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after  # sent as the Retry-After header


class RateLimitedError(AssistantError):
    status = 429
    code = "rate_limited"

    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class NotReadyError(AssistantError):
    status = 503
    code = "not_ready"


class RequestCancelledError(AssistantError):
    status = 499
    code = "cancelled"


class AdapterRejectedError(AssistantError):
    """An adapter failed validation; the live model was not touched."""

    status = 422
    code = "adapter_rejected"
