// SPDX-License-Identifier: MPL-2.0

//! Tests that need a network of their own (multicast, blocked ports): the test binary runs
//! itself, with only that test, inside a network namespace made for it, with multicast
//! routed on its loopback. Needs root: such tests are `#[ignore]`d, and `scripts/test.sh`
//! includes them when root.

use std::process::Command;

const INSIDE: &str = "FANOUT_TEST_NETNS";

fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .status()
        .is_ok_and(|s| s.success())
}

struct Namespace(String);

impl Drop for Namespace {
    fn drop(&mut self) {
        ip(&["netns", "del", &self.0]);
    }
}

/// Runs test `name` (its full path within the test binary, as `--exact` takes it) in a
/// fresh namespace after the shell commands `setup` ran there; `body` is the test itself.
pub fn in_netns(name: &str, setup: &[&str], body: impl FnOnce()) {
    if std::env::var_os(INSIDE).is_some() {
        body();
        return;
    }
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped {name}: network namespaces need root");
        return;
    }
    let mut ns = format!("fanout-{}-{name}", std::process::id());
    ns.truncate(60);
    let ns = Namespace(ns);
    assert!(ip(&["netns", "add", &ns.0]), "ip netns add {}", ns.0);
    assert!(ip(&["-n", &ns.0, "link", "set", "lo", "up"]));
    assert!(ip(&[
        "-n",
        &ns.0,
        "route",
        "add",
        "224.0.0.0/4",
        "dev",
        "lo"
    ]));
    for cmd in setup {
        let ok = Command::new("ip")
            .args(["netns", "exec", &ns.0, "sh", "-ec", cmd])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "setup in the namespace: {cmd}");
    }
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("ip")
        .args(["netns", "exec", &ns.0])
        .arg(exe)
        .args([
            "--exact",
            name,
            "--include-ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(INSIDE, "1")
        .output()
        .unwrap();
    // Through this test's own output (shown if it fails), and indented: the inner run's
    // "test result:" line must not count the test a second time in scripts/test.sh.
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        println!("    {line}");
    }
    for line in String::from_utf8_lossy(&out.stderr).lines() {
        eprintln!("    {line}");
    }
    assert!(out.status.success(), "{name} failed in its namespace");
}

/// nftables commands making the namespace drop what `rule` matches on input, e.g.
/// `udp dport 5600` (a network that carries no UDP) or `ip daddr 239.1.2.3` (nor a group).
pub fn drop_input(rule: &str) -> String {
    format!(
        "nft add table inet fanout_test; \
         nft add chain inet fanout_test input '{{ type filter hook input priority 0; }}'; \
         nft add rule inet fanout_test input {rule} drop"
    )
}
