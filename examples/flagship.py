#!/usr/bin/python3
"""The flagship from Python: one live H.264/MPEG-TS source recorded at its bitrate
(bitrate-recorder), time-shifted 0, 2 and 4 s (offset-tee) and served as RaptorQ FEC
packets (fec-payloader), one session-sink channel per offset, to three receivers
(session-src ! fec-depayloader) started first. The application reacts to receivers joining
and leaving, prints the stats once a second, moves the 4 s channel to 3 s live halfway
through, and sums up at the end. The links here lose nothing (the Rust demo,
examples/flagship.rs, puts a lossy link in front of each receiver).

Run with Debian's /usr/bin/python3 (PyGObject) and python3-gst-1.0 (it reads the lists in
session-sink's stats; scripts/setup.sh installs both), the plugins on GST_PLUGIN_PATH:

    GST_PLUGIN_PATH=$PWD/target/release /usr/bin/python3 examples/flagship.py [DIR] [SECONDS]
"""
import glob
import os
import shutil
import socket
import sys
import time

import gi

gi.require_version("Gst", "1.0")
from gi.repository import Gst  # noqa: E402

CHANNELS = [("now", 0), ("plus2s", 2 * Gst.SECOND), ("plus4s", 4 * Gst.SECOND)]


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make(factory, name=None, **props):
    e = Gst.ElementFactory.make(factory, name)
    if e is None:
        sys.exit(f"no element {factory}: is GST_PLUGIN_PATH set?")
    for k, v in props.items():
        e.set_property(k.replace("_", "-"), v)
    return e


def sender(directory, port, seconds):
    """Built element by element: source, recorder, offset-tee, a payloader per channel."""
    p = Gst.Pipeline.new("sender")
    source = Gst.parse_bin_from_description(
        f"videotestsrc is-live=true num-buffers={seconds * 25} pattern=ball "
        "! video/x-raw,width=640,height=360,framerate=25/1 "
        "! x264enc tune=zerolatency bitrate=2000 pass=cbr vbv-buf-capacity=500 key-int-max=25 "
        "speed-preset=ultrafast option-string=nal-hrd=cbr:filler "
        "! mpegtsmux alignment=7",
        True,
    )
    recorder = make("bitrate-recorder", "recorder", location=os.path.join(directory, "recording"))
    tee = make("offset-tee", "delays", location=os.path.join(directory, "delays"))
    tee.set_property("eos-mode", "play-out")  # the delayed channels play out their end
    sink = make("session-sink", "sessions", port=port, wait_for_clients=len(CHANNELS))
    for e in (source, recorder, tee, sink):
        p.add(e)
    source.link(recorder)
    recorder.link(tee)
    for channel, offset in CHANNELS:
        out = tee.request_pad_simple("src_%u")
        out.set_property("offset", offset)
        pay = make("fec-payloader", repair_percent=10)
        p.add(pay)
        inp = sink.request_pad_simple("sink_%u")
        inp.set_property("channel", channel)
        out.link(pay.get_static_pad("sink"))
        pay.get_static_pad("src").link(inp)
    sink.connect("client-added", lambda _s, who: print(f"  + receiver {who} joined"))
    sink.connect("client-removed", lambda _s, who, why: print(f"  - receiver {who} left ({why})"))
    return p


def receiver(port, channel, path):
    return Gst.parse_launch(
        f"session-src host=127.0.0.1 port={port} channels={channel} "
        f"! fec-depayloader name=depay ! filesink location={path}"
    )


def stats_line(t, snd, receivers):
    rec = snd.get_by_name("recorder").get_property("stats")
    sink = snd.get_by_name("sessions").get_property("stats")
    try:
        sent = sum(r.get_value("bytes") for r in sink.get_value("receivers"))
    except TypeError:
        sys.exit("reading session-sink's lists needs python3-gst-1.0: apt-get install python3-gst-1.0")
    line = (
        f"{t:5.1f} s  receivers {sink.get_value('clients')}/{len(receivers)}"
        f"  in {rec.get_value('input-bitrate') / 1e6:.2f} Mbit/s"
        f"  written {rec.get_value('write-bitrate') / 1e6:.2f} Mbit/s  sent {sent / 1e6:.1f} MB"
    )
    for channel, r, _ in receivers:
        d = r.get_by_name("depay").get_property("stats")
        line += f"  | {channel} {d.get_value('blocks-recovered')} repaired {d.get_value('blocks-lost')} lost"
    return line


def main():
    directory = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "fanout-flagship-py")
    seconds = max(6, int(sys.argv[2]) if len(sys.argv) > 2 else 8)
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(directory)
    Gst.init(None)
    port = free_port()
    receivers = []
    for channel, _ in CHANNELS:
        path = os.path.join(directory, f"received-{channel}.ts")
        r = receiver(port, channel, path)
        r.set_state(Gst.State.PLAYING)
        receivers.append((channel, r, path))
    time.sleep(0.3)  # started first: they keep asking until the server is up
    snd = sender(directory, port, seconds)
    snd.set_state(Gst.State.PLAYING)
    start = time.monotonic()
    pipelines = [snd] + [r for _, r, _ in receivers]
    ended = [False] * len(pipelines)
    changed = False
    next_line = start + 1
    while not all(ended):
        if time.monotonic() - start > seconds + 60:
            sys.exit("the run did not end in time")
        for i, p in enumerate(pipelines):
            while (msg := p.get_bus().pop()) is not None:
                if msg.type == Gst.MessageType.EOS:
                    ended[i] = True
                elif msg.type == Gst.MessageType.ERROR:
                    sys.exit(f"{msg.src.get_path_string()}: {msg.parse_error()[0].message}")
                elif msg.type == Gst.MessageType.WARNING:
                    print(f"  ! {msg.src.get_path_string()}: {msg.parse_warning()[0].message}")
        t = time.monotonic() - start
        # While the source still runs, once the 4 s channel has started.
        if not changed and t >= 2 + seconds / 2:
            changed = True
            snd.get_by_name("delays").get_static_pad("src_2").set_property("offset", 3 * Gst.SECOND)
            print("  * plus4s: offset changed live to 3 s")
        if time.monotonic() >= next_line:
            next_line += 1
            print(stats_line(t, snd, receivers))
        time.sleep(0.02)
    for p in pipelines:
        p.set_state(Gst.State.NULL)

    segments = sorted(glob.glob(os.path.join(directory, "recording", "*.ts")))
    recording = b"".join(open(s, "rb").read() for s in segments)
    print(f"\nrecording: {os.path.join(directory, 'recording')} ({len(recording)} bytes)")
    good = True
    for channel, r, path in receivers:
        got = open(path, "rb").read()
        lost = r.get_by_name("depay").get_property("stats").get_value("blocks-lost")
        if channel == "plus4s":
            # Moved forward live: the recording up to the change, then from further on to
            # its very end.
            before = next((i for i, (a, b) in enumerate(zip(got, recording)) if a != b), len(got))
            skipped = len(recording) - len(got)
            ok = 0 < before < len(got) and skipped > 0 and recording.endswith(got[before:])
            what = f"the recording byte for byte, but for {skipped} bytes skipped at the live change"
        else:
            ok = got == recording
            what = "the whole recording, byte for byte" if ok else f"{len(got)} bytes, not the recording"
        print(f"{channel:>7}: {what}; {lost} blocks lost")
        good &= ok and lost == 0
    if not good:
        sys.exit("a receiver did not get what it should")
    print("the flagship from Python: every receiver got the recording at its offset")


if __name__ == "__main__":
    main()
