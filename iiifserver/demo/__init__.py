"""The bundled demo image collection (an offline tool; see ``build``)."""

from iiifserver.demo.build import build_demo

__all__ = ["build_demo"]
