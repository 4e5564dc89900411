"""The one way the preview code reports a model it cannot show."""

from __future__ import annotations


class PreviewError(Exception):
    """No preview for this model; `reason` is safe to show to its owner.

    A short human sentence, never a path, a stack trace or a third-party message:
    the job that wires this in stores it next to a `null` preview.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    def __reduce__(self):
        # Picklable, so it can cross the boundary of the isolated child process.
        return (type(self), (self.reason,))
