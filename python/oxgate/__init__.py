"""oxgate: a fast, strict WSGI HTTP server written in Rust."""

from oxgate._oxgate import FileWrapper, __version__

__all__ = ["FileWrapper", "__version__"]
