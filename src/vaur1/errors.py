"""Errors a user can act on. The CLI prints them as one line, without a traceback."""


class VaurError(Exception):
    """Base class for errors caused by input or configuration, not by a bug."""


class ConfigError(VaurError):
    """A config file or override names an unknown key or holds a value of the wrong type."""


class BenchFormatError(VaurError):
    """A benchmark file does not follow the VAU-Bench schema (raised in strict mode)."""


class VideoError(VaurError):
    """A video cannot be read; the message names the file and the reason."""
