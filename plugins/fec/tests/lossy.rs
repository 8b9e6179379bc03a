// SPDX-License-Identifier: MPL-2.0

//! fec-payloader ! (loss) ! fec-depayloader pipelines, as users write them.

mod common;

use common::*;

// K = 400 keeps the chance that 10 % random loss beats 25 % repair in some block below 1e-12
// (binomial tail), so these tests cannot fail by bad luck; K = 100 is measured in benches/.
const PAY: &str = "fec-payloader repair-percent=25 max-block-symbols=400";
/// Where packets of one block come through several threads (funnel), file sources run them
/// out of step by however long the machine takes: blocks are waited for up to 30 s.
const LATENCY: u64 = 30_000_000_000;

fn lossy_round_trip(codec: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out.ts");
    let p = run(&format!(
        "filesrc location={} ! {PAY} codec={codec} name=pay ! identity drop-probability=0.1 \
         ! fec-depayloader name=depay ! filesink location={}",
        ts_file().display(),
        out.display()
    ));
    assert_same_file(ts_file(), &out);
    assert!(stat(&p, "depay", "blocks-recovered") > 0);
    assert_eq!(stat(&p, "depay", "blocks-lost"), 0);
    assert!(stat(&p, "pay", "repair-packets") > 0);
}

#[test]
fn mpegts_survives_ten_percent_loss_raptorq() {
    lossy_round_trip("raptorq");
}

#[test]
fn mpegts_survives_ten_percent_loss_reed_solomon() {
    lossy_round_trip("reed-solomon");
}

#[test]
fn codec_none_round_trips_without_loss() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out.ts");
    let p = run(&format!(
        "filesrc location={} ! fec-payloader codec=none name=pay ! fec-depayloader ! filesink location={}",
        ts_file().display(),
        out.display()
    ));
    assert_same_file(ts_file(), &out);
    assert_eq!(stat(&p, "pay", "repair-packets"), 0);
}

#[test]
fn bursts_of_loss_are_repaired() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out.ts");
    let p = pipeline(&format!(
        "filesrc location={} ! {PAY} name=pay ! fec-depayloader name=depay ! filesink location={}",
        ts_file().display(),
        out.display()
    ));
    // 40 packets in a row out of every 500: 8 % loss, all in one burst per block.
    drop_packets(&p, "pay", |n| n % 500 < 40);
    run_pipeline(&p);
    assert_same_file(ts_file(), &out);
    assert!(stat(&p, "depay", "blocks-recovered") > 0);
}

#[test]
fn a_block_beyond_repair_becomes_a_gap_and_a_warning() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out.ts");
    let p = pipeline(&format!(
        "filesrc location={} ! {PAY} name=pay ! fec-depayloader name=depay ! filesink location={}",
        ts_file().display(),
        out.display()
    ));
    // Half of the packets of the second block go missing.
    drop_packets(&p, "pay", |n| (600..850).contains(&n));
    let warnings = run_pipeline(&p);
    assert_eq!(stat(&p, "depay", "blocks-lost"), 1);
    assert!(
        warnings.iter().any(|w| w.contains("could not be rebuilt")),
        "{warnings:?}"
    );
    // What came out is the input less a stretch: never a wrong byte.
    let (input, output) = (
        std::fs::read(ts_file()).unwrap(),
        std::fs::read(&out).unwrap(),
    );
    assert!(output.len() < input.len());
    let head = output
        .iter()
        .zip(&input)
        .take_while(|(a, b)| a == b)
        .count();
    let tail = output
        .iter()
        .rev()
        .zip(input.iter().rev())
        .take_while(|(a, b)| a == b)
        .count();
    assert_eq!(head + tail, output.len());
}

#[test]
fn carousel_late_joiner_rebuilds_everything() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out.ts");
    let description = |rounds: i32| {
        format!(
            "filesrc location={} ! fec-payloader mode=carousel carousel-rounds={rounds} carousel-bitrate=0 \
             description-interval=16 name=pay ! fec-depayloader name=depay ! filesink location={}",
            ts_file().display(),
            out.display()
        )
    };
    // The live pass alone, to know how many packets it sends.
    let live = stat(&run(&description(0)), "pay", "packets-out");
    let p = pipeline(&description(1));
    // The receiver joins half-way through the live pass.
    drop_packets(&p, "pay", move |n| n < live / 2);
    run_pipeline(&p);
    assert_same_file(ts_file(), &out);
    assert_eq!(stat(&p, "pay", "carousel-rounds"), 1);
    assert_eq!(stat(&p, "depay", "blocks-lost"), 0);
}

#[test]
fn interleaved_flows_are_rebuilt_apart() {
    // Each sink waits for its own flow: with async=false neither holds up the other's preroll.
    let tmp = tempfile::tempdir().unwrap();
    let other = tmp.path().join("other.bin");
    std::fs::write(
        &other,
        (0..1_500_000u32)
            .map(|i| (i * 7 / 3) as u8)
            .collect::<Vec<_>>(),
    )
    .unwrap();
    let (out1, out2) = (tmp.path().join("1.ts"), tmp.path().join("2.bin"));
    let p = run(&format!(
        "funnel name=f ! identity drop-probability=0.05 ! tee name=t \
         filesrc location={} ! {PAY} flow=1 ! f. \
         filesrc location={} ! {PAY} flow=2 codec=reed-solomon ! f. \
         t. ! queue ! fec-depayloader flow=1 latency={LATENCY} name=d1 ! filesink async=false location={} \
         t. ! queue ! fec-depayloader flow=2 latency={LATENCY} name=d2 ! filesink async=false location={}",
        ts_file().display(),
        other.display(),
        out1.display(),
        out2.display()
    ));
    assert_same_file(ts_file(), &out1);
    assert_same_file(&other, &out2);
    assert!(stat(&p, "d1", "other-flow") > 0);
    assert!(stat(&p, "d2", "other-flow") > 0);
}

#[test]
fn two_payloaders_with_disjoint_repair_merge_in_one_depayloader() {
    let tmp = tempfile::tempdir().unwrap();
    let (merged, alone) = (tmp.path().join("merged.ts"), tmp.path().join("alone.ts"));
    // Each path loses 30 %: more than either payloader's repair covers on its own.
    // Sinks with async=false: each waits on a different branch, so neither may hold up preroll.
    let p = run(&format!(
        "filesrc location={ts} ! tee name=t  funnel name=f ! fec-depayloader latency={LATENCY} name=depay ! filesink async=false location={merged} \
         t. ! queue ! {PAY} name=a ! identity drop-probability=0.3 ! tee name=a_out ! queue ! f. \
         t. ! queue ! fec-payloader max-block-symbols=400 first-repair-esi=1000000 send-source=false repair-percent=100 name=b \
            ! identity drop-probability=0.3 ! queue ! f. \
         a_out. ! queue ! fec-depayloader latency={LATENCY} name=alone ! filesink async=false location={alone}",
        ts = ts_file().display(),
        merged = merged.display(),
        alone = alone.display()
    ));
    assert_same_file(ts_file(), &merged);
    assert!(
        stat(&p, "alone", "blocks-lost") > 0,
        "the first payloader alone must not suffice"
    );
    assert_eq!(stat(&p, "depay", "blocks-lost"), 0);
}
