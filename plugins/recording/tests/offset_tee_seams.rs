// SPDX-License-Identifier: MPL-2.0

//! offset-tee at the seams of a run: its start, a restart on the same store, its stop, the
//! input's end, and a live change of offset. Nothing may be lost at any of them.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use gst::prelude::*;

/// Counts the bytes the element `name` hands off (`identity` or `fakesink`).
fn count_bytes(pipeline: &gst::Pipeline, name: &str) -> Arc<AtomicU64> {
    let n = Arc::new(AtomicU64::new(0));
    let element = pipeline.by_name(name).unwrap();
    element.set_property("signal-handoffs", true);
    let c = n.clone();
    element.connect("handoff", false, move |args| {
        let buffer = args[1].get::<gst::Buffer>().unwrap();
        c.fetch_add(buffer.size() as u64, Ordering::SeqCst);
        None
    });
    n
}

/// Issue 15 (4): a non-live input pushed as fast as it goes, `sync=false`, one output looping
/// twice and one plain. Each run must deliver every byte: the plain output the input once,
/// the looping one three times. Repeated, since a startup race shows only now and then.
/// (An output task placed only after the input had sent some buffers started at the newest;
/// a buffer arriving while the pipeline went to PLAYING got the clock's absolute time as its
/// arrival, so store time jumped and retention removed what came before.)
#[test]
fn at_startup_no_output_misses_a_buffer_of_a_fast_non_live_input() {
    const RUNS: usize = 40;
    let mut short = Vec::new();
    for run in 0..RUNS {
        // Every other run timestamped (10 ms a buffer), as an encoder's output is.
        let timed = if run % 2 == 0 { "datarate=131600" } else { "" };
        let p = pipeline(&format!(
            "fakesrc num-buffers=60 sizetype=fixed sizemax=1316 filltype=pattern-span {timed} \
             ! identity name=in ! offset-tee name=t sync=false eos-mode=play-out src_0::loop=2 \
             t.src_0 ! fakesink name=looped sync=false t.src_1 ! fakesink name=plain sync=false",
        ));
        let input = count_bytes(&p, "in");
        let looped = count_bytes(&p, "looped");
        let plain = count_bytes(&p, "plain");
        run_to_eos(&p, Duration::from_secs(60));
        let (i, l, n) = (
            input.load(Ordering::SeqCst),
            looped.load(Ordering::SeqCst),
            plain.load(Ordering::SeqCst),
        );
        assert_eq!(i, 60 * 1316);
        if n != i || l != 3 * i {
            short.push(format!(
                "run {run}: plain {n}, looped {l} of {i} / {}",
                3 * i
            ));
        }
    }
    assert!(
        short.is_empty(),
        "{} of {RUNS} runs lost bytes: {short:#?}",
        short.len()
    );
}

/// When each buffer an element hands off passed, with its size.
fn timed_sizes(
    pipeline: &gst::Pipeline,
    name: &str,
    start: Instant,
) -> Arc<Mutex<Vec<(Duration, usize)>>> {
    on_handoff(pipeline, name, move |b| (start.elapsed(), b.size()))
}

/// Restarts on a store holding 4 s (1000-byte buffers, 10 ms apart) with a live input of
/// 500-byte buffers and one output `offset` behind. Returns, for the output: how many old
/// buffers came before the first new one, when its first buffer left and when the first new
/// one did, both counted from the input's first buffer; and the warnings.
fn restart_with_offset(offset: Duration) -> (usize, Duration, Duration, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("shift");
    let first = pipeline(&format!(
        "fakesrc num-buffers=400 sizetype=fixed sizemax=1000 datarate=100000 \
         ! offset-tee name=t location={} sync=false t.src_0 ! fakesink sync=false",
        store.display()
    ));
    run_to_eos(&first, Duration::from_secs(60));

    let p = pipeline(&format!(
        "fakesrc is-live=true sync=true num-buffers=1500 sizetype=fixed sizemax=500 datarate=50000 \
         ! identity name=in ! offset-tee name=t location={} src_0::offset={} \
         t.src_0 ! fakesink name=out sync=false",
        store.display(),
        offset.as_nanos()
    ));
    let start = Instant::now();
    let input = timed_sizes(&p, "in", start);
    let out = timed_sizes(&p, "out", start);
    let bus = p.bus().unwrap();
    p.set_state(gst::State::Playing).unwrap();
    let deadline = Instant::now() + offset * 3 + Duration::from_secs(20);
    while !out.lock().unwrap().iter().any(|&(_, size)| size == 500) {
        assert!(Instant::now() < deadline, "no new buffer out");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Read before NULL, which flushes the bus.
    let warnings = std::iter::from_fn(|| bus.pop_filtered(&[gst::MessageType::Warning]))
        .map(|m| match m.view() {
            gst::MessageView::Warning(w) => format!("{} | {:?}", w.error(), w.debug()),
            _ => unreachable!(),
        })
        .collect();
    p.set_state(gst::State::Null).unwrap();
    let input_start = input.lock().unwrap()[0].0;
    let out = out.lock().unwrap();
    let old = out.iter().take_while(|&&(_, size)| size == 1000).count();
    let first_new = out[old].0.saturating_sub(input_start);
    (
        old,
        out[0].0.saturating_sub(input_start),
        first_new,
        warnings,
    )
}

/// Issue 15 (3): restarted on its store, an output `offset` behind plays at once the last
/// `offset` of what was stored, then the new input, `offset` behind it (not twice that).
#[test]
fn a_restart_resumes_at_once_with_the_last_offset_of_the_store() {
    let offset = Duration::from_secs(2);
    let (old, first, first_new, warnings) = restart_with_offset(offset);
    assert!(
        (190..=210).contains(&old),
        "{old} stored buffers (10 ms each) played first"
    );
    assert!(
        first < Duration::from_millis(700),
        "first buffer {first:?} after the input's"
    );
    assert!(
        first_new.abs_diff(offset) < Duration::from_millis(700),
        "the new input comes out {first_new:?} behind, want {offset:?}"
    );
    assert!(warnings.is_empty(), "{warnings:?}");
}

/// Issue 15 (3): an offset beyond what is stored starts with the oldest stored buffer, when it
/// is `offset` behind, with the warning; the new input then comes `offset` behind.
#[test]
fn a_restart_with_an_offset_beyond_the_store_starts_at_the_oldest_and_says_so() {
    let offset = Duration::from_secs(6);
    let (old, first, first_new, warnings) = restart_with_offset(offset);
    assert_eq!(old, 400, "the whole store is played first");
    // 4 s are stored: the oldest buffer is 6 s behind 2 s after the restart.
    assert!(
        first.abs_diff(Duration::from_secs(2)) < Duration::from_millis(700),
        "first buffer {first:?} after the input's"
    );
    assert!(
        first_new.abs_diff(offset) < Duration::from_millis(700),
        "the new input comes out {first_new:?} behind, want {offset:?}"
    );
    let told = warnings
        .iter()
        .filter(|w| w.contains("further back"))
        .count();
    assert_eq!(told, 1, "{warnings:?}");
}

/// Sums the sizes of the buffers in the store at `dir`, as far as it goes now.
fn stored_bytes(dir: &std::path::Path) -> u64 {
    let mut reader = fanout_store::Reader::open(dir).unwrap();
    reader.seek(0).unwrap();
    let mut bytes = 0;
    while let fanout_store::Next::Entry(e) = reader.read_next().unwrap() {
        if let fanout_store::Entry::Buffer(b) = e {
            bytes += u64::from(b.size);
        }
    }
    bytes
}

/// A live input into an offset-tee with `outputs` (pad properties; `src_{undelayed}` without
/// offset), stopped as `gst-launch-1.0 -e` does on Ctrl-C: an EOS event sent to the pipeline
/// after a second. Must reach EOS on the bus soon, with everything the input sent stored on
/// disk by then and delivered by the output without offset.
fn stops_at_once(outputs: &str, undelayed: usize) {
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(&format!(
        "fakesrc is-live=true sync=true sizetype=fixed sizemax=1316 datarate=131600 \
         ! identity name=in ! offset-tee name=t location={} {outputs} \
         t.src_0 ! fakesink name=out0 sync=false t.src_1 ! fakesink name=out1 sync=false",
        dir.path().display()
    ));
    let input = count_bytes(&p, "in");
    let out = count_bytes(&p, &format!("out{undelayed}"));
    let bus = p.bus().unwrap();
    p.set_state(gst::State::Playing).unwrap();
    std::thread::sleep(Duration::from_secs(1));
    assert!(p.send_event(gst::event::Eos::new()));
    let msg = bus.timed_pop_filtered(
        20 * gst::ClockTime::SECOND,
        &[gst::MessageType::Eos, gst::MessageType::Error],
    );
    // Read while the pipeline still holds the store: EOS means complete on disk.
    let stored = stored_bytes(dir.path());
    p.set_state(gst::State::Null).unwrap();
    match msg.as_ref().map(|m| m.view()) {
        Some(gst::MessageView::Eos(_)) => (),
        Some(gst::MessageView::Error(e)) => panic!("{} {:?}", e.error(), e.debug()),
        _ => panic!("{outputs}: no EOS within 20 s of the EOS event"),
    }
    let sent = input.load(Ordering::SeqCst);
    assert!(sent > 0);
    assert_eq!(stored, sent, "{outputs}: stored at EOS");
    assert_eq!(
        out.load(Ordering::SeqCst),
        sent,
        "{outputs}: src_{undelayed} delivered"
    );
}

/// Issue 15 (5): EOS on an output an hour behind ends the pipeline now, the store complete.
#[test]
fn eos_with_an_hour_long_offset_ends_at_once_with_the_store_complete() {
    stops_at_once("src_0::offset=3600000000000 src_1::offset=0", 1);
}

/// Issue 15 (5): the same with an output looping forever.
#[test]
fn eos_with_an_endless_loop_ends_at_once_with_the_store_complete() {
    stops_at_once("src_0::loop=-1 src_1::offset=2000000000", 0);
}

/// Issue 15 (6): buffers marked as keyframes every 10th (`DELTA_UNIT` on the others, 10 ms
/// apart); a change of offset lands on the keyframe at or before the target, as
/// `bitrate-player`'s seeks do, not in the middle of a group of pictures.
#[test]
fn a_changed_offset_lands_on_the_keyframe_at_or_before_the_target() {
    init();
    let tee = element("offset-tee sync=false");
    let mut h = gst_check::Harness::with_element(&tee, Some("sink"), Some("src_0"));
    h.set_src_caps_str(TS_CAPS);
    h.play();
    for i in 0..300 {
        h.push(buffer(i, 10)).unwrap();
    }
    for i in 0..300 {
        assert_eq!(bytes(&h.pull().unwrap()), payload(i), "buffer {i}");
    }
    // The input is at 2990 ms: 255 ms back is 2735 ms, in the group from the keyframe at
    // 2700 ms, held in memory; 2.5 s back is 490 ms, beyond the in-memory window (2 s): the
    // store has the keyframe at 400 ms.
    for (offset, key) in [(255_000_000u64, 270), (2_500_000_000, 40)] {
        h.element()
            .unwrap()
            .static_pad("src_0")
            .unwrap()
            .set_property("offset", offset);
        let b = h.pull().unwrap();
        assert!(b.flags().contains(gst::BufferFlags::DISCONT), "{offset}");
        assert!(
            !b.flags().contains(gst::BufferFlags::DELTA_UNIT),
            "{offset}: lands on a delta unit"
        );
        assert_eq!(bytes(&b), payload(key), "offset {offset}");
        // Then on to the input's newest.
        for i in key + 1..300 {
            assert_eq!(bytes(&h.pull().unwrap()), payload(i), "buffer {i}");
        }
    }
    stop(h);
}

/// Buffers as an element handed them off: PTS and bytes.
type Handed = Vec<(u64, Vec<u8>)>;

/// Collects what the element `name` hands off.
fn collect(pipeline: &gst::Pipeline, name: &str) -> Arc<Mutex<Handed>> {
    on_handoff(pipeline, name, |b| {
        let pts = b.pts().map_or(u64::MAX, gst::ClockTime::nseconds);
        (pts, b.map_readable().unwrap().to_vec())
    })
}

const OFFSETS: [u64; 3] = [0, 2_000_000_000, 4_000_000_000];

/// A live input of 6 s (50 buffers of 1316 bytes a second, as mpegtsmux alignment=7 makes,
/// timestamped) into an offset-tee with outputs 0, 2 and 4 s behind, run to the end in
/// `eos_mode`. Returns the input's buffers (PTS, bytes) and each output's bytes. The 4 s
/// output is behind the in-memory window (2 s), reading the store, when the input ends.
fn run_to_the_end(eos_mode: &str) -> (Handed, Vec<Vec<u8>>) {
    let p = pipeline(&format!(
        "fakesrc is-live=true sync=true num-buffers=300 sizetype=fixed sizemax=1316 \
         filltype=pattern-span datarate=65800 ! identity name=in \
         ! offset-tee name=t eos-mode={eos_mode} src_0::offset={} src_1::offset={} \
         src_2::offset={} t.src_0 ! fakesink name=out0 sync=false \
         t.src_1 ! fakesink name=out1 sync=false t.src_2 ! fakesink name=out2 sync=false",
        OFFSETS[0], OFFSETS[1], OFFSETS[2]
    ));
    let input = collect(&p, "in");
    let outputs: Vec<_> = (0..3).map(|k| collect(&p, &format!("out{k}"))).collect();
    run_to_eos(&p, Duration::from_secs(60));
    let input = std::mem::take(&mut *input.lock().unwrap());
    let outputs = outputs
        .iter()
        .map(|o| {
            o.lock()
                .unwrap()
                .iter()
                .flat_map(|(_, b)| b.clone())
                .collect()
        })
        .collect();
    (input, outputs)
}

/// Where `got` first differs from `want`, in whole 1316-byte buffers, for the message.
fn first_difference(got: &[u8], want: &[u8]) -> String {
    let at = got
        .iter()
        .zip(want)
        .position(|(a, b)| a != b)
        .unwrap_or(got.len().min(want.len()));
    format!(
        "{} of {} bytes, first difference at byte {at} (buffer {})",
        got.len(),
        want.len(),
        at / 1316
    )
}

/// `eos-mode=play-out`: every output delivers the whole input, byte for byte. (An output
/// reading the store whose clock wait the input's EOS woke dropped the buffer it had read:
/// the reader does not give it again. One buffer was missing, at the delayed output's position
/// when the input ended.)
#[test]
fn play_out_delivers_every_byte_on_every_output_across_the_input_end() {
    let (input, outputs) = run_to_the_end("play-out");
    assert_eq!(input.len(), 300);
    let sent: Vec<u8> = input.iter().flat_map(|(_, b)| b.clone()).collect();
    for (out, offset) in outputs.iter().zip(OFFSETS) {
        assert!(
            *out == sent,
            "offset {offset}: {}",
            first_difference(out, &sent)
        );
    }
}

/// `eos-mode=end` (the default): each output delivers exactly the input up to its last buffer
/// less the output's offset, without a hole.
#[test]
fn end_delivers_the_input_up_to_its_end_less_the_offset_without_a_hole() {
    let (input, outputs) = run_to_the_end("end");
    assert_eq!(input.len(), 300);
    let last = input.last().unwrap().0;
    for (out, offset) in outputs.iter().zip(OFFSETS) {
        let due: Vec<u8> = input
            .iter()
            .filter(|(pts, _)| pts.saturating_add(offset) <= last)
            .flat_map(|(_, b)| b.clone())
            .collect();
        assert!(!due.is_empty(), "offset {offset}: nothing due");
        assert!(
            *out == due,
            "offset {offset}: {}",
            first_difference(out, &due)
        );
    }
}

/// The buffer index a [`numbered`] buffer carries in its first 8 bytes.
fn number(b: &[u8]) -> u64 {
    u64::from_le_bytes(b[..8].try_into().unwrap())
}

/// Numbers the buffers leaving `element` (in their first 8 bytes) and marks every 50th a
/// keyframe (`DELTA_UNIT` on the others): one a second at 50 buffers a second.
fn numbered(pipeline: &gst::Pipeline, element: &str) {
    let pad = pipeline
        .by_name(element)
        .unwrap()
        .static_pad("src")
        .unwrap();
    let next = AtomicU64::new(0);
    pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        if let Some(gst::PadProbeData::Buffer(buffer)) = info.data.as_mut() {
            let i = next.fetch_add(1, Ordering::SeqCst);
            let b = buffer.make_mut();
            b.map_writable().unwrap()[..8].copy_from_slice(&i.to_le_bytes());
            b.set_flags(if i.is_multiple_of(50) {
                gst::BufferFlags::empty()
            } else {
                gst::BufferFlags::DELTA_UNIT
            });
        }
        gst::PadProbeReturn::Ok
    });
}

/// `eos-mode=play-out`, an output 4 s behind a live input of 6 s: once the input has ended, a
/// change of offset to 3 s moves the output 1 s forward, as it does while the input runs.
/// (After the input's end the input position was taken as its last buffer, not where the input
/// would be now: the output jumped back to the keyframe before its own position and delivered
/// again what it had sent.)
#[test]
fn after_the_input_ended_a_changed_offset_moves_the_output_by_the_difference() {
    let p = pipeline(
        "fakesrc name=src is-live=true sync=true num-buffers=300 sizetype=fixed sizemax=1316 \
         filltype=pattern-span datarate=65800 ! identity name=in \
         ! offset-tee name=t eos-mode=play-out src_0::offset=4000000000 \
         t.src_0 ! fakesink name=out sync=false",
    );
    numbered(&p, "src");
    let ended = Arc::new(AtomicU64::new(0));
    let e = ended.clone();
    p.by_name("in")
        .unwrap()
        .static_pad("src")
        .unwrap()
        .add_probe(gst::PadProbeType::EVENT_DOWNSTREAM, move |_, info| {
            if matches!(info.event().map(|e| e.type_()), Some(gst::EventType::Eos)) {
                e.store(1, Ordering::SeqCst);
            }
            gst::PadProbeReturn::Ok
        });
    let tee = p.by_name("t").unwrap();
    let got = Arc::new(Mutex::new(Vec::new()));
    let out = p.by_name("out").unwrap();
    out.set_property("signal-handoffs", true);
    let (g, e) = (got.clone(), ended.clone());
    out.connect("handoff", false, move |args| {
        let buffer = args[1].get::<gst::Buffer>().unwrap();
        let n = number(&buffer.map_readable().unwrap());
        let input_ended = e.load(Ordering::SeqCst) == 1;
        g.lock().unwrap().push((n, buffer, input_ended));
        // Half way through the group from 3 s, 1.5 s after the input's end: 3 s behind is
        // half way through the group from 4 s.
        if n == 175 {
            tee.static_pad("src_0")
                .unwrap()
                .set_property("offset", 3_000_000_000u64);
        }
        None
    });
    run_to_eos(&p, Duration::from_secs(60));
    let got = got.lock().unwrap();
    let numbers: Vec<u64> = got.iter().map(|(n, _, _)| *n).collect();
    let changed = numbers.iter().position(|&n| n == 175).expect("175 sent");
    assert!(got[changed].2, "the input had ended at the change");
    let jumps: Vec<usize> = (1..got.len())
        .filter(|&i| got[i].1.flags().contains(gst::BufferFlags::DISCONT))
        .collect();
    assert_eq!(jumps, [changed + 1], "one jump, right after the change");
    // The keyframe at or before 4.5 s, then on to the end; nothing twice.
    let want: Vec<u64> = (0..=175).chain(200..300).collect();
    assert!(
        numbers == want,
        "delivered {} buffers, around the change: {:?}",
        numbers.len(),
        &numbers[changed.saturating_sub(3)..(changed + 4).min(numbers.len())]
    );
    let landed = &got[changed + 1].1;
    assert!(!landed.flags().contains(gst::BufferFlags::DELTA_UNIT));
    assert!(
        landed.pts() >= got[changed].1.pts(),
        "running time goes back: {:?} after {:?}",
        landed.pts(),
        got[changed].1.pts()
    );
}

/// Buffer `i` of [`payload`], at `pts_ms`, a keyframe or not.
fn buffer_at(i: u64, pts_ms: u64, keyframe: bool) -> gst::Buffer {
    let mut b = gst::Buffer::from_mut_slice(payload(i));
    {
        let b = b.get_mut().unwrap();
        b.set_pts(gst::ClockTime::from_nseconds(pts_ms * MS));
        if !keyframe {
            b.set_flags(gst::BufferFlags::DELTA_UNIT);
        }
    }
    b
}

/// Buffers sharing a store time (one PTS), a delta unit before the keyframe among them: an
/// output that fell behind the in-memory window just after that keyframe reads the store and
/// goes on with the very next buffer. (The store was read from the keyframe, its buffers counted
/// from there, so the ones after it at that time seemed already sent: one was skipped.)
#[test]
fn an_output_falling_behind_inside_buffers_of_one_store_time_skips_none() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let tee = element(&format!(
        "offset-tee sync=false location={}",
        dir.path().display()
    ));
    let mut h = gst_check::Harness::with_element(&tee, Some("sink"), Some("src_0"));
    h.set_src_caps_str(TS_CAPS);
    // 1 s of 10 ms buffers (keyframes every 10th), then four at 1 s: a delta unit, the
    // keyframe, two delta units; then 2.5 s more, beyond the window (2 s).
    let mut input: Vec<gst::Buffer> = (0..100)
        .map(|i| buffer_at(i, i * 10, i.is_multiple_of(10)))
        .collect();
    let keyframe = payload(101);
    input.extend((100..104).map(|i| buffer_at(i, 1000, i == 101)));
    input.extend((104..354).map(|i| buffer_at(i, 1000 + (i - 103) * 10, i.is_multiple_of(10))));
    // The output stops just after the keyframe, until the window forgot it.
    let (blocked_tx, blocked) = std::sync::mpsc::channel();
    let (release, released) = std::sync::mpsc::channel::<()>();
    let released = Mutex::new(released);
    tee.static_pad("src_0")
        .unwrap()
        .add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            if let Some(gst::PadProbeData::Buffer(b)) = info.data.as_ref() {
                if *b.map_readable().unwrap() == keyframe[..] {
                    blocked_tx.send(()).unwrap();
                    let _ = released.lock().unwrap().recv();
                }
            }
            gst::PadProbeReturn::Ok
        });
    h.play();
    for b in &input[..104] {
        h.push(b.clone()).unwrap();
    }
    blocked
        .recv_timeout(Duration::from_secs(60))
        .expect("the keyframe reached the output");
    for b in &input[104..] {
        h.push(b.clone()).unwrap();
    }
    // Complete on disk once the EOS event returns.
    h.push_event(gst::event::Eos::new());
    release.send(()).unwrap();
    let got: Vec<Vec<u8>> = pull_all(&mut h).iter().map(bytes).collect();
    stop(h);
    let want: Vec<Vec<u8>> = input.iter().map(bytes).collect();
    let missing: Vec<usize> = (0..want.len())
        .filter(|&i| !got.contains(&want[i]))
        .collect();
    assert!(
        got == want,
        "{} of {} buffers; missing: {missing:?}",
        got.len(),
        want.len()
    );
}
