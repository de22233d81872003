"""HDR video (HDR10's PQ, phones' HLG) shown in SDR, as players tone-map it.

Phones record HDR by default (an iPhone's HLG in 10-bit HEVC, Android's HDR10), and HDR
streams and films are PQ. Their samples are not the brightness an SDR picture's are: converted
to RGB as if they were, a PQ clip came out grey and flat (its reference white at 58 % of full
scale) and an HLG one desaturated (BT.2020 primaries read as BT.709's) — not what a model
trained on SDR video saw, nor what a player shows. A player maps them to the display: signal
to light (the PQ or HLG transfer of ITU-R BT.2100), the highlights above the display's peak
compressed (the BT.2390 EETF), BT.2020 primaries to BT.709's, and light back to an SDR signal
(BT.1886's gamma 2.4). :class:`ToneMap` does the same, the SDR display's peak standing for the
HDR reference white of 203 cd/m² (ITU-R BT.2408), as libplacebo (mpv, VLC) takes it: light up
to about 90 cd/m² is shown as it is, and the roll-off above brings the stream's peak to full
white — reference white itself comes out at 230 of 255 from a 1000 cd/m² master, 210 from a 4000
cd/m² one. A PQ stream's peak (:func:`stream_peak`) is the brightest its pixels get (its content
light level, MaxCLL) where it says so, no more than its mastering display's peak, as Kodi takes
it: a film graded on a 4000 cd/m² monitor whose brightest pixel is 1000 cd/m² would otherwise
be compressed for highlights it never has (reference white at 210 instead of 230); else its
mastering display's peak, else 1000 cd/m².

The curve acts on the largest of a pixel's R, G and B (each is scaled by the same factor), so
hues are kept as highlights are compressed; colours outside BT.709 after the primaries change
are clipped. Primaries the stream leaves unspecified are BT.2020's, as BT.2100 defines PQ and HLG
with them; Display P3 (Apple's HDR exports) is converted as such.
"""

from __future__ import annotations

import numpy as np

from .side_data import side_data

#: the transfer characteristics of HDR (FFmpeg's AVColorTransferCharacteristic)
PQ, HLG = 16, 18            # SMPTE ST 2084, ARIB STD-B67
#: the SDR display's peak in HDR cd/m² (the tone map's target): the HDR reference white of ITU-R BT.2408
REFERENCE_WHITE = 203.0
#: the peak of a PQ stream that says nothing of its mastering display, and HLG's nominal peak
DEFAULT_PEAK = 1000.0

# SMPTE ST 2084 constants
_M1, _M2 = 2610 / 16384, 2523 / 4096 * 128
_C1, _C2, _C3 = 3424 / 4096, 2413 / 4096 * 32, 2392 / 4096 * 32
# ARIB STD-B67 (HLG) constants
_A, _B, _C = 0.17883277, 1 - 4 * 0.17883277, 0.5 - 0.17883277 * np.log(4 * 0.17883277)

#: chromaticities (x, y) of red, green and blue, each with the D65 white
CHROMATICITIES = {"bt709": ((0.64, 0.33), (0.30, 0.60), (0.15, 0.06)),
                  "bt2020": ((0.708, 0.292), (0.170, 0.797), (0.131, 0.046)),
                  "p3": ((0.680, 0.320), (0.265, 0.690), (0.150, 0.060))}
D65 = (0.3127, 0.3290)
#: FFmpeg's AVColorPrimaries → those; any other (unspecified: 2) is BT.2020, as BT.2100 has it
PRIMARIES = {1: "bt709", 9: "bt2020", 12: "p3"}


def rgb_to_xyz(primaries: str) -> np.ndarray:
    """``(3, 3)`` linear RGB → CIE XYZ of ``primaries`` (a :data:`CHROMATICITIES` key), white D65
    at Y = 1; its middle row is the luminance of R, G and B (BT.2020: 0.2627, 0.6780, 0.0593)."""
    xy = np.array(CHROMATICITIES[primaries])
    columns = np.stack([xy[:, 0] / xy[:, 1], np.ones(3), (1 - xy.sum(axis=1)) / xy[:, 1]])
    white = np.array([D65[0] / D65[1], 1.0, (1 - sum(D65)) / D65[1]])
    return columns * np.linalg.solve(columns, white)


def to_bt709(primaries: str) -> np.ndarray:
    """``(3, 3)`` linear RGB of ``primaries`` → linear BT.709 RGB (BT.2020's is ITU-R BT.2087's)."""
    return np.linalg.solve(rgb_to_xyz("bt709"), rgb_to_xyz(primaries)).astype(np.float32)


BT2020_TO_BT709 = to_bt709("bt2020")


def pq_to_nits(signal: np.ndarray) -> np.ndarray:
    """PQ signal (0–1) → luminance in cd/m² (0–10 000): ST 2084's EOTF."""
    p = np.power(np.clip(signal, 0, 1), 1 / _M2)
    return 10000 * np.power(np.maximum(p - _C1, 0) / (_C2 - _C3 * p), 1 / _M1)


def nits_to_pq(nits: np.ndarray) -> np.ndarray:
    """Luminance in cd/m² → PQ signal (0–1): ST 2084's inverse EOTF."""
    y = np.power(np.clip(np.asarray(nits, np.float64) / 10000, 0, 1), _M1)
    return np.power((_C1 + _C2 * y) / (1 + _C3 * y), _M2)


def hlg_to_scene(signal: np.ndarray) -> np.ndarray:
    """HLG signal (0–1) → scene light (0–1): BT.2100's inverse OETF."""
    e = np.clip(signal, 0, 1)
    return np.where(e <= 0.5, e * e / 3, (np.exp((e - _C) / _A) + _B) / 12)


def bt2390(nits: np.ndarray, peak: float, target: float) -> np.ndarray:
    """ITU-R BT.2390's EETF: luminance mastered up to ``peak`` cd/m² onto a display of
    ``target`` cd/m², in PQ: unchanged below the knee, highlights rolled off smoothly to
    ``target`` (a Hermite spline). Black stays black (no black-level lift)."""
    if peak <= target:
        return np.minimum(nits, target)
    top = float(nits_to_pq(peak))
    e1 = nits_to_pq(nits) / top
    max_lum = float(nits_to_pq(target)) / top
    knee = 1.5 * max_lum - 0.5
    t = np.clip((e1 - knee) / (1 - knee), 0, None)
    spline = (2 * t**3 - 3 * t**2 + 1) * knee + (t**3 - 2 * t**2 + t) * (1 - knee) + (-2 * t**3 + 3 * t**2) * max_lum
    e2 = np.where(e1 < knee, e1, spline)
    return pq_to_nits(np.minimum(e2, max_lum) * top)


class ToneMap:
    """An HDR frame's RGB signal → SDR RGB, as :mod:`this module <videoxai.data.hdr>` says.

    Args:
        transfer: :data:`PQ` or :data:`HLG`.
        primaries: the stream's, a :data:`CHROMATICITIES` key (converted to BT.709's).
        peak: the stream's peak luminance in cd/m² (a PQ stream's, :func:`stream_peak`;
            :data:`DEFAULT_PEAK` when unknown; HLG's nominal display peak).
    """

    def __init__(self, transfer: int, primaries: str = "bt2020", peak: float | None = None) -> None:
        if transfer not in (PQ, HLG):
            raise ValueError(f"not an HDR transfer: {transfer}")
        self.transfer, self.primaries = transfer, primaries
        self.peak = float(peak) if peak and peak > 0 else DEFAULT_PEAK
        self._to_bt709 = None if primaries == "bt709" else to_bt709(primaries).T
        self._luminance = rgb_to_xyz(primaries)[1].astype(np.float32)
        # Tables instead of powers per pixel (a 1080p frame took 0.5 s): each 16-bit signal
        # level's light; the EETF's factor and the display gamma each indexed by the square root
        # of their light (dense where the eye is: gamma's steps are 1e-4 of a level near black,
        # where a linear index jumped 2.5 levels)
        levels = np.arange(65536, dtype=np.float64) / 65535
        self._light = (pq_to_nits(levels) if transfer == PQ else hlg_to_scene(levels)).astype(np.float32)
        self._top = 10000.0 if transfer == PQ else DEFAULT_PEAK   # the most light a pixel can have
        nits = self._top * levels**2
        factor = np.divide(bt2390(nits, self.peak, REFERENCE_WHITE), nits, out=np.ones_like(nits), where=nits > 0)
        self._factor = (factor / REFERENCE_WHITE).astype(np.float32)      # to SDR's scale, white 1
        self._gamma = np.rint(255 * np.power(levels, 2 / 2.4)).astype(np.uint8)   # BT.1886: gamma 2.4
        self._ootf = (DEFAULT_PEAK * np.power(levels**2, 0.2)).astype(np.float32)   # HLG's Lw · Ys^(γ-1)

    def __call__(self, rgb16: np.ndarray) -> np.ndarray:
        """``(H, W, 3)`` uint16 full-scale RGB signal → ``(H, W, 3)`` uint8 SDR RGB."""
        light = self._light[rgb16]
        if self.transfer == HLG:  # scene light, then BT.2100's OOTF on a display of the nominal peak (gamma 1.2)
            light *= self._ootf[_index(light @ self._luminance)][..., None]
        top = np.maximum(np.maximum(light[..., 0], light[..., 1]), light[..., 2])
        light *= self._factor[_index(top / self._top)][..., None]
        if self._to_bt709 is not None:
            light = light @ self._to_bt709
        return self._gamma[_index(light)]


def _index(x: np.ndarray) -> np.ndarray:
    """Table index of values in [0, 1] (clipped), by their square root."""
    return np.rint(np.sqrt(np.clip(x, 0, 1)) * 65535).astype(np.uint16)


def tone_map_for(frame) -> ToneMap | None:
    """The :class:`ToneMap` that shows ``frame`` (a decoded ``av.VideoFrame``) in SDR, or
    ``None`` for an SDR frame (or a PyAV that does not say a frame's transfer)."""
    transfer = int(getattr(frame, "color_trc", 0) or 0)
    if transfer not in (PQ, HLG):
        return None
    primaries = PRIMARIES.get(int(getattr(frame, "color_primaries", 0) or 0), "bt2020")
    return ToneMap(transfer, primaries, stream_peak(frame) if transfer == PQ else None)


def stream_peak(frame) -> float | None:
    """The peak luminance (cd/m²) a PQ frame's side data gives its stream: its content light
    level (MaxCLL) within its mastering display's peak, either where only one is given, or
    ``None``."""
    known = [p for p in (mastering_peak(frame), max_content_light(frame)) if p is not None]
    return min(known) if known else None


def max_content_light(frame) -> float | None:
    """A frame's MaxCLL (cd/m²): the brightest pixel of the whole stream, as HDR10's content
    light level says (FFmpeg's ``AVContentLightMetadata``: MaxCLL, MaxFALL, two unsigned ints);
    ``None`` where absent or 0 (unknown)."""
    data = side_data(frame, "CONTENT_LIGHT_LEVEL")
    if data is None or len(data) < 8:
        return None
    max_cll = int(np.frombuffer(data[:4], dtype="=u4")[0])   # this machine's byte order
    return float(min(max_cll, 10_000)) if max_cll > 0 else None   # PQ ends at 10 000 cd/m²


def mastering_peak(frame) -> float | None:
    """The peak luminance (cd/m²) of the mastering display a PQ frame's side data names, if any.

    The side data is FFmpeg's ``AVMasteringDisplayMetadata``: primaries (6 rationals of two
    int32), white point (2), minimum and maximum luminance, then whether the primaries and the
    luminances are set; the maximum is the 10th rational."""
    data = side_data(frame, "MASTERING_DISPLAY")
    if data is None or len(data) < 88:
        return None
    raw = np.frombuffer(data[:88], dtype="=i4")   # the struct in this machine's byte order
    num, den = int(raw[18]), int(raw[19])
    return num / den if raw[21] and den > 0 and num > 0 else None   # raw[21]: has_luminance
