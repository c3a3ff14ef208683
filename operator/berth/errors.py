"""The small set of errors berth raises, and what each means for a reconcile pass.

The handlers module is the only place that maps these onto Kopf: a
`StalledError` becomes a Stalled condition plus an Event and is retried by the
periodic resync, never in a hot loop. Anything else is unexpected and left to
Kopf's backoff.
"""


class BerthError(Exception):
    """Base class of berth's own errors."""


class StalledError(BerthError):
    """A human must act: invalid spec, missing Secret, unsupported option.

    `reason` is one of the CamelCase constants in `berth.conditions`; `message`
    is shown in the condition and the Event, so it must never contain a secret.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
