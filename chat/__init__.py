"""chat-api: the customer-support chat service."""

__version__ = "0.1.0"
