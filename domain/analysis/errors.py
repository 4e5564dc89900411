"""The one way analysis reports an unusable file."""

from __future__ import annotations


class AnalysisFailed(Exception):
    """The file cannot be analysed; `reason` is safe to show to its owner.

    The reason is a short human sentence: never a path, a stack trace or the
    text of a third-party exception, because it ends up in `Model.analysisError`.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    def __reduce__(self):
        # Keeps the exception picklable across process boundaries.
        return (type(self), (self.reason,))
