// SPDX-License-Identifier: MPL-2.0

//! One output of `offset-tee`, run by its source pad's task: each buffer leaves `offset` after
//! the input received it, from the in-memory window while the output keeps up, from the store
//! once it is behind. Timestamps are placed by the player's [`Playout`].

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use fanout_store::window::{Position, Positions};
use fanout_store::{Entry, Next, Reader};
use gst::prelude::*;
use gst::subclass::prelude::*;

use super::eos::EosMode;
use super::input::{Held, Input};
use super::pad::OffsetTeeSrcPad;
use super::CAT;
use crate::playout::{Playout, MAX_TIME};

/// How long a task waits for new input before looking again (a change of offset, a flush
/// and new input all wake it earlier).
const IDLE_WAIT: Duration = Duration::from_millis(20);

/// Where an output goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Cursor {
    /// Not placed yet: at start, and after a change of offset.
    #[default]
    Unplaced,
    /// The first buffer at or after this store time.
    From(u64),
    /// This buffer (a keyframe landed on), then what follows.
    At(Position),
    /// The buffer after this one.
    After(Position),
}

#[derive(Debug, Default, Clone, Copy)]
pub struct OutputStats {
    pub position: u64,
    pub lag: u64,
    pub buffers: u64,
    pub bytes: u64,
    pub disconts: u64,
    pub loops: u64,
    pub from_store: bool,
}

/// An output's state, owned by its task.
#[derive(Default)]
pub struct Output {
    cursor: Cursor,
    /// Reading the store: the output is behind the in-memory window.
    reader: Option<Reader>,
    /// Positions of what the reader yields.
    read_positions: Positions,
    /// A buffer taken but not sent: its clock wait was woken (the input's EOS, a change of
    /// offset). A reader does not give it again, so it goes first, unless the output jumps.
    pending: Option<Held>,
    playout: Playout,
    /// The origin the next placed buffer gets after a (re)placing, at the earliest.
    origin: Option<u64>,
    /// Running time the output reached: never goes back.
    end: u64,
    caps: Option<Arc<str>>,
    stream_started: bool,
    segment_sent: bool,
    discont: bool,
    warned_too_far: bool,
    loops: u64,
    /// Requested while the input was already flowing: starts from the input's position now,
    /// not from the run's first buffer.
    pub late_join: bool,
}

impl Output {
    /// Starts over (a flush, a restart of the task).
    pub fn reset(&mut self) {
        *self = Output::default();
    }
}

/// What one step found.
enum Step {
    Buffer(Held),
    Caps(Arc<str>),
    Tags(String),
    Wait,
    /// The stored content played out and the input ended.
    End,
}

/// What an output's task sees of its element: the input side (window, anchor, end), the
/// store's directory, the element's settings of the moment, and the pipeline clock. Made by
/// the element for each step; the output never calls back into it.
pub struct InputView<'a> {
    pub element: &'a gst::Element,
    pub sinkpad: &'a gst::Pad,
    pub input: &'a Mutex<Input>,
    /// Notified when input arrives or ends.
    pub data: &'a Condvar,
    pub location: Option<Arc<Path>>,
    pub sync: bool,
    pub eos_mode: EosMode,
    pub stopping: &'a AtomicBool,
}

impl InputView<'_> {
    fn location(&self) -> Option<Arc<Path>> {
        self.location.clone()
    }

    fn eos_mode(&self) -> EosMode {
        self.eos_mode
    }

    fn sync(&self) -> bool {
        self.sync
    }

    fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    fn obj(&self) -> &gst::Element {
        self.element
    }

    /// One step of `pad`'s task: places the output if it must, then delivers one buffer at its
    /// time, or waits a little for input.
    pub fn output_step(&self, pad: &OffsetTeeSrcPad) {
        let p = pad.imp();
        let mut out = p.output.lock().unwrap();
        if !out.stream_started {
            out.stream_started = true;
            let id = self.stream_id(pad);
            let _ = pad.push_event(gst::event::StreamStart::new(&id));
        }
        if p.jump.swap(false, Ordering::SeqCst) && out.cursor != Cursor::Unplaced {
            out.cursor = Cursor::Unplaced;
            out.discont = true;
        }
        let offset = p.settings.lock().unwrap().offset;
        if out.cursor == Cursor::Unplaced {
            if !self.place(pad, &mut out, offset) {
                // The input ended without a buffer: nothing to wait for.
                if self.input.lock().unwrap().ended {
                    self.send_eos(pad);
                    return;
                }
                self.idle();
                return;
            }
            if !out.segment_sent {
                let caps = self.input.lock().unwrap().caps.clone();
                self.preroll(pad, &mut out, caps);
                return;
            }
        }
        let step = match self.next_item(&mut out) {
            Ok(Step::Wait) => {
                self.idle();
                return;
            }
            Ok(step) => step,
            Err(e) => {
                gst::element_error!(
                    self.element,
                    gst::ResourceError::Read,
                    ("{}: cannot read the store", pad.name()),
                    ["{e}"]
                );
                let _ = pad.pause_task();
                return;
            }
        };
        match step {
            Step::Caps(caps) => self.push_caps(pad, &mut out, caps),
            Step::Tags(tags) => {
                if let Some(list) = crate::tags_from_string(&tags) {
                    let _ = pad.push_event(gst::event::Tag::new(list));
                }
            }
            Step::Buffer(held) if self.cut(held.rec.st, offset) => {
                gst::debug!(
                    CAT,
                    obj = pad,
                    "the input ended: EOS at store time {}",
                    held.rec.st
                );
                self.send_eos(pad);
            }
            Step::Buffer(held) => self.deliver(pad, &mut out, held, offset),
            Step::End => self.end_of_content(pad, &mut out),
            Step::Wait => unreachable!("handled above"),
        }
    }

    /// In `eos-mode=end`, whether the output stops before the buffer at store time `st`.
    fn cut(&self, st: u64, offset: u64) -> bool {
        let last_st = self.input.lock().unwrap().last_st;
        super::eos::ends_before(self.eos_mode(), last_st, st, offset)
    }

    fn send_eos(&self, pad: &OffsetTeeSrcPad) {
        let _ = pad.push_event(gst::event::Eos::new());
        let _ = pad.pause_task();
    }

    fn idle(&self) {
        let input = self.input.lock().unwrap();
        let _ = self.data.wait_timeout(input, IDLE_WAIT).unwrap();
    }

    fn stream_id(&self, pad: &OffsetTeeSrcPad) -> String {
        let upstream = self
            .sinkpad
            .sticky_event::<gst::event::StreamStart>(0)
            .map(|e| e.stream_id().to_string());
        match upstream {
            Some(id) => format!("{id}/{}", pad.name()),
            None => pad
                .create_stream_id(self.obj(), Some(pad.name().as_str()))
                .to_string(),
        }
    }

    /// Places the output where input position (now − offset) is: in the window if it holds
    /// that, else in the store. False while there is no input to place it against yet.
    /// The store is read without the input's lock: the input never waits on a disk.
    fn place(&self, pad: &OffsetTeeSrcPad, out: &mut Output, offset: u64) -> bool {
        // An output there from the start begins `offset` before the run's first buffer, however
        // late its task gets here: a fast input may have sent many buffers by then.
        let from_start = !out.segment_sent && !out.late_join;
        let (anchor, live, wanted, target, in_window, stored_before) = {
            let input = self.input.lock().unwrap();
            let Some(anchor) = input.anchor else {
                return false;
            };
            let now = self.running_time().unwrap_or(anchor.first_arrival);
            // Store time the input is at: its newest buffer (which an output without offset
            // starts with). Once it ended, where it would be now: the outputs' running time
            // goes on, and its last buffer would put a jump that far behind their schedule.
            let live = match input.window.newest() {
                Some(e) if !input.ended => e.position.st,
                _ => anchor.store_time_at(now),
            };
            // Store time wanted, below 0 when the offset reaches back before the store began.
            let wanted =
                i128::from(if from_start { anchor.first_st } else { live }) - i128::from(offset);
            let target = u64::try_from(wanted).unwrap_or(0);
            let stored_before = input.stored_before;
            let in_window = if from_start {
                // Nothing is older than this run's first buffer in a new store.
                let target = if stored_before {
                    target
                } else {
                    target.max(anchor.first_st)
                };
                let held = input
                    .window
                    .oldest()
                    .is_some_and(|e| e.position.st <= target);
                (held || offset == 0).then_some(Cursor::From(target))
            } else {
                // A jump or a late join lands on a keyframe, as the player's seeks do; the
                // store has the one the window does not hold.
                input
                    .window
                    .keyframe_at_or_before(target, |h| h.rec.is_keyframe())
                    .map(|e| Cursor::At(e.position))
            };
            (anchor, live, wanted, target, in_window, stored_before)
        };
        out.reader = None;
        out.pending = None;
        if let Some(cursor) = in_window {
            out.cursor = cursor;
        } else {
            match self.open_reader(target) {
                Ok(Some((reader, landed))) => {
                    gst::debug!(CAT, obj = pad, "the store has {target} from {landed} on");
                    // Older content than the store holds was there once (earlier in this
                    // run, or in a recording before it): retention removed it.
                    let existed = wanted >= i128::from(anchor.first_st) || stored_before;
                    let short = i128::from(landed) - wanted;
                    if short > 0 && existed && !out.warned_too_far {
                        out.warned_too_far = true;
                        gst::element_warning!(
                            self.element,
                            gst::ResourceError::Read,
                            ("{}: offset {} ns reaches further back than what is stored; starting at the oldest stored data", pad.name(), offset),
                            ["The store begins {} ns after the position asked for", short]
                        );
                    }
                    out.reader = Some(reader);
                    out.read_positions = Positions::default();
                    out.cursor = Cursor::From(target.min(landed));
                }
                // Nothing stored yet: the window will have it.
                Ok(None) => out.cursor = Cursor::From(target),
                Err(e) => {
                    gst::warning!(CAT, obj = pad, "cannot read the store: {e}");
                    out.cursor = Cursor::From(target);
                }
            }
        }
        out.playout.reset();
        // Each buffer keeps its input running time plus the offset; after a jump the running
        // time still only goes on.
        out.origin = Some(out.end);
        gst::debug!(
            CAT,
            obj = pad,
            "placed at store time {target} (live {live}, offset {offset}, from the {})",
            if out.reader.is_some() {
                "store"
            } else {
                "window"
            }
        );
        true
    }

    fn open_reader(&self, st: u64) -> Result<Option<(Reader, u64)>, fanout_store::Error> {
        let Some(location) = self.location() else {
            return Ok(None);
        };
        let mut reader = Reader::open(&location)?;
        Ok(reader.seek(st)?.map(|landed| (reader, landed)))
    }

    /// The next item for the output: from the window, or from the store while behind it.
    fn next_item(&self, out: &mut Output) -> Result<Step, fanout_store::Error> {
        if let Some(held) = out.pending.take() {
            return Ok(Step::Buffer(held));
        }
        if out.reader.is_some() {
            return self.next_from_store(out);
        }
        let input = self.input.lock().unwrap();
        let entry = match out.cursor {
            Cursor::From(st) => input.window.at_or_after(st),
            Cursor::At(position) => input.window.get(position),
            Cursor::After(position) => input.window.after(position),
            Cursor::Unplaced => unreachable!("placed first"),
        };
        if let Some(entry) = entry {
            if out.caps.as_deref() != entry.item.caps.as_deref() {
                if let Some(caps) = entry.item.caps.clone() {
                    return Ok(Step::Caps(caps));
                }
            }
            return Ok(Step::Buffer(entry.item.clone()));
        }
        let behind = match out.cursor {
            Cursor::After(position) | Cursor::At(position) => input.window.get(position).is_none(),
            Cursor::From(st) => input.window.oldest().is_some_and(|e| e.position.st > st),
            Cursor::Unplaced => false,
        };
        let ended = input.ended;
        drop(input);
        if behind {
            // The window forgot what comes next: read it from the store.
            let from = match out.cursor {
                Cursor::After(position) | Cursor::At(position) => position.st,
                Cursor::From(st) => st,
                Cursor::Unplaced => 0,
            };
            // From before `from`: a seek to it lands on its first keyframe, and buffers of that
            // store time before the keyframe would be left out of the reader's ordinals, which
            // must match the window's for the cursor to pick up at the right buffer.
            if let Some((reader, _)) = self.open_reader(from.saturating_sub(1))? {
                gst::debug!(
                    CAT,
                    obj = self.element,
                    "an output fell behind the window: reading the store"
                );
                out.reader = Some(reader);
                out.read_positions = Positions::default();
                return Ok(Step::Wait);
            }
        }
        Ok(if ended { Step::End } else { Step::Wait })
    }

    fn next_from_store(&self, out: &mut Output) -> Result<Step, fanout_store::Error> {
        let reader = out.reader.as_mut().expect("checked by the caller");
        loop {
            match reader.read_next()? {
                Next::Entry(Entry::Caps(caps)) => {
                    if out.caps.as_deref() != Some(caps.as_str()) {
                        return Ok(Step::Caps(caps.into()));
                    }
                }
                Next::Entry(Entry::Tags(tags)) => return Ok(Step::Tags(tags)),
                Next::Entry(Entry::Buffer(rec)) => {
                    let position = out.read_positions.next(rec.st);
                    let wanted = match out.cursor {
                        Cursor::From(st) => rec.st >= st,
                        Cursor::After(p) => position > p,
                        Cursor::At(p) => position >= p,
                        Cursor::Unplaced => true,
                    };
                    if !wanted {
                        continue;
                    }
                    let mut buffer = gst::Buffer::with_size(rec.size as usize)
                        .map_err(|_| fanout_store::Error::TooLarge(rec.size as usize))?;
                    let intact = {
                        let mut map = buffer.get_mut().unwrap().map_writable().unwrap();
                        reader.read_data(&rec, &mut map)?
                    };
                    for w in reader.take_warnings() {
                        gst::warning!(CAT, obj = self.element, "{w}");
                    }
                    if !intact {
                        out.discont = true;
                        continue;
                    }
                    return Ok(Step::Buffer(Held {
                        buffer,
                        rec,
                        position,
                        caps: out.caps.clone(),
                    }));
                }
                Next::Pending => {
                    gst::log!(
                        CAT,
                        obj = self.element,
                        "store: nothing more yet after {:?}",
                        out.cursor
                    );
                    // At the store's end: back to the window once it holds what follows.
                    let input = self.input.lock().unwrap();
                    if let Cursor::After(p) = out.cursor {
                        if input.window.after(p).is_some() {
                            drop(input);
                            gst::debug!(
                                CAT,
                                obj = self.element,
                                "an output caught up: back to the window"
                            );
                            out.reader = None;
                            return self.next_item(out);
                        }
                    }
                    return Ok(if input.ended { Step::End } else { Step::Wait });
                }
                Next::End => {
                    gst::debug!(CAT, obj = self.element, "store: end after {:?}", out.cursor);
                    return Ok(Step::End);
                }
            }
        }
    }

    /// Caps, segment and a gap from the start: the output's sink prerolls at once, as it
    /// would behind a live source, instead of holding the pipeline back until the output's
    /// first buffer is due.
    fn preroll(&self, pad: &OffsetTeeSrcPad, out: &mut Output, caps: Option<Arc<str>>) {
        if let Some(caps) = caps {
            self.push_caps(pad, out, caps);
        }
        self.push_segment(pad, out);
        let _ = pad.push_event(gst::event::Gap::builder(gst::ClockTime::ZERO).build());
    }

    fn push_segment(&self, pad: &OffsetTeeSrcPad, out: &mut Output) {
        if !out.segment_sent {
            out.segment_sent = true;
            let segment = gst::FormattedSegment::<gst::ClockTime>::new();
            let _ = pad.push_event(gst::event::Segment::new(&segment));
        }
    }

    fn push_caps(&self, pad: &OffsetTeeSrcPad, out: &mut Output, caps: Arc<str>) {
        match caps.parse::<gst::Caps>() {
            Ok(c) => {
                let _ = pad.push_event(gst::event::Caps::new(&c));
            }
            Err(_) => gst::warning!(CAT, obj = pad, "unreadable caps {caps}"),
        }
        out.caps = Some(caps);
    }

    /// Sends one buffer at its time: the input's running time plus the offset.
    fn deliver(&self, pad: &OffsetTeeSrcPad, out: &mut Output, held: Held, offset: u64) {
        let (rec, position) = (held.rec, held.position);
        let anchor = self
            .input
            .lock()
            .unwrap()
            .anchor
            .expect("placed against it");
        let floor = out.origin.take();
        let placed = out.playout.place(&rec, || {
            let own = anchor.time_of(rec.st, offset);
            own.max(floor.unwrap_or(0)).min(MAX_TIME)
        });
        let release = placed.at.saturating_add(anchor.lateness).min(MAX_TIME);
        gst::trace!(
            CAT,
            obj = pad,
            "store time {} due at running time {release} (now {:?})",
            rec.st,
            self.running_time()
        );
        if self.sync() && !self.wait_until(pad, release, || self.cut(rec.st, offset)) {
            // Woken by the input's EOS, a change of offset, a flush or a stop: this buffer
            // waits for its turn again, unless the output jumps elsewhere.
            out.origin = floor;
            out.pending = Some(held);
            return;
        }
        self.push_segment(pad, out);
        let mut buffer = held.buffer;
        {
            let b = buffer.make_mut();
            let ts = |t: Option<u64>| t.map(|t| gst::ClockTime::from_nseconds(t.min(MAX_TIME)));
            b.set_pts(ts(placed.pts));
            b.set_dts(ts(placed.dts));
            b.set_duration(ts(rec.duration));
            let mut flags = gst::BufferFlags::from_bits_truncate(rec.flags);
            flags.set(gst::BufferFlags::DISCONT, out.discont || placed.jumped);
            b.set_flags(flags);
        }
        let size = buffer.size() as u64;
        let lag = self
            .running_time()
            .map_or(0, |now| now.saturating_sub(release));
        let res = pad.push(buffer);
        out.cursor = Cursor::After(position);
        out.end = out
            .end
            .max(placed.at.saturating_add(rec.duration.unwrap_or(0)));
        {
            // Its own lock: statistics are read (every second, by the writing thread too)
            // while the task holds the output's state for a whole clock wait.
            let mut s = pad.imp().stats.lock().unwrap();
            s.position = rec.st;
            s.lag = lag;
            s.buffers += 1;
            s.bytes += size;
            s.disconts += u64::from(out.discont);
            s.from_store = out.reader.is_some();
            s.loops = out.loops;
        }
        out.discont = false;
        match res {
            // As `tee` does: an output nobody takes yet (unlinked, or linked to a sink not
            // started yet) drops its buffers and keeps its schedule.
            Ok(_) | Err(gst::FlowError::NotLinked) => (),
            Err(gst::FlowError::Flushing) if !pad.pad_flags().contains(gst::PadFlags::FLUSHING) => {
            }
            Err(gst::FlowError::Flushing) | Err(gst::FlowError::Eos) => {
                let _ = pad.pause_task();
            }
            Err(e) => {
                gst::debug!(CAT, obj = pad, "downstream returned {e:?}: output paused");
                let _ = pad.pause_task();
            }
        }
    }

    /// The input ended and the output has played what is stored: again (`loop`), or EOS.
    fn end_of_content(&self, pad: &OffsetTeeSrcPad, out: &mut Output) {
        let loops = pad.imp().settings.lock().unwrap().loops;
        let again = self.eos_mode() == EosMode::PlayOut && (loops < 0 || out.loops < loops as u64);
        if again {
            if let Ok(Some((reader, _))) = self.open_reader(0) {
                out.loops += 1;
                pad.imp().stats.lock().unwrap().loops = out.loops;
                out.reader = Some(reader);
                out.read_positions = Positions::default();
                out.cursor = Cursor::From(0);
                out.playout.join_next();
                gst::debug!(CAT, obj = pad, "looping, {} done", out.loops);
                return;
            }
        }
        gst::debug!(CAT, obj = pad, "end of stream");
        self.send_eos(pad);
    }

    /// Waits on the pipeline clock until running time `at`; false if woken before, or if
    /// `cut` says the output ends first (the input's EOS may have come just before the wait).
    fn wait_until(&self, pad: &OffsetTeeSrcPad, at: u64, cut: impl Fn() -> bool) -> bool {
        let obj = self.obj();
        let (Some(clock), Some(base)) = (obj.clock(), obj.base_time()) else {
            return true;
        };
        let id = clock.new_single_shot_id(base.saturating_add(gst::ClockTime::from_nseconds(at)));
        *pad.imp().wait.lock().unwrap() = Some(id.clone());
        if pad.imp().jump.load(Ordering::SeqCst) || self.stopping() || cut() {
            *pad.imp().wait.lock().unwrap() = None;
            return false;
        }
        let (res, jitter) = id.wait();
        *pad.imp().wait.lock().unwrap() = None;
        gst::trace!(CAT, obj = pad, "clock wait: {res:?}, jitter {jitter}");
        !matches!(res, Err(gst::ClockError::Unscheduled))
            && !pad.imp().jump.load(Ordering::SeqCst)
            && !self.stopping()
    }

    /// Running time now on the pipeline clock.
    fn running_time(&self) -> Option<u64> {
        self.obj()
            .current_running_time()
            .map(gst::ClockTime::nseconds)
    }
}
