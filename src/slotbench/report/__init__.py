"""The ``report`` stage: one HTML page per dataset with its table, videos, slots, curves and provenance."""

from .build import build_report

__all__ = ["build_report"]
