"""A decoded frame's side data (display matrix, mastering display, …) across PyAV releases."""

from __future__ import annotations

from collections.abc import Mapping


def side_data(frame, kind: str) -> bytes | None:
    """The bytes of ``frame``'s side data whose type's name contains ``kind`` (``"DISPLAYMATRIX"``,
    ``"MASTERING_DISPLAY"``), or ``None`` (none, or a PyAV that gives no side data).

    PyAV 18 made ``frame.side_data`` a mapping from each type to its data (iterating it gives
    the types); earlier releases iterate the data themselves. Read one way only, a mirrored
    clip's display matrix was missed with PyAV 18 and the clip read upside down.
    """
    try:
        found = frame.side_data
        entries = list(found.values() if isinstance(found, Mapping) else found)
    except (AttributeError, TypeError, ValueError, KeyError):
        return None
    for data in entries:
        try:  # one entry PyAV cannot describe (a type it does not know) does not hide the others
            if kind in str(getattr(data, "type", "")).upper():
                return memoryview(data).tobytes()
        except (AttributeError, TypeError, ValueError, KeyError):
            continue
    return None
