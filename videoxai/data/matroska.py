"""Whether a Matroska or WebM file was cut inside its frames, by the sizes its elements declare.

A Matroska file is a tree of elements, each of which says how long it is: the Segment, which
holds the whole content, and in it the Clusters, which hold the frames, then the index (Cues)
and tags. A muxer writing a file it can seek in (FFmpeg, mkvmerge, HandBrake) fills in those
sizes; one writing a live stream (a browser's recording) says "unknown". A download cut short
decodes without an error to where it stops, and with B-frames it stops in decoding order: the
frames lost are not only the last ones shown (an H.264 clip cut inside its last Cluster lost
frame 46 of 48 but kept 47, whose end is the end its header declares, so nothing looked short).
Its Segment still says how long the file is, and the Cluster the cut falls in how long it was.
"""

from __future__ import annotations

from pathlib import Path

#: element IDs (with their length marker, as written): the Segment holds the file's content, a
#: Cluster a run of frames
SEGMENT, CLUSTER = 0x18538067, 0x1F43B675
#: the SeekHead lists where the Segment's other top-level elements begin (a Seek each: the
#: element's ID and its position), the Cues among them: the index, written after the Clusters
SEEK_HEAD, SEEK, SEEK_ID, SEEK_POSITION, CUES = 0x114D9B74, 0x4DBB, 0x53AB, 0x53AC, 0x1C53BB6B


def cut_inside_frames(path: Path) -> tuple[int, int] | None:
    """``(file size, the size its Segment declares)`` where the file ends inside one of its
    Clusters, i.e. inside frame data, ``None`` otherwise: a whole file, a Segment or Cluster of
    unknown size (a live recording), a cut after the last Cluster (in the index or the tags:
    every frame is there), a cut between two elements where the SeekHead does not place the
    index after them (the duration check tells), or bytes that are not Matroska. A cut between
    two Clusters, before where the index was to begin, ends inside the frames too."""
    with open(path, "rb") as f:
        size = f.seek(0, 2)
        pos = 0
        for _ in range(2):  # the EBML header, then the Segment
            element = _element(f, pos)
            if element is None:
                return None
            eid, data, length = element
            if eid == SEGMENT:
                break
            if length is None:
                return None
            pos = data + length
        else:
            return None
        if length is None or data + length <= size:
            return None
        declared, segment, pos = data + length, data, data
        cues = None  # where the index (Cues) begins, by the SeekHead
        while pos < size:
            element = _element(f, pos)
            if element is None:
                return None
            eid, data, length = element
            if length is None:
                return None
            if data + length > size:
                return (size, declared) if eid == CLUSTER else None
            if eid == SEEK_HEAD and cues is None:
                cues = _cues_at(f, data, length, segment)
            pos = data + length
        if pos == size and cues is not None and cues > size and eid == CLUSTER:
            # cut between two Clusters: the index, written after them, was to begin further on,
            # so Clusters are missing (the duration check lets a frame or two, or 2 %, pass)
            return size, declared
    return None


def _cues_at(f, pos: int, length: int, segment: int) -> int | None:
    """Where the Cues begin (a position in the file), by the SeekHead whose data lies at ``pos``
    (``length`` bytes; its positions count from the Segment's data at ``segment``); ``None``
    where it does not say."""
    end = pos + length
    while pos < end:
        seek = _element(f, pos)
        if seek is None or seek[2] is None:
            return None
        eid, data, size = seek
        if eid == SEEK:
            target, at, inner = None, None, data
            while inner < data + size:
                field = _element(f, inner)
                if field is None or field[2] is None:
                    return None
                f.seek(field[1])
                value = f.read(field[2])
                if field[0] == SEEK_ID:
                    target = int.from_bytes(value, "big")
                elif field[0] == SEEK_POSITION:
                    at = int.from_bytes(value, "big")
                inner = field[1] + field[2]
            if target == CUES and at is not None:
                return segment + at
        pos = data + size
    return None


def _element(f, pos: int) -> tuple[int, int, int | None] | None:
    """The element at ``pos``: ``(its ID, where its data starts, its length)``, the length ``None``
    where it is "unknown"; ``None`` where the bytes there are cut or not an element header."""
    f.seek(pos)
    head = f.read(12)
    id_width = _width(head, 0)
    if id_width is None or id_width > 4:
        return None
    size_width = _width(head, id_width)
    if size_width is None:
        return None
    marker = 1 << (7 * size_width)  # the length's leading bit, which says its width
    length = int.from_bytes(head[id_width:id_width + size_width], "big") & (marker - 1)
    return (int.from_bytes(head[:id_width], "big"), pos + id_width + size_width,
            None if length == marker - 1 else length)


def _width(head: bytes, i: int) -> int | None:
    """The width of the EBML variable-length number at ``head[i]``: one more than the leading
    zero bits of its first byte (1 to 8); ``None`` where it is cut or begins with a zero byte."""
    if i >= len(head) or head[i] == 0:
        return None
    width = 9 - head[i].bit_length()
    return width if i + width <= len(head) else None
