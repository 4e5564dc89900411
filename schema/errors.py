"""GraphQL errors with `extensions.code`, described by web/responses.py.

Domain errors keep their message and code. Errors from GraphQL itself (syntax,
unknown fields, wrong argument types) become BAD_USER_INPUT. Anything else is
a bug or an outage: the client gets INTERNAL and a request id, the log gets the
trace, and no stack trace, SQL or path ever reaches the client.
"""

from __future__ import annotations

from graphql import GraphQLError
from strawberry.extensions import MaskErrors

from domain.errors import DomainError
from web.responses import describe


class ErrorCodes(MaskErrors):
    def __init__(self, *, hide_suggestions: bool = False) -> None:
        super().__init__()
        # In production "Did you mean ...?" hints would describe the schema to strangers.
        self.hide_suggestions = hide_suggestions

    def _process_errors(self, errors: list[GraphQLError]) -> list[GraphQLError]:
        return [self._with_code(error) for error in errors]

    def _with_code(self, error: GraphQLError) -> GraphQLError:
        original = error.original_error
        while isinstance(original, GraphQLError) and original.original_error is not None:
            original = original.original_error
        if isinstance(original, DomainError):
            self._retry_after(original)
        elif original is None or error.path is None:
            # Raised by GraphQL itself before execution (syntax, validation, variable
            # coercion): the message describes the client's own document and values.
            return self._rebuild_with_id(
                error, self._client_message(error), {"code": "BAD_USER_INPUT"}
            )
        described = describe(original, self._request_id())
        return self._rebuild_with_id(error, described.message, described.extensions)

    def _rebuild_with_id(self, error: GraphQLError, message: str, extensions: dict) -> GraphQLError:
        return self._rebuild(error, message, {**extensions, "requestId": self._request_id()})

    def _retry_after(self, error: DomainError) -> None:
        """RATE_LIMITED answers carry a Retry-After header, as HTTP clients expect."""
        seconds = error.extensions.get("retryAfter")
        response = getattr(self.execution_context.context, "response", None)
        if seconds is not None and response is not None:
            response.headers["Retry-After"] = str(seconds)

    def _client_message(self, error: GraphQLError) -> str:
        message = error.message
        if self.hide_suggestions and "Did you mean" in message:
            message = message.split(" Did you mean", 1)[0]
        return message

    def _request_id(self) -> str:
        context = self.execution_context.context
        return getattr(context, "request_id", "unknown")

    @staticmethod
    def _rebuild(error: GraphQLError, message: str, extensions: dict) -> GraphQLError:
        return GraphQLError(
            message=message,
            nodes=error.nodes,
            source=error.source,
            positions=error.positions,
            path=error.path,
            original_error=None,
            extensions=extensions,
        )
