#!/usr/bin/python3
"""Set offset-tee's offsets from upstream, as a content provider would: an
application pushes the `fanout-offsets` event into the stream (docs/offset-tee.md).

Run with Debian's /usr/bin/python3 (it has PyGObject) and the plugins on
GST_PLUGIN_PATH, for example after `cargo build --release`:

    GST_PLUGIN_PATH=$PWD/target/release /usr/bin/python3 examples/offsets_from_python.py
"""
import gi

gi.require_version("Gst", "1.0")
from gi.repository import Gst  # noqa: E402

Gst.init(None)
pipeline = Gst.parse_launch(
    "videotestsrc is-live=true num-buffers=50 ! video/x-raw,width=160,height=120,framerate=25/1 "
    "! identity name=upstream ! offset-tee name=t "
    "t.src_0 ! fakesink sync=false t.src_1 ! fakesink sync=false"
)
tee = pipeline.get_by_name("t")
pipeline.set_state(Gst.State.PLAYING)
pipeline.get_state(5 * Gst.SECOND)

# Output 0 without offset, output 1 half a second behind.
s = Gst.Structure.new_from_string("fanout-offsets, offsets=(guint64)<0, 500000000>")
event = Gst.Event.new_custom(Gst.EventType.CUSTOM_DOWNSTREAM, s)
pipeline.get_by_name("upstream").get_static_pad("src").push_event(event)
offsets = [tee.get_static_pad(f"src_{i}").get_property("offset") for i in range(2)]
print(f"offsets now {offsets}")

msg = pipeline.get_bus().timed_pop_filtered(30 * Gst.SECOND, Gst.MessageType.EOS | Gst.MessageType.ERROR)
pipeline.set_state(Gst.State.NULL)
if msg is None or msg.type != Gst.MessageType.EOS:
    raise SystemExit(f"the pipeline did not end: {msg.parse_error() if msg else 'timeout'}")
if offsets != [0, 500000000]:
    raise SystemExit(f"offsets not set: {offsets}")
print("offsets set from upstream")
