"""A stream's frame messages as pixels: raw RGB, JPEG or PNG, upright as a viewer shows them,
and within the server's resolution limits, which are checked before a single pixel is decoded.
"""

from __future__ import annotations

import io

import numpy as np

from .protocol import FrameHeader, ServiceError
from .settings import ServeSettings


#: the EXIF tag of a frame's orientation (1: stored upright)
_ORIENTATION = 0x0112

#: Pillow's modes of a 16-bit grey image ("I": older Pillow's for a 16-bit grey PNG)
_SIXTEEN_BIT_GREY = frozenset({"I;16", "I;16B", "I;16L", "I"})


def decode_frame(header: FrameHeader, payload: memoryview, settings: ServeSettings) -> np.ndarray:
    """A frame message's pixels as ``(H, W, 3)`` uint8, within the server's resolution limits."""
    if header.format == "rgb":
        if header.width is None or header.height is None:
            raise ServiceError(400, "bad_frame", "raw 'rgb' frames need width and height in the header")
        _check_size(header.width, header.height, settings)
        need = header.width * header.height * 3
        if len(payload) != need:
            raise ServiceError(400, "bad_frame", f"a {header.width}x{header.height} rgb frame has {need} bytes, "
                                                 f"got {len(payload)}")
        return np.frombuffer(payload, dtype=np.uint8).reshape(header.height, header.width, 3)

    from PIL import Image, ImageOps, UnidentifiedImageError

    fmt = {"jpeg": "JPEG", "png": "PNG"}[header.format]
    try:
        with Image.open(io.BytesIO(payload), formats=[fmt]) as stored:
            # the size is in the image header: check it before decoding a single pixel (a
            # rotation keeps the pixel count and the longer side)
            _check_size(stored.width, stored.height, settings)
            # a phone stores its frames as the sensor reads them, with an EXIF Orientation tag
            # that browsers and viewers honour: explained as stored, the frame was sideways
            # (transposed only where tagged: exif_transpose copies even an upright frame)
            im = ImageOps.exif_transpose(stored) if stored.getexif().get(_ORIENTATION, 1) != 1 else stored
            if (header.width, header.height) not in ((None, None), (im.width, im.height),
                                                     (stored.width, stored.height)):
                raise ServiceError(400, "bad_frame", f"the header says {header.width}x{header.height} but the "
                                                     f"{header.format} image is {im.width}x{im.height}")
            if im.mode in _SIXTEEN_BIT_GREY:
                # 16-bit grey PNG (depth, thermal, medical cameras): Pillow's convert("RGB") clips
                # at 255 instead of scaling, so all but the darkest 1/256 of the range was white
                grey = np.rint(np.asarray(im, dtype=np.float32) / 257.0).clip(0, 255).astype(np.uint8)
                rgb = np.repeat(grey[..., None], 3, axis=2)
            else:
                rgb = np.asarray(im.convert("RGB"))
    except ServiceError:
        raise
    except Image.DecompressionBombError as e:
        # Pillow checks a header's size against its own, far larger, limit as it opens the image,
        # before ours: a header that claims 65535x65535 is a frame too large, not an undecodable one
        raise ServiceError(413, "frame_too_large", f"the {header.format} frame's header claims a size over the "
                                                   f"server's limit ({settings.max_pixels} pixels, "
                                                   f"{settings.max_side} per side): {e}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise ServiceError(400, "bad_frame", f"cannot decode the {header.format} frame: {e}") from None
    return rgb


def _check_size(width: int, height: int, settings: ServeSettings) -> None:
    if max(width, height) > settings.max_side or width * height > settings.max_pixels:
        raise ServiceError(413, "frame_too_large",
                           f"frame {width}x{height} exceeds the server's limit ({settings.max_pixels} pixels, "
                           f"{settings.max_side} per side)")
