#!/usr/bin/python3
"""Record a test signal with bitrate-recorder and play it back with
bitrate-player, from Python (PyGObject).

Run with Debian's /usr/bin/python3 (it has PyGObject) and the plugins on
GST_PLUGIN_PATH, for example after `cargo build --release`:

    GST_PLUGIN_PATH=$PWD/target/release /usr/bin/python3 examples/record_and_play.py /tmp/rec
"""
import sys

import gi

gi.require_version("Gst", "1.0")
from gi.repository import Gst  # noqa: E402


def run(description):
    """Runs a pipeline to EOS; returns it (stopped) so its elements can be asked."""
    pipeline = Gst.parse_launch(description)
    pipeline.set_state(Gst.State.PLAYING)
    bus = pipeline.get_bus()
    while True:
        msg = bus.timed_pop_filtered(
            30 * Gst.SECOND, Gst.MessageType.EOS | Gst.MessageType.ERROR | Gst.MessageType.ELEMENT
        )
        if msg is None:
            raise RuntimeError("pipeline stalled")
        if msg.type == Gst.MessageType.ERROR:
            err, debug = msg.parse_error()
            raise RuntimeError(f"{err.message}: {debug}")
        if msg.type == Gst.MessageType.ELEMENT:
            s = msg.get_structure()
            if s.get_name() == "fanout-bitrate-recorder-stats":
                print(f"  recorder: {s.get_value('bytes-written')} bytes written, "
                      f"{s.get_value('input-bitrate') / 1e6:.2f} Mbit/s in")
            continue
        break
    pipeline.set_state(Gst.State.NULL)
    return pipeline


def main():
    location = sys.argv[1] if len(sys.argv) > 1 else "fanout-demo-python"
    Gst.init(None)
    for name in ("bitrate-recorder", "bitrate-player"):
        if Gst.ElementFactory.find(name) is None:
            sys.exit(f"{name} not found: set GST_PLUGIN_PATH to the built plugins")

    recording = run(
        "audiotestsrc is-live=true num-buffers=150 ! audio/x-raw,rate=48000,channels=2 "
        f"! bitrate-recorder name=rec location={location} ! fakesink"
    )
    stats = recording.get_by_name("rec").get_property("stats")
    written = stats.get_value("bytes-written")
    print(f"recorded {written} bytes into {location}")

    playback = run(
        f"bitrate-player name=player location={location} is-live=false "
        "! audioconvert ! fakesink"
    )
    played = playback.get_by_name("player").get_property("stats").get_value("bytes-out")
    print(f"played back {played} bytes")
    if played != written:
        sys.exit("played back a different amount than was recorded")


if __name__ == "__main__":
    main()
