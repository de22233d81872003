"""HDR video (PQ, HLG) is shown in SDR as players tone-map it: known values of BT.2100, BT.2390
and BT.2408, and 10-bit HEVC files tagged as phones and HDR10 masters tag them."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from videoxai.data.hdr import (BT2020_TO_BT709, HLG, PQ, REFERENCE_WHITE, ToneMap, bt2390, hlg_to_scene, nits_to_pq,
                               pq_to_nits)
from videoxai.data.video import read_video


def test_the_transfer_functions_give_bt2100_s_and_bt2408_s_known_values():
    assert float(nits_to_pq(203)) == pytest.approx(0.5807, abs=1e-4)       # BT.2408: reference white at 58 %
    assert float(nits_to_pq(10000)) == pytest.approx(1.0)
    assert float(nits_to_pq(100)) == pytest.approx(0.5081, abs=1e-4)
    levels = np.linspace(0, 1, 101, dtype=np.float32)
    assert np.allclose(nits_to_pq(pq_to_nits(levels)), levels, atol=1e-5)     # inverse of each other
    # BT.2408: HLG's reference white (75 % signal) is 203 cd/m² on the nominal 1000 cd/m² display
    scene = float(hlg_to_scene(np.float32(0.75)))
    assert 1000 * scene * scene ** 0.2 == pytest.approx(203, abs=1)
    assert float(hlg_to_scene(np.float32(0.5))) == pytest.approx(1 / 12)     # where its two pieces meet
    assert float(hlg_to_scene(np.float32(1.0))) == pytest.approx(1.0, abs=1e-6)


def test_the_primaries_matrices_are_the_published_ones():
    from videoxai.data.hdr import rgb_to_xyz, to_bt709

    bt2087 = [[1.6605, -0.5876, -0.0728], [-0.1246, 1.1329, -0.0083], [-0.0182, -0.1006, 1.1187]]   # ITU-R BT.2087
    assert np.allclose(BT2020_TO_BT709, bt2087, atol=1e-4)
    assert np.allclose(rgb_to_xyz("bt2020")[1], [0.2627, 0.6780, 0.0593], atol=1e-4)         # BT.2020's luma weights
    assert np.allclose(rgb_to_xyz("bt709")[1], [0.2126, 0.7152, 0.0722], atol=1e-4)          # BT.709's
    assert np.allclose(to_bt709("p3"), [[1.2249, -0.2249, 0], [-0.0421, 1.0421, 0], [-0.0196, -0.0786, 1.0983]],
                       atol=1e-4)                                                         # Display P3 → sRGB
    assert np.allclose(to_bt709("bt709"), np.eye(3), atol=1e-6)


def test_a_frame_s_tags_choose_the_tone_map():
    """PQ and HLG come with BT.2020 primaries by definition (BT.2100): a stream that leaves them
    unspecified (2) is read so, not as BT.709; Display P3 and BT.709 as themselves; SDR is not
    tone-mapped; a master's stated peak is kept even below reference white."""
    from types import SimpleNamespace

    from videoxai.data.hdr import tone_map_for

    def frame(trc, primaries):
        return SimpleNamespace(color_trc=trc, color_primaries=primaries, side_data={})

    assert tone_map_for(frame(1, 1)) is None and tone_map_for(frame(0, 9)) is None
    assert [tone_map_for(frame(PQ, p)).primaries for p in (9, 2, 0, 12, 1)] == ["bt2020"] * 3 + ["p3", "bt709"]
    assert tone_map_for(frame(HLG, 2)).transfer == HLG and tone_map_for(frame(PQ, 9)).peak == 1000
    assert ToneMap(PQ, peak=150).peak == 150                                 # a dim master: nothing rolled off
    signal = np.rint(nits_to_pq(np.float32(150)) * 65535).astype(np.uint16).repeat(3)[None, None]
    assert ToneMap(PQ, "bt709", peak=150)(signal)[0, 0, 0] == round(255 * (150 / REFERENCE_WHITE) ** (1 / 2.4))


def test_bt2390_keeps_what_the_display_shows_and_rolls_off_the_rest_to_its_peak():
    nits = np.linspace(0, 1000, 2001, dtype=np.float32)
    out = bt2390(nits, 1000, REFERENCE_WHITE)
    # BT.2390's knee for a 1000 cd/m² master on a 203 cd/m² display lies at 88 cd/m²
    assert np.allclose(out[nits <= 87], nits[nits <= 87], rtol=1e-4)       # unchanged below it
    assert np.all(out[nits >= 95] < nits[nits >= 95] - 0.01)                 # compressed above it
    assert np.all(np.diff(out) >= -1e-3) and out[-1] == pytest.approx(REFERENCE_WHITE, rel=1e-3)   # monotone, to the peak
    assert out.max() <= REFERENCE_WHITE * 1.0001
    assert 150 < float(bt2390(np.float32(203), 1000, REFERENCE_WHITE)) < 175   # reference white dimmed (~165 by hand)
    assert np.allclose(bt2390(nits, 150, REFERENCE_WHITE), np.minimum(nits, REFERENCE_WHITE))    # nothing to compress


def test_the_tone_map_keeps_hues_and_takes_bt2020_colours_to_bt709():
    # a warm highlight in BT.709 primaries: its channels keep their ratios in light while compressed
    colour = np.array([900.0, 450.0, 90.0], np.float32)                    # cd/m², R:G:B = 10:5:1
    signal = np.rint(nits_to_pq(colour) * 65535).astype(np.uint16)[None, None]
    sdr = ToneMap(PQ, "bt709")(signal)[0, 0].astype(np.float64)
    light = (sdr / 255) ** 2.4
    assert light[0] / light[1] == pytest.approx(2, rel=0.03) and light[0] / light[2] == pytest.approx(10, rel=0.1)
    # BT.709's pure red at 100 cd/m², as BT.2020 stores it, is shown as pure red
    red709 = np.array([100.0, 0.0, 0.0], np.float32)
    as2020 = np.linalg.solve(BT2020_TO_BT709.astype(np.float64), red709)
    signal = np.rint(nits_to_pq(as2020.astype(np.float32)) * 65535).astype(np.uint16)[None, None]
    shown = ToneMap(PQ, "bt2020")(signal)[0, 0]
    assert shown[0] == pytest.approx(255 * (100 / REFERENCE_WHITE) ** (1 / 2.4), abs=2) and shown[1] <= 2 and shown[2] <= 2
    with pytest.raises(ValueError, match="not an HDR transfer"):
        ToneMap(1)


@pytest.mark.parametrize("transfer, peak", [(PQ, None), (PQ, 4000), (HLG, None)])
def test_the_tables_give_the_closed_form_within_one_level(transfer, peak):
    """The tone map reads tables (a 1080p frame's powers took 0.5 s); it equals the formulas,
    computed here in float64 pixel by pixel, to one level of 255 (on 0.1 % of the pixels)."""
    from videoxai.data.hdr import DEFAULT_PEAK

    rgb16 = np.random.default_rng(1).integers(0, 65536, (200, 200, 3)).astype(np.uint16)
    rgb16[:80] //= 8                                                        # dark pixels too
    tone_map = ToneMap(transfer, "bt2020", peak)
    signal = rgb16 / 65535
    if transfer == PQ:
        light = pq_to_nits(signal)
    else:
        scene = hlg_to_scene(signal)
        light = DEFAULT_PEAK * scene * (scene @ [0.2627, 0.6780, 0.0593])[..., None] ** 0.2
    top = light.max(axis=-1, keepdims=True)
    light = light * np.divide(bt2390(top, tone_map.peak, REFERENCE_WHITE), top, out=np.zeros_like(top), where=top > 0)
    expected = np.rint(255 * np.clip(light / REFERENCE_WHITE @ BT2020_TO_BT709.T.astype(float), 0, 1) ** (1 / 2.4))
    difference = np.abs(tone_map(rgb16).astype(int) - expected)
    assert difference.max() <= 1 and (difference > 0).mean() < 0.005


def mux_x265(out: av.container.OutputContainer, packets: list[av.Packet]) -> None:
    """Mux x265's ``packets`` with each decoding time set to its presentation time (encode
    without B-frames): FFmpeg 8.1's x265 wrapper gave packets garbage decoding times now and then
    (a third of the runs with hdr10=1), which the muxer refused."""
    for packet in packets:
        packet.dts = packet.pts
    out.mux(packets)


def _hdr_hevc(path: Path, signals, transfer: int, primaries: int = 9, matrix: int = 9,
              params: str = "lossless=1", chroma: tuple[int, int] = (512, 512)) -> Path:
    """10-bit 4:2:0 HEVC frames of one colour each: luma level ``64 + 876 · signal``, chroma
    levels ``chroma`` (grey: R' = G' = B' = the signal), tagged as phones and HDR10 masters tag
    them (transfer, primaries, matrix); lossless unless ``params`` (x265's) say otherwise."""
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx265", rate=10, options={"x265-params": f"log-level=error:bframes=0:{params}"})
        s.width, s.height, s.pix_fmt = 32, 32, "yuv420p10le"
        cc = s.codec_context
        cc.color_trc, cc.color_primaries, cc.colorspace = transfer, primaries, matrix
        for k, v in enumerate(signals):
            frame = av.VideoFrame(32, 32, "yuv420p10le")
            frame.pts = k
            for plane, level in zip(frame.planes, (round(64 + 876 * v), *chroma)):
                plane.update(np.full(plane.buffer_size // 2, level, "<u2").tobytes())
            frame.color_trc, frame.color_primaries, frame.colorspace = transfer, primaries, matrix
            mux_x265(out, s.encode(frame))
        mux_x265(out, s.encode())
    return path


@pytest.mark.skipif("libx265" not in av.codecs_available, reason="FFmpeg without libx265")
def test_pq_and_hlg_hevc_are_read_tone_mapped_and_sdr_as_before(tmp_path):
    """A PQ clip read as SDR was grey and flat (reference white at 148 of 255, the peak at 192);
    tone-mapped, what lies below the knee is shown as a player shows it (50 cd/m² at a quarter
    of reference white's light: level 142) and the highlights roll off to white."""
    nits = [0, 50, 100, 203, 500, 1000]
    pq = read_video(_hdr_hevc(tmp_path / "hdr10.mp4", [float(nits_to_pq(n)) for n in nits], PQ)).frames[:, 16, 16]
    assert np.all(pq[:, 0] == pq[:, 1]) and np.all(pq[:, 1] == pq[:, 2])          # grey stays grey
    expected = 255 * (np.array([0, 50]) / REFERENCE_WHITE) ** (1 / 2.4)         # below the knee (~90 cd/m²)
    assert np.abs(pq[:2, 0] - expected).max() <= 1.5                             # (10-bit steps)
    assert list(pq[:, 0]) == sorted(pq[:, 0]) and pq[-1, 0] == 255 and 225 <= pq[3, 0] < 255
    sdr = read_video(_hdr_hevc(tmp_path / "sdr.mp4", [float(nits_to_pq(n)) for n in nits], 1, 1, 1)).frames[:, 16, 16]
    assert list(sdr[:, 0]) == pytest.approx([0, 112, 130, 148, 173, 192], abs=1)   # SDR: signal as it is
    # HLG (a phone's): 75 % is reference white, as PQ's 203 cd/m²; 50 % is 1/12 of scene light
    hlg = read_video(_hdr_hevc(tmp_path / "phone.mp4", [0, 0.5, 0.75, 1.0], HLG)).frames[:, 16, 16, 0]
    assert abs(int(hlg[2]) - int(pq[3, 0])) <= 2 and hlg[3] == 255
    assert hlg[1] == pytest.approx(255 * (1000 / 12 * (1 / 12) ** 0.2 / REFERENCE_WHITE) ** (1 / 2.4), abs=1.5)


@pytest.mark.skipif("libx265" not in av.codecs_available, reason="FFmpeg without libx265")
def test_a_pq_master_s_peak_is_read_from_its_mastering_display(tmp_path):
    """HDR10 says the peak of the display it was mastered on (SEI, as FFmpeg's side data): 1000
    cd/m² of a 4000 cd/m² master is a highlight still below the top, where a master without
    the metadata (1000 cd/m² assumed) shows it as white."""
    from videoxai.data.hdr import mastering_peak

    signal = [float(nits_to_pq(1000))] * 2
    master = "hdr10=1:master-display=G(13250,34500)B(7500,3000)R(34000,16000)WP(15635,16450)L(40000000,50)"
    with_peak = _hdr_hevc(tmp_path / "master4000.mp4", signal, PQ, params=master)
    with av.open(str(with_peak)) as c:
        assert mastering_peak(next(c.decode(video=0))) == pytest.approx(4000)
    bright = read_video(with_peak).frames[0, 16, 16, 0]
    plain = read_video(_hdr_hevc(tmp_path / "plain.mp4", signal, PQ)).frames[0, 16, 16, 0]
    assert plain == 255 and 230 < bright < 255


@pytest.mark.skipif("libx265" not in av.codecs_available, reason="FFmpeg without libx265")
def test_a_pq_stream_s_content_light_level_is_its_peak_within_the_mastering_display_s(tmp_path):
    """HDR10's MaxCLL says how bright the stream's brightest pixel is: a 4000 cd/m² master whose
    pixels stop at 1000 cd/m² is shown as a 1000 cd/m² master is (203 cd/m² white at 230, not
    210); a MaxCLL above the mastering display's peak changes nothing, and a MaxCLL alone is the
    peak."""
    from videoxai.data.hdr import max_content_light, stream_peak

    master = "hdr10=1:master-display=G(13250,34500)B(7500,3000)R(34000,16000)WP(15635,16450)L(40000000,50)"
    white = [float(nits_to_pq(REFERENCE_WHITE))] * 2

    def read(name: str, params: str) -> tuple[int, float | None, float | None]:
        path = _hdr_hevc(tmp_path / f"{name}.mp4", white, PQ, params=params)
        with av.open(str(path)) as c:
            frame = next(c.decode(video=0))
            cll, peak = max_content_light(frame), stream_peak(frame)
        return int(read_video(path).frames[0, 16, 16, 0]), cll, peak

    assert read("master", master) == (pytest.approx(210, abs=2), None, pytest.approx(4000))
    assert read("cll1000", master + ":max-cll=1000,400") == (pytest.approx(230, abs=2), 1000, 1000)
    assert read("cll6000", master + ":max-cll=6000,400")[1:] == (6000, pytest.approx(4000))
    assert read("cll600", "hdr10=1:max-cll=600,200") == (pytest.approx(ToneMap(PQ, peak=600)(
        np.full((1, 1, 3), round(65535 * white[0]), np.uint16))[0, 0, 0], abs=2), 600, 600)
    assert read("plain", "lossless=1") == (pytest.approx(230, abs=2), None, None)


@pytest.mark.skipif("libx265" not in av.codecs_available, reason="FFmpeg without libx265")
@pytest.mark.parametrize("matrix", [9, 2])
def test_a_coloured_hlg_frame_is_converted_with_bt2020_s_matrix_then_tone_mapped(tmp_path, matrix):
    """Y'CbCr → R'G'B' by BT.2020's matrix, in 16 bits, then the tone map: FFmpeg 8.1's 16-bit
    conversion with full chroma interpolation zeroed red and green of 10-bit 4:2:0 (a bluish
    grey came out pure blue). A matrix left unspecified (2) is BT.2020's too (swscale's default
    is BT.601's)."""
    luma, cb, cr = 301, 598, 449
    y, u, v = (luma - 64) / 876, (cb - 512) / 896, (cr - 512) / 896
    kr, kb = 0.2627, 0.0593                                            # BT.2020's matrix
    r, b = y + 2 * (1 - kr) * v, y + 2 * (1 - kb) * u
    g = (y - kr * r - kb * b) / (1 - kr - kb)
    signal = np.rint(np.array([[[r, g, b]]]) * 65535).astype(np.uint16)
    expected = ToneMap(HLG)(signal)[0, 0].astype(int)
    assert expected[1] > 50                                            # green is there to lose
    path = _hdr_hevc(tmp_path / "phone.mp4", [y, y], HLG, matrix=matrix, chroma=(cb, cr))
    got = read_video(path).frames[0, 16, 16].astype(int)
    assert np.abs(got - expected).max() <= 2, (got, expected)
