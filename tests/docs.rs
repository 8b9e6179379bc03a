//! docs/properties.md is what the elements say of themselves (gst-inspect-1.0), kept true:
//! this test makes it from the elements and fails when the file differs. After changing a
//! property, `FANOUT_BLESS=1 cargo test -p fanout-tests --test docs` writes it anew.

use std::fmt::Write;
use std::path::Path;

use fanout_tests::plugin_dir;
use gst::glib;
use gst::prelude::*;

const ELEMENTS: [&str; 7] = [
    "bitrate-recorder",
    "bitrate-player",
    "offset-tee",
    "fec-payloader",
    "fec-depayloader",
    "session-sink",
    "session-src",
];

fn type_and_default(p: &glib::ParamSpec) -> (String, String) {
    let v = p.default_value();
    let default = if let Ok(e) = v.get::<&glib::EnumValue>() {
        e.nick().to_owned()
    } else if v.type_().is_a(glib::Type::STRING) {
        format!(
            "\"{}\"",
            v.get::<Option<String>>().ok().flatten().unwrap_or_default()
        )
    } else if v.type_().is_a(gst::Structure::static_type()) {
        String::new()
    } else {
        v.serialize().map(|s| s.to_string()).unwrap_or_default()
    };
    let range = if let Some(p) = p.downcast_ref::<glib::ParamSpecUInt64>() {
        format!(" ({}–{})", p.minimum(), p.maximum())
    } else if let Some(p) = p.downcast_ref::<glib::ParamSpecUInt>() {
        format!(" ({}–{})", p.minimum(), p.maximum())
    } else if let Some(p) = p.downcast_ref::<glib::ParamSpecInt>() {
        format!(" ({}–{})", p.minimum(), p.maximum())
    } else if let Some(p) = p.downcast_ref::<glib::ParamSpecInt64>() {
        format!(" ({}–{})", p.minimum(), p.maximum())
    } else if let Some(p) = p.downcast_ref::<glib::ParamSpecDouble>() {
        format!(" ({}–{})", p.minimum(), p.maximum())
    } else {
        String::new()
    };
    let ty = match p.value_type().name() {
        "gchararray" => "string".to_owned(),
        "gboolean" => "boolean".to_owned(),
        "guint" => "uint".to_owned(),
        "gint" => "int".to_owned(),
        "guint64" => "uint64".to_owned(),
        "gint64" => "int64".to_owned(),
        "gdouble" => "double".to_owned(),
        "GstStructure" => "structure".to_owned(),
        _ => match glib::EnumClass::with_type(p.value_type()) {
            Some(e) => {
                let nicks: Vec<&str> = e.values().iter().map(|v| v.nick()).collect();
                format!("enum: {}", nicks.join(", "))
            }
            None => p.value_type().name().to_owned(),
        },
    };
    (format!("{ty}{range}"), default)
}

fn when(p: &glib::ParamSpec) -> &'static str {
    let f = p.flags();
    if !f.contains(glib::ParamFlags::WRITABLE) {
        "read only"
    } else if f.contains(gst::PARAM_FLAG_MUTABLE_PLAYING) {
        "any time"
    } else if f.contains(gst::PARAM_FLAG_MUTABLE_PAUSED) {
        "up to PAUSED"
    } else if f.contains(gst::PARAM_FLAG_MUTABLE_READY) {
        "in NULL or READY"
    } else {
        "any time"
    }
}

fn table(out: &mut String, specs: &[glib::ParamSpec]) {
    out.push_str(
        "| property | type (range) | default | set | what it does |\n|---|---|---|---|---|\n",
    );
    let mut specs: Vec<&glib::ParamSpec> = specs
        .iter()
        // Ours only: GStreamer's base classes document their own.
        .filter(|p| {
            !matches!(
                p.owner_type().name(),
                "GstObject" | "GstPad" | "GstElement" | "GstBaseSrc" | "GstPushSrc"
            )
        })
        .collect();
    specs.sort_by_key(|p| p.name());
    for p in specs {
        let (ty, default) = type_and_default(p);
        let blurb = p.blurb().unwrap_or_default().replace('|', "\\|");
        writeln!(
            out,
            "| `{}` | {ty} | {default} | {} | {blurb} |",
            p.name(),
            when(p)
        )
        .unwrap();
    }
}

fn reference() -> String {
    gst::init().unwrap();
    let registry = gst::Registry::get();
    for lib in ["recording", "fec", "session"] {
        let path = plugin_dir().join(format!("libgstfanout{lib}.so"));
        let plugin = gst::Plugin::load_file(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
        registry.add_plugin(&plugin).unwrap();
    }
    let mut out = String::from(
        "# Properties\n\nEvery property of every element, as `gst-inspect-1.0` gives it (made from the \
         elements by `tests/docs.rs`, which fails when this file is out of date). Times are \
         `GstClockTime` nanoseconds; \"set\" says in which states a property may change.\n",
    );
    for name in ELEMENTS {
        let element = gst::ElementFactory::make(name).build().unwrap();
        writeln!(out, "\n## {name}\n").unwrap();
        table(&mut out, &element.list_properties());
        // Request pads carry properties of their own.
        let templ = element
            .pad_template_list()
            .into_iter()
            .find(|t| t.presence() == gst::PadPresence::Request);
        if let Some(t) = templ {
            let pad = element.request_pad(&t, None, None).unwrap();
            writeln!(out, "\nPad properties (`{}`):\n", t.name_template()).unwrap();
            table(&mut out, &pad.list_properties());
            element.release_request_pad(&pad);
        }
    }
    out
}

#[test]
fn the_properties_reference_is_what_the_elements_say() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/properties.md");
    let made = reference();
    if std::env::var_os("FANOUT_BLESS").is_some() {
        std::fs::write(&file, &made).unwrap();
    }
    let kept = std::fs::read_to_string(&file).unwrap_or_default();
    assert!(
        kept == made,
        "docs/properties.md is out of date: FANOUT_BLESS=1 cargo test -p fanout-tests --test docs"
    );
}
