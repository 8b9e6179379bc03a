//! Helpers for tests that run GStreamer the way users do: `gst-launch-1.0`
//! in a process of its own, with the plugins built by this workspace.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The directory holding the plugin libraries of the profile under test.
///
/// Cargo builds a dependency's `cdylib` only when the workspace itself is
/// built, not for `cargo test`: `scripts/test.sh` runs `cargo build` first,
/// and a library older than the sources is refused rather than tested.
pub fn plugin_dir() -> PathBuf {
    // Test binaries live in target/<profile>/deps.
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap().to_owned();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for plugin in std::fs::read_dir(root.join("plugins")).unwrap() {
        let plugin = plugin.unwrap().path();
        let manifest = std::fs::read_to_string(plugin.join("Cargo.toml")).unwrap();
        // The kit the plugins share is a library, not a plugin.
        if !manifest.contains("cdylib") {
            continue;
        }
        let area = plugin.file_name().unwrap().to_str().unwrap().to_owned();
        let lib = dir.join(format!("libgstfanout{area}.so"));
        let built = std::fs::metadata(&lib)
            .and_then(|m| m.modified())
            .unwrap_or_else(|_| {
                panic!("no {}: run `cargo build --workspace` first", lib.display())
            });
        // The plugin's own sources and those of the workspace crates it uses.
        let mut src_dirs = vec![plugin.join("src"), root.join("wire/src")];
        for (krate, dir) in [
            ("fanout-store", "store"),
            ("fanout-fec", "fec"),
            ("fanout-session", "session"),
            ("gst-plugin-fanout-fec", "plugins/fec"),
            ("fanout-element-kit", "plugins/kit"),
        ] {
            if manifest.contains(krate) {
                src_dirs.push(root.join(dir).join("src"));
            }
        }
        for src in src_dirs {
            assert!(
                newest_mtime(&src) <= built,
                "{} is older than the sources: run `cargo build --workspace` first",
                lib.display()
            );
        }
    }
    dir
}

fn newest_mtime(dir: &Path) -> std::time::SystemTime {
    let mut newest = std::time::UNIX_EPOCH;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let t = if path.is_dir() {
            newest_mtime(&path)
        } else if path.extension().is_some_and(|e| e == "rs") {
            std::fs::metadata(&path).unwrap().modified().unwrap()
        } else {
            continue;
        };
        newest = newest.max(t);
    }
    newest
}

/// `gst-launch-1.0 -e` with our plugins, the pipeline given as words.
pub fn gst_launch(args: &str) -> Command {
    let mut cmd = Command::new("gst-launch-1.0");
    cmd.arg("-e")
        .args(split_words(args))
        .env("GST_PLUGIN_PATH", plugin_dir())
        .env("GST_DEBUG_NO_COLOR", "1")
        .stdin(Stdio::null());
    cmd
}

/// [`gst_launch`] started, its output kept for [`wait_with_timeout`].
pub fn spawn(args: &str) -> Child {
    gst_launch(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("gst-launch-1.0 is installed")
}

/// A receiver, `session-src {src} ! fec-depayloader {depay} ! filesink location={out}`, started.
pub fn spawn_receiver(src: &str, depay: &str, out: &Path) -> Child {
    spawn(&format!(
        "session-src {src} ! fec-depayloader {depay} ! filesink location={}",
        out.display()
    ))
}

/// Runs a pipeline to its end (bounded), returning its output.
pub fn run(args: &str, timeout: Duration) -> Output {
    wait_with_timeout(spawn(args), timeout)
}

pub fn wait_with_timeout(mut child: Child, timeout: Duration) -> Output {
    let deadline = Instant::now() + timeout;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "pipeline did not finish within {timeout:?}:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Splits a gst-launch description into words as a shell would for the
/// strings in pipelines/ (which quote nothing but caps in double quotes).
pub fn split_words(s: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in s.chars() {
        match c {
            '"' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => {
                if !cur.is_empty() {
                    words.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    words
}

/// The files of `dir` ending in `.ext`, in name order.
pub fn files_with_extension(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    files.sort();
    files
}

/// Plays a recording as fast as possible into a file; returns the file's bytes
/// and the pipeline's output.
pub fn play_to_file(dir: &Path, out: &Path) -> (Vec<u8>, String) {
    let res = run(
        &format!(
            "bitrate-player location={} is-live=false ! filesink location={}",
            dir.display(),
            out.display()
        ),
        Duration::from_secs(60),
    );
    let log = text(&res);
    assert!(res.status.success(), "{log}");
    (std::fs::read(out).unwrap(), log)
}

/// The `.ts` segments of a recording, concatenated in name order.
pub fn concat_ts(dir: &Path) -> Vec<u8> {
    files_with_extension(dir, "ts")
        .iter()
        .flat_map(|p| std::fs::read(p).unwrap())
        .collect()
}

/// Frames ffprobe decodes from an MPEG-TS file, as an independent check.
pub fn ffprobe_frames(file: &Path) -> u64 {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-count_frames",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=nb_read_frames",
            "-of",
            "csv=p=0",
        ])
        .arg(file)
        .output()
        .expect("ffprobe is installed");
    let s = String::from_utf8_lossy(&out.stdout);
    // One line per section that lists the stream (program, stream).
    let first = s
        .lines()
        .map(|l| l.trim().trim_end_matches(','))
        .find(|l| !l.is_empty());
    first.and_then(|l| l.parse().ok()).unwrap_or_else(|| {
        panic!(
            "ffprobe could not read {}: {s} {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// H.264 in MPEG-TS at about 2 Mbit/s (noise does not compress).
pub fn encoder(num_buffers: Option<u32>, live: bool) -> String {
    let n = num_buffers.map_or(String::new(), |n| format!("num-buffers={n}"));
    format!(
        "videotestsrc is-live={live} {n} pattern=snow ! video/x-raw,width=320,height=240,framerate=25/1 \
         ! x264enc tune=zerolatency bitrate=2000 key-int-max=25 speed-preset=ultrafast ! mpegtsmux alignment=7"
    )
}

/// A small tmpfs, mounted for the test and unmounted after.
pub struct SmallDisk(tempfile::TempDir);

impl SmallDisk {
    /// Only as root (scripts/test.sh runs the ignored tests then).
    pub fn new(size: &str) -> Self {
        assert!(
            is_root(),
            "needs root to mount a tmpfs: run as root with --include-ignored"
        );
        let dir = tempfile::tempdir().unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "mount -t tmpfs failed although we are root");
        SmallDisk(dir)
    }

    pub fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0.path()).status();
    }
}

/// Hosts on one LAN, each a network namespace with an `eth0` on a bridge (its own
/// namespace too; multicast snooping off, so groups are flooded like on a plain switch),
/// multicast routed on `eth0`. Removed on drop. Needs root.
pub struct Network {
    prefix: String,
}

impl Network {
    /// `hosts`: (name, IPv4 address on 10.78.0.0/24).
    pub fn new(hosts: &[(&str, &str)]) -> Network {
        let net = Network {
            prefix: format!("fanout{}", std::process::id()),
        };
        let sw = net.ns("sw");
        net.ip(&["netns", "add", &sw]);
        net.ip(&[
            "-n",
            &sw,
            "link",
            "add",
            "br0",
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ]);
        net.ip(&["-n", &sw, "link", "set", "br0", "up"]);
        for (i, (host, addr)) in hosts.iter().enumerate() {
            let ns = net.ns(host);
            let port = format!("p{i}");
            net.ip(&["netns", "add", &ns]);
            net.ip(&[
                "link", "add", "eth0", "netns", &ns, "type", "veth", "peer", "name", &port,
                "netns", &sw,
            ]);
            net.ip(&["-n", &sw, "link", "set", &port, "master", "br0", "up"]);
            net.ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                "eth0",
            ]);
            net.ip(&["-n", &ns, "link", "set", "eth0", "up"]);
            net.ip(&["-n", &ns, "link", "set", "lo", "up"]);
            net.ip(&["-n", &ns, "route", "add", "224.0.0.0/4", "dev", "eth0"]);
        }
        net
    }

    fn ns(&self, host: &str) -> String {
        format!("{}-{host}", self.prefix)
    }

    fn ip(&self, args: &[&str]) {
        let out = Command::new("ip").args(args).output().unwrap();
        assert!(
            out.status.success(),
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Drops, on `host`'s input, what each nftables match in `rules` matches.
    pub fn drop_input(&self, host: &str, rules: &[&str]) {
        let mut script = String::from(
            "table inet fanout {\n chain input {\n  type filter hook input priority 0;\n",
        );
        for r in rules {
            script += &format!("  {r} drop\n");
        }
        script += " }\n}\n";
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.ns(host), "nft", "-f", "-"])
            .stdin(Stdio::piped())
            .spawn()
            .expect("nft (nftables) is installed");
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(script.as_bytes())
            .unwrap();
        assert!(child.wait().unwrap().success(), "nft -f: {script}");
    }

    /// [`gst_launch`] on `host`.
    pub fn gst_launch(&self, host: &str, args: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns(host), "gst-launch-1.0", "-e"])
            .args(split_words(args))
            .env("GST_PLUGIN_PATH", plugin_dir())
            .env("GST_DEBUG_NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
            return;
        };
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let name = line.split_whitespace().next().unwrap_or("");
            if name.starts_with(&format!("{}-", self.prefix)) {
                let _ = Command::new("ip").args(["netns", "del", name]).status();
            }
        }
    }
}

/// Pixels of a PNG that are clearly coloured (not white, grey or black): a chart's lines,
/// which an empty chart has none of.
pub fn coloured_pixels(png_file: &Path) -> usize {
    let decoder = png::Decoder::new(std::fs::File::open(png_file).unwrap());
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = info.color_type.samples();
    assert!(channels >= 3, "{png_file:?}: not an RGB picture");
    buf[..info.buffer_size()]
        .chunks(channels)
        .filter(|p| {
            let (hi, lo) = (p[..3].iter().max().unwrap(), p[..3].iter().min().unwrap());
            hi - lo > 60
        })
        .count()
}

/// Where the pipelines users copy are.
pub fn pipelines_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../pipelines")
}

/// Pipeline `name` of pipelines/ as gst-launch arguments (its `#` lines left out), writing
/// under `out` instead of `/tmp/fanout-demo`.
pub fn pipeline_text(name: &str, out: &Path) -> String {
    let file = pipelines_dir().join(format!("{name}.txt"));
    std::fs::read_to_string(&file)
        .unwrap_or_else(|e| panic!("{}: {e}", file.display()))
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join(" ")
        .replace("/tmp/fanout-demo", out.to_str().unwrap())
}
