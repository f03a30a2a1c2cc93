"""The package's error hierarchy: one base, a few specific errors callers act on."""


class HobotnicaError(Exception):
    """Base of every error Hobotnica raises on purpose."""


class ConfigError(HobotnicaError):
    """The configuration is invalid; the message names the offending key."""


class CheckoutError(HobotnicaError):
    """The commit could not be fetched or checked out; the build ends `error`."""


class StoreUnavailable(HobotnicaError):
    """The store cannot write now (a full disk, an I/O error, a lock held too long); the
    transaction changed nothing. Intake answers 503; a build's result is written again later."""
