"""provision: a declarative batch provisioner for Microsoft Teams chats."""

__version__ = "0.1.0"
