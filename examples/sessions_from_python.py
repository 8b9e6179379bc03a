#!/usr/bin/python3
"""A content server that decides who may join, from Python: session-sink's
`client-joining` signal sees each receiver's address and token and says yes or
no; `client-added` / `client-removed` tell who came and went, and `stats` how
much each one got (docs/session-protocol.md).

Run with Debian's /usr/bin/python3 (it has PyGObject) and the plugins on
GST_PLUGIN_PATH, for example after `cargo build --release`. The per-receiver and
per-channel lists in session-sink's stats (GstValueArray) read only with Debian's
python3-gst-1.0 installed (scripts/setup.sh installs it):

    GST_PLUGIN_PATH=$PWD/target/release /usr/bin/python3 examples/sessions_from_python.py
"""
import socket
import sys
import time

import gi

gi.require_version("Gst", "1.0")
from gi.repository import Gst  # noqa: E402

Gst.init(None)

# Any free UDP port on this machine.
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]

server = Gst.parse_launch(
    "videotestsrc is-live=true num-buffers=100 ! video/x-raw,width=160,height=120,framerate=25/1 "
    f"! fec-payloader ! session-sink name=sink port={port}"
)
sink = server.get_by_name("sink")
sink.connect("client-joining", lambda _sink, address, token: token == "let me in")
sink.connect("client-added", lambda _sink, address: print(f"joined: {address}"))
sink.connect("client-removed", lambda _sink, address, why: print(f"gone: {address} ({why})"))
server.set_state(Gst.State.PLAYING)


def receiver(token):
    p = Gst.parse_launch(
        f'session-src port={port} token="{token}" ! fec-depayloader name=d ! fakesink'
    )
    p.set_state(Gst.State.PLAYING)
    return p


welcome = receiver("let me in")
stranger = receiver("guess")

# The stranger is refused, with the reason on its bus.
msg = stranger.get_bus().timed_pop_filtered(10 * Gst.SECOND, Gst.MessageType.ERROR)
if msg is None:
    sys.exit("the stranger was not refused")
print(f"refused: {msg.parse_error()[0].message}")
stranger.set_state(Gst.State.NULL)

# The welcome receiver rebuilds the stream until the server's ends.
msg = welcome.get_bus().timed_pop_filtered(30 * Gst.SECOND, Gst.MessageType.EOS | Gst.MessageType.ERROR)
if msg is None or msg.type != Gst.MessageType.EOS:
    sys.exit("the receiver did not get to the end of the stream")
buffers = welcome.get_by_name("d").get_property("stats").get_value("buffers")
stats = sink.get_property("stats")
clients = stats.get_uint("clients")[1]
print(f"the server has {clients} receiver(s); the welcome one rebuilt {buffers} buffers")
try:
    for r in stats.get_value("receivers"):
        print(f"  {r.get_string('address')}: {r.get_value('packets')} packets")
except TypeError:
    sys.exit("reading the stats' lists needs python3-gst-1.0: apt-get install python3-gst-1.0")
welcome.set_state(Gst.State.NULL)
time.sleep(0.2)
server.set_state(Gst.State.NULL)
if buffers < 50:
    sys.exit(f"only {buffers} buffers rebuilt")
print("authorized by token from Python")
