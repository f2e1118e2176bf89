"""One exception hierarchy for the whole workbench.

Every error names the input that caused it and, where there is one, says what to do next.

>>> from workbench.errors import InvalidMoleculeError
>>> str(InvalidMoleculeError("C1CC", "unclosed ring"))
"invalid molecule 'C1CC': unclosed ring"
"""

from __future__ import annotations

__all__ = [
    "WorkbenchError",
    "InvalidMoleculeError",
    "ValidationError",
    "SpecError",
    "CheckpointError",
    "SimulationError",
    "UnsupportedElementError",
    "ConformerError",
    "DataUnavailableError",
    "JobFileError",
    "StoreError",
    "RunHealthError",
]


def _short(value: object, limit: int = 80) -> str:
    text = str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class WorkbenchError(Exception):
    """Base class of every error the workbench raises on purpose."""


class InvalidMoleculeError(WorkbenchError, ValueError):
    """A molecule could not be read or is chemically impossible.

    ``source`` is the offending input (a SMILES, a file name, a record number); ``reason`` says why.
    """

    def __init__(self, source: object, reason: str, *, hint: str | None = None):
        self.source = source
        self.reason = reason
        self.hint = hint
        message = f"invalid molecule {_short(source)!r}: {reason}"
        if hint:
            message += f" ({hint})"
        super().__init__(message)


class ValidationError(WorkbenchError, ValueError):
    """A molecule failed validation where a valid one was required; carries the report."""

    def __init__(self, source: object, report: object):
        self.source = source
        self.report = report
        super().__init__(f"molecule {_short(source)!r} failed validation: {report}")


class SpecError(WorkbenchError, ValueError):
    """A design spec (or a rule set) is malformed; ``field`` names the offending entry."""

    def __init__(self, field: str, reason: str):
        self.field = field
        self.reason = reason
        super().__init__(f"spec field {field!r}: {reason}")


class CheckpointError(WorkbenchError):
    """A model checkpoint is missing, corrupt, or does not match its config."""

    def __init__(self, path: object, reason: str):
        self.path = path
        self.reason = reason
        super().__init__(f"checkpoint {str(path)!r}: {reason}")


class SimulationError(WorkbenchError, RuntimeError):
    """A simulation could not start, or stopped because it became unphysical."""


class UnsupportedElementError(WorkbenchError, ValueError):
    """A molecule contains an element a model or rule set does not support."""

    def __init__(self, source: object, elements: list[str] | set[str], supported: list[str] | set[str]):
        self.source = source
        self.elements = sorted(elements)
        self.supported = sorted(supported)
        super().__init__(
            f"{_short(source)!r} contains element(s) {', '.join(self.elements)} that are not supported; "
            f"supported elements are {', '.join(self.supported)}"
        )


class ConformerError(WorkbenchError, RuntimeError):
    """3D embedding failed for a molecule."""

    def __init__(self, source: object, reason: str):
        self.source = source
        self.reason = reason
        super().__init__(f"could not embed {_short(source)!r} in 3D: {reason}")


class DataUnavailableError(WorkbenchError, ImportError):
    """A bundled data set is missing because the package that ships it is not installed."""

    def __init__(self, name: str, install: str):
        self.name = name
        self.install = install
        super().__init__(f"data set {name!r} is not available; install it with: {install}")


class JobFileError(WorkbenchError, ValueError):
    """A job file is malformed; the message names the field and, where known, the line."""


class StoreError(WorkbenchError):
    """The result store cannot be opened or written (read-only path, disk full, newer schema...)."""

    def __init__(self, path: object, reason: str):
        self.path = path
        self.reason = reason
        super().__init__(f"result store {str(path)!r}: {reason}")


class RunHealthError(WorkbenchError, RuntimeError):
    """A campaign stopped because a health check failed (validity or uniqueness collapsed)."""
