"""The package's error hierarchy: one base, a few specific errors callers act on."""


class HobotnicaError(Exception):
    """Base of every error Hobotnica raises on purpose."""


class ConfigError(HobotnicaError):
    """The configuration is invalid; the message names the offending key."""


class CheckoutError(HobotnicaError):
    """The commit could not be fetched or checked out; the build ends `error`."""


# What git prints when the server refuses its credentials: a 401 (git then asks for a user name,
# which it may not), a 403, or GitHub's "not found" for a private repository out of reach.
_REFUSED = (
    "could not read username",
    "authentication failed",
    "returned error: 401",
    "returned error: 403",
    "repository not found",
)


def refuses_credentials(git_error: str) -> bool:
    lowered = git_error.lower()
    return any(marker in lowered for marker in _REFUSED)


class StoreUnavailable(HobotnicaError):
    """The store cannot write now (a full disk, an I/O error, a lock held too long); the
    transaction changed nothing. Intake answers 503; a build's result is written again later."""
