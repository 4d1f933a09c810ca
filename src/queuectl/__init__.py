"""queuectl: a background job queue you drive from the shell."""

__version__ = "0.1.0"
