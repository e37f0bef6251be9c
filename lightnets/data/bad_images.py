"""What a long run does about images it cannot decode: ``skip`` them (counted, named in the log and the card)
until they are more than 1% of the images read so far, after at least 100 reads, or ``fail`` at the first.

>>> log = BadImageLog("skip")
>>> log.record(reads=99, bad=[BadImage("a.jpg", "OSError: truncated")])
>>> log.count, log.reads
(1, 99)
>>> log.record(reads=100, bad=[BadImage("b.jpg", "OSError: truncated")])  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
lightnets.data.bad_images.BadImageError: 2 of the 199 images read so far could not be decoded ...
"""
from __future__ import annotations

from typing import Iterable

from .files import CorruptDataError
from .image_files import BadImage

__all__ = ["BAD_IMAGE_MODES", "BadImageError", "BadImageLog"]

BAD_IMAGE_MODES = ("skip", "fail")
TOLERATED_SHARE = 0.01  # of the images read so far, once MIN_READS have been read
MIN_READS = 100
LISTED = 20  # names in an error message (the card keeps up to RECORDED)
RECORDED = 100


class BadImageError(CorruptDataError):
    """Undecodable images stopped the run (``--on-bad-image fail``, or more than ``skip`` tolerates)."""


def _names(bad: Iterable[BadImage], limit: int) -> str:
    bad = list(bad)
    listed = ", ".join(f"{image.path} ({image.reason})" for image in bad[:limit])
    return listed + (f" and {len(bad) - limit} more" if len(bad) > limit else "")


class BadImageLog:
    """The undecodable images of a run so far, against the number of images read, and the ``mode``'s verdict."""

    def __init__(self, mode: str = "skip") -> None:
        if mode not in BAD_IMAGE_MODES:
            raise ValueError(f"--on-bad-image must be one of {', '.join(BAD_IMAGE_MODES)}, got {mode!r}")
        self.mode, self.reads, self.bad = mode, 0, []  # type: str, int, list[BadImage]

    @property
    def count(self) -> int:
        return len(self.bad)

    def record(self, reads: int, bad: Iterable[BadImage]) -> None:
        """Count ``reads`` more images read, ``bad`` of them undecodable; raise :class:`BadImageError` when the
        mode says the run must stop."""
        bad = list(bad)
        self.reads += reads
        self.bad += bad
        if bad and self.mode == "fail":
            raise BadImageError(f"cannot decode {_names(bad, LISTED)} (--on-bad-image fail; 'skip' drops such images)")
        if self.reads >= MIN_READS and self.count > TOLERATED_SHARE * self.reads:
            raise BadImageError(
                f"{self.count} of the {self.reads} images read so far could not be decoded (over the "
                f"{TOLERATED_SHARE:.0%} that --on-bad-image skip tolerates): {_names(self.bad, LISTED)}")

    def summary(self) -> dict[str, object]:
        """For the card: how many were skipped, of how many read, and the first :data:`RECORDED` of them."""
        return {"skipped": self.count, "read": self.reads,
                "files": [f"{image.path} ({image.reason})" for image in self.bad[:RECORDED]]}
