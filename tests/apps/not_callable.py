"""An app module whose `application` is not callable: oxgate must refuse to start."""

application = 42
