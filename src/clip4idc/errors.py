"""Errors that mean bad input (a missing or malformed dataset, an unsafe archive, a failed download,
a file that is not the checkpoint a command takes, a malformed list of pairs):
`clip4idc` prints their message, not a traceback. They live apart from the code that raises them so
that the command line can catch them without importing that code.
"""
from __future__ import annotations


class DownloadError(RuntimeError):
    """A file could not be fetched; the message says what to fetch by hand and where to put it."""


class CorruptArchiveError(DownloadError):
    """An archive cannot be read to its end (truncated, damaged): a download to repeat, not a format to fix."""


class UnsafeArchiveError(ValueError):
    """An archive has members that would be written outside the target folder (or are not plain data)."""


class ArchiveLimitError(UnsafeArchiveError):
    """An archive unpacks to more than params `download` allows (in all, or as a multiple of its own size):
    a zip bomb, or a limit set too low; the message names the param to raise."""


class ImageDecodeError(ValueError):
    """One or more images of the dataset could not be read."""


class DatasetFormatError(ValueError):
    """A dataset root does not hold what its format promises (every reader's errors derive from it)."""


class CheckpointError(ValueError):
    """A file is not the checkpoint a command takes: unreadable, or of another kind (its `kind` says which)."""


class PairListError(ValueError):
    """A list of image pairs to caption (`clip4idc caption --pairs`) is malformed."""


class CheckpointConversionError(ValueError):
    """A checkpoint from elsewhere (the authors' release) cannot become one of ours: its message names every
    offending key (unknown, missing, unconvertible, wrong shape, broken tie) or setting, all at once."""


class OutputError(RuntimeError):
    """Outputs that belong together could not be written (io.atomic_paths): none of them was replaced."""


class TrainingDivergedError(RuntimeError):
    """Training met a non-finite loss or gradient norm (most often a learning rate too large). It stops before that
    step's update, so the weights are never poisoned and nothing is written as if the stage had finished."""


class WeightsUnavailableError(RuntimeError):
    """Published CLIP weights (`model.pretrained: openai`) cannot be had on this machine (offline, not in
    the cache); the message says how to bring them here."""
