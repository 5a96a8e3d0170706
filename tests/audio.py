"""Audio that tests build: a stream that decodes for hours but says nothing of its length in its header."""

from __future__ import annotations

import io


def endless_webm(hours: float, *, bitrate: int = 6000) -> bytes:
    """Opus in a live WebM (no duration, no cues): 20 s of a quiet tone encoded once, then the same packets
    muxed again and again with later timestamps, so a file of a few MB holds `hours` of audio."""
    import av
    import numpy as np

    rate = 48_000
    encoded = av.open(io.BytesIO(), mode="w", format="webm")
    encoder = encoded.add_stream("libopus", rate=rate)
    encoder.bit_rate = bitrate
    tone = (0.05 * np.sin(2 * np.pi * 220 * np.arange(rate * 20) / rate)).astype(np.float32)
    packets = []
    for start in range(0, len(tone), 960):
        frame = av.AudioFrame.from_ndarray(tone[None, start : start + 960], format="flt", layout="mono")
        frame.sample_rate, frame.pts = rate, start
        packets += list(encoder.encode(frame))
    packets += list(encoder.encode(None))
    packets = [p for p in packets if p.pts is not None]
    first = packets[0].pts

    out_buffer = io.BytesIO()
    out = av.open(out_buffer, mode="w", format="webm", options={"live": "1"})
    stream = out.add_stream_from_template(encoder)
    span = packets[-1].pts + packets[-1].duration - first
    for copy in range(int(hours * 3600 / 20)):
        for packet in packets:
            again = av.Packet(bytes(packet))
            again.pts = again.dts = packet.pts - first + copy * span
            again.duration, again.time_base, again.stream = packet.duration, packet.time_base, stream
            out.mux(again)
    out.close()
    encoded.close()
    return out_buffer.getvalue()
