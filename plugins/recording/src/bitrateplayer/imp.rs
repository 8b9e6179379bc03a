// SPDX-License-Identifier: MPL-2.0

//! `bitrate-player`: reads a fanout store back at its recorded rate, also
//! while a recorder is still writing it.
//!
//! Lock order: `state`, then `counters`, `flushing` or `settings`. `state` is released
//! before a clock wait, so seeks and stop are never held up.

use std::sync::{Condvar, LazyLock, Mutex};
use std::time::Duration;

use fanout_element_kit::settings::{self as kit, Properties};
use fanout_element_kit::stats::Stats;
use fanout_store::{BufferRecord, Entry, Next, Reader};
use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use gst_base::subclass::base_src::CreateSuccess;
use gst_base::subclass::prelude::*;

use super::settings::{Settings, DEFAULT_IS_LIVE, PROP_IS_LIVE};
use crate::playout::Playout;

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "bitrate-player",
        gst::DebugColorFlags::empty(),
        Some("fanout player reading a recording back at its recorded rate"),
    )
});

/// How often a following player looks for new data at the live edge.
const FOLLOW_POLL: Duration = Duration::from_millis(10);

struct State {
    reader: Reader,
    /// Settings fixed from READY on, kept here for the streaming thread.
    follow: bool,
    live: bool,
    playout: Playout,
    caps: Option<String>,
    /// Plays still to start after this one (-1: forever).
    loops_left: i32,
    discont: bool,
}

/// Kept after stop, so an application can read them once playback ended.
#[derive(Debug, Default, Clone, Copy)]
struct Counters {
    buffers_out: u64,
    bytes_out: u64,
    skipped: u64,
    loops_done: u64,
}

#[derive(Default)]
struct Flushing {
    flushing: bool,
    clock_id: Option<gst::SingleShotClockId>,
}

pub struct BitratePlayer {
    settings: Mutex<Settings>,
    state: Mutex<Option<State>>,
    counters: Mutex<Counters>,
    flushing: Mutex<Flushing>,
    wake: Condvar,
    /// Stats on the bus once a second while buffers flow.
    stats: Stats,
}

/// A live player about to wait longer than this for the next buffer says so.
const LONG_PAUSE: u64 = 10_000_000_000;

impl BitratePlayer {
    /// The next buffer record to play, handling caps, tags, the live edge
    /// and loops on the way.
    fn next_record(&self, state: &mut State) -> Result<BufferRecord, gst::FlowError> {
        let follow = state.follow;
        loop {
            let next = state.reader.read_next().map_err(|e| {
                gst::element_imp_error!(
                    self,
                    gst::ResourceError::Read,
                    ("Cannot read the recording"),
                    ["{}", e]
                );
                gst::FlowError::Error
            })?;
            self.post_reader_warnings(state);
            match next {
                Next::Entry(Entry::Buffer(rec)) => return Ok(rec),
                Next::Entry(Entry::Caps(caps)) => self.apply_caps(state, caps)?,
                Next::Entry(Entry::Tags(tags)) => self.apply_tags(&tags),
                Next::Pending if follow => self.sleep(FOLLOW_POLL)?,
                Next::Pending | Next::End => {
                    if state.loops_left == 0 {
                        gst::debug!(CAT, imp = self, "end of recording");
                        return Err(gst::FlowError::Eos);
                    }
                    if state.loops_left > 0 {
                        state.loops_left -= 1;
                    }
                    self.counters.lock().unwrap().loops_done += 1;
                    if state
                        .reader
                        .rewind()
                        .map_err(|e| {
                            gst::element_imp_error!(
                                self,
                                gst::ResourceError::Read,
                                ("Cannot read the recording again from its start"),
                                ["{}", e]
                            );
                            gst::FlowError::Error
                        })?
                        .is_none()
                    {
                        return Err(gst::FlowError::Eos);
                    }
                    state.playout.join_next();
                    gst::debug!(CAT, imp = self, "looping, {} plays left", state.loops_left);
                }
            }
        }
    }

    fn apply_caps(&self, state: &mut State, caps: String) -> Result<(), gst::FlowError> {
        if state.caps.as_deref() == Some(caps.as_str()) {
            return Ok(());
        }
        let parsed = caps.parse::<gst::Caps>().map_err(|_| {
            gst::element_imp_error!(
                self,
                gst::StreamError::Format,
                ("The recording's caps cannot be read"),
                ["recorded caps {}", caps]
            );
            gst::FlowError::NotNegotiated
        })?;
        gst::debug!(CAT, imp = self, "caps {parsed}");
        self.obj().set_caps(&parsed).map_err(|_| {
            gst::element_imp_error!(
                self,
                gst::CoreError::Negotiation,
                ("Downstream refused the recording's caps"),
                ["recorded caps {}", caps]
            );
            gst::FlowError::NotNegotiated
        })?;
        state.caps = Some(caps);
        Ok(())
    }

    fn apply_tags(&self, tags: &str) {
        match crate::tags_from_string(tags) {
            Some(list) => {
                let _ = self.obj().src_pad().push_event(gst::event::Tag::new(list));
            }
            None => gst::warning!(CAT, imp = self, "unreadable recorded tags {tags}"),
        }
    }

    /// Whatever follows a reader's warning is a discontinuity.
    fn post_reader_warnings(&self, state: &mut State) {
        for w in state.reader.take_warnings() {
            state.discont = true;
            gst::element_imp_warning!(
                self,
                gst::ResourceError::Read,
                ("Damaged recording: part of it is skipped"),
                ["{}", w]
            );
        }
    }

    fn is_live(&self) -> bool {
        self.settings.lock().unwrap().is_live
    }

    /// Sleeps unless flushing; `Err(Flushing)` when woken by a flush.
    fn sleep(&self, d: Duration) -> Result<(), gst::FlowError> {
        let f = self.flushing.lock().unwrap();
        if f.flushing {
            return Err(gst::FlowError::Flushing);
        }
        let (f, _) = self.wake.wait_timeout(f, d).unwrap();
        if f.flushing {
            return Err(gst::FlowError::Flushing);
        }
        Ok(())
    }

    /// Waits on the pipeline clock until running time `at`.
    fn wait_until(&self, at: gst::ClockTime) -> Result<(), gst::FlowError> {
        let obj = self.obj();
        let (Some(clock), Some(base)) = (obj.clock(), obj.base_time()) else {
            return Ok(());
        };
        let id = clock.new_single_shot_id(base.saturating_add(at));
        {
            let mut f = self.flushing.lock().unwrap();
            if f.flushing {
                return Err(gst::FlowError::Flushing);
            }
            f.clock_id = Some(id.clone());
        }
        let (res, _) = id.wait();
        let mut f = self.flushing.lock().unwrap();
        f.clock_id = None;
        match res {
            Err(gst::ClockError::Unscheduled) => Err(gst::FlowError::Flushing),
            _ if f.flushing => Err(gst::FlowError::Flushing),
            _ => Ok(()),
        }
    }

    fn stats(&self) -> gst::Structure {
        let c = *self.counters.lock().unwrap();
        gst::Structure::builder("fanout-bitrate-player-stats")
            .field("buffers-out", c.buffers_out)
            .field("bytes-out", c.bytes_out)
            .field("buffers-skipped", c.skipped)
            .field("loops-done", c.loops_done)
            .build()
    }
}

#[glib::object_subclass]
impl ObjectSubclass for BitratePlayer {
    const NAME: &'static str = "GstBitratePlayer";
    type Type = super::BitratePlayer;
    type ParentType = gst_base::PushSrc;

    fn new() -> Self {
        BitratePlayer {
            settings: Mutex::new(Settings::default()),
            state: Mutex::new(None),
            counters: Mutex::new(Counters::default()),
            flushing: Mutex::new(Flushing::default()),
            wake: Condvar::new(),
            stats: Stats::default(),
        }
    }
}

impl ObjectImpl for BitratePlayer {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            let mut specs = Settings::param_specs();
            specs.push(
                glib::ParamSpecBoxed::builder::<gst::Structure>("stats")
                    .nick("Statistics")
                    .blurb("fanout-bitrate-player-stats, also posted on the bus every second while playing: buffers-out, bytes-out, buffers-skipped (damaged), loops-done")
                    .read_only()
                    .build(),
            );
            specs
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut s = self.settings.lock().unwrap();
        let res = s.set(pspec.name(), value);
        let live = s.is_live;
        drop(s);
        if pspec.name() == PROP_IS_LIVE {
            self.obj().set_live(live);
        }
        kit::log_set_error(*CAT, &*self.obj(), res);
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let got = match pspec.name() {
            "stats" => Ok(self.stats().to_value()),
            name => self.settings.lock().unwrap().get(name),
        };
        kit::or_default(*CAT, &*self.obj(), pspec, got)
    }

    fn constructed(&self) {
        self.parent_constructed();
        let obj = self.obj();
        obj.set_format(gst::Format::Time);
        obj.set_live(DEFAULT_IS_LIVE);
    }
}

impl GstObjectImpl for BitratePlayer {}

impl ElementImpl for BitratePlayer {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static ELEMENT_METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "Bitrate player",
                "Source/File",
                "Plays a fanout recording back at its recorded rate, also while it is being written",
                "The fanout developers",
            )
        });
        Some(&*ELEMENT_METADATA)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static PAD_TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            vec![gst::PadTemplate::new(
                "src",
                gst::PadDirection::Src,
                gst::PadPresence::Always,
                &gst::Caps::new_any(),
            )
            .unwrap()]
        });
        PAD_TEMPLATES.as_ref()
    }
}

impl BaseSrcImpl for BitratePlayer {
    fn start(&self) -> Result<(), gst::ErrorMessage> {
        self.stats.started();
        let settings = self.settings.lock().unwrap().clone();
        let Some(location) = settings.location else {
            return Err(gst::error_msg!(
                gst::ResourceError::NotFound,
                ("No location set: bitrate-player needs the directory of a recording"),
                ["property location is unset or empty"]
            ));
        };
        let reader = Reader::open(&location).map_err(|e| {
            gst::error_msg!(
                gst::ResourceError::NotFound,
                ("Could not open recording {}", location.display()),
                ["{}", e]
            )
        })?;
        if !settings.follow && !reader.writer_active() && reader.range().ok().flatten().is_none() {
            return Err(gst::error_msg!(
                gst::ResourceError::NotFound,
                ("Recording {} is empty", location.display()),
                ["Set follow=true to wait for a recorder to fill it"]
            ));
        }
        gst::info!(CAT, imp = self, "playing {}", location.display());
        *self.state.lock().unwrap() = Some(State {
            reader,
            follow: settings.follow,
            live: settings.is_live,
            playout: Playout::default(),
            caps: None,
            loops_left: settings.loop_count,
            discont: true,
        });
        *self.counters.lock().unwrap() = Counters::default();
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        *self.state.lock().unwrap() = None;
        Ok(())
    }

    fn is_seekable(&self) -> bool {
        true
    }

    fn do_seek(&self, segment: &mut gst::Segment) -> bool {
        let Some(seg) = segment.downcast_mut::<gst::ClockTime>() else {
            return false;
        };
        let mut guard = self.state.lock().unwrap();
        let Some(state) = guard.as_mut() else {
            return false;
        };
        let target = seg.start().map_or(0, gst::ClockTime::nseconds);
        let landed = match state.reader.seek(target) {
            Ok(l) => l,
            Err(e) => {
                gst::warning!(CAT, imp = self, "seek failed: {e}");
                return false;
            }
        };
        gst::debug!(CAT, imp = self, "seek to {target} landed at {landed:?}");
        state.playout.reset();
        state.caps = None;
        state.discont = true;
        let landed = gst::ClockTime::from_nseconds(landed.unwrap_or(target));
        if self.is_live() {
            // Live output timestamps are running times of this pipeline: the
            // segment stays at zero; only its stream time says where we are.
            seg.set_start(gst::ClockTime::ZERO);
            seg.set_stop(gst::ClockTime::NONE);
            seg.set_position(gst::ClockTime::ZERO);
            seg.set_time(landed);
        } else {
            // Output timestamps are store times: start the segment at the
            // keyframe landed on so running time starts at zero.
            seg.set_start(landed);
            seg.set_time(landed);
            seg.set_position(landed);
        }
        true
    }

    fn query(&self, query: &mut gst::QueryRef) -> bool {
        if let gst::QueryViewMut::Latency(q) = query.view_mut() {
            // Buffers wait on disk, not in memory: any amount of downstream
            // latency can be absorbed, so there is no maximum.
            q.set(self.is_live(), gst::ClockTime::ZERO, gst::ClockTime::NONE);
            return true;
        }
        if let gst::QueryViewMut::Duration(q) = query.view_mut() {
            let settings = self.settings.lock().unwrap().clone();
            if q.format() == gst::Format::Time && !settings.follow {
                // A reader of its own: the streaming thread holds the state
                // while it pushes caps, and downstream asks for the duration then.
                let range = settings
                    .location
                    .and_then(|l| Reader::open(&l).ok())
                    .and_then(|r| r.range().ok().flatten());
                if let Some((_, end)) = range {
                    q.set(gst::ClockTime::from_nseconds(end));
                    return true;
                }
            }
        }
        BaseSrcImplExt::parent_query(self, query)
    }

    fn unlock(&self) -> Result<(), gst::ErrorMessage> {
        let mut f = self.flushing.lock().unwrap();
        f.flushing = true;
        if let Some(id) = f.clock_id.take() {
            id.unschedule();
        }
        self.wake.notify_all();
        Ok(())
    }

    fn unlock_stop(&self) -> Result<(), gst::ErrorMessage> {
        self.flushing.lock().unwrap().flushing = false;
        Ok(())
    }
}

impl PushSrcImpl for BitratePlayer {
    fn create(
        &self,
        _buffer: Option<&mut gst::BufferRef>,
    ) -> Result<CreateSuccess, gst::FlowError> {
        let mut guard = self.state.lock().unwrap();
        let state = guard.as_mut().ok_or(gst::FlowError::Flushing)?;
        let live = state.live;
        loop {
            let rec = self.next_record(state)?;
            gst::trace!(
                CAT,
                imp = self,
                "record at store time {} data offset {}",
                rec.st,
                rec.offset
            );
            let mut buffer = gst::Buffer::with_size(rec.size as usize).map_err(|_| {
                gst::element_imp_error!(
                    self,
                    gst::ResourceError::NoSpaceLeft,
                    ("Cannot allocate {} bytes", rec.size),
                    ["a buffer of the recording at store time {}", rec.st]
                );
                gst::FlowError::Error
            })?;
            let intact = {
                let buf = buffer.get_mut().unwrap();
                let mut map = buf.map_writable().map_err(|_| gst::FlowError::Error)?;
                state.reader.read_data(&rec, &mut map).map_err(|e| {
                    gst::element_imp_error!(
                        self,
                        gst::ResourceError::Read,
                        ("{}", e),
                        ["reading the data of the buffer at store time {}", rec.st]
                    );
                    gst::FlowError::Error
                })?
            };
            self.post_reader_warnings(state);
            if !intact {
                self.counters.lock().unwrap().skipped += 1;
                state.discont = true;
                continue;
            }
            let obj = self.obj();
            let placed = state.playout.place(&rec, || match live {
                true => obj
                    .current_running_time()
                    .map_or(0, gst::ClockTime::nseconds),
                false => rec.st,
            });
            if placed.jumped {
                gst::element_imp_warning!(
                    self,
                    gst::StreamError::Format,
                    ("Damaged recording: its time jumps; played on without waiting"),
                    [
                        "store time {} goes back, or follows a buffer more than a day before it",
                        rec.st
                    ]
                );
                state.discont = true;
            }
            {
                let buf = buffer.get_mut().unwrap();
                let mut flags = gst::BufferFlags::from_bits_truncate(rec.flags);
                flags.set(gst::BufferFlags::DISCONT, state.discont);
                buf.set_flags(flags);
                buf.set_pts(placed.pts.map(gst::ClockTime::from_nseconds));
                buf.set_dts(placed.dts.map(gst::ClockTime::from_nseconds));
                buf.set_duration(rec.duration.map(gst::ClockTime::from_nseconds));
            }
            state.discont = false;
            {
                let mut c = self.counters.lock().unwrap();
                c.buffers_out += 1;
                c.bytes_out += u64::from(rec.size);
            }
            self.stats.post_when_due(&*self.obj(), || self.stats());
            if live {
                let now = obj
                    .current_running_time()
                    .map_or(0, gst::ClockTime::nseconds);
                if placed.at.saturating_sub(now) > LONG_PAUSE {
                    gst::element_imp_warning!(
                        self,
                        gst::StreamError::Format,
                        (
                            "The recording pauses here for {} s",
                            (placed.at - now) / 1_000_000_000
                        ),
                        ["the next buffer, at store time {}, is due then", rec.st]
                    );
                }
                // Wait without holding the state: stop and seeks need it.
                drop(guard);
                self.wait_until(gst::ClockTime::from_nseconds(placed.at))?;
            }
            return Ok(CreateSuccess::NewBuffer(buffer));
        }
    }
}
