//! Plugins delivered as OCI artifacts: pushed by `plugin-host push` to a real registry
//! (Debian's docker-registry on loopback) or packed into a layout directory, pulled,
//! verified, signed, cached and served by the real binary.

use std::{fs, path::Path, process::Output};

use plugin_host_tests::{library, success_stdout, Sandbox, TestRegistry};

mod registries;

/// A quote call of market-data, the plugin every artifact here carries.
const QUOTE: [&str; 4] = [
    "call",
    "market-data",
    "quote",
    r#"{"symbol": "AAPL", "tick": 0}"#,
];

fn run(sandbox: &Sandbox, args: &[&str]) -> Output {
    let config = sandbox.root().join("host.toml");
    let mut all = vec!["--config", config.to_str().expect("utf-8 path")];
    all.extend_from_slice(args);
    sandbox.run(&all)
}

fn failure_text(output: &Output) -> String {
    assert!(
        !output.status.success(),
        "expected a failure, got {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout)
    );
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A new signing key in the sandbox, and the public key line `keygen` printed.
fn keygen(sandbox: &Sandbox, name: &str) -> (String, String) {
    let key = sandbox.root().join(name);
    let key = key.to_str().expect("utf-8 path").to_owned();
    let printed = success_stdout(&sandbox.run(&["keygen", &key]));
    let public = printed
        .lines()
        .find_map(|line| line.strip_prefix("public = "))
        .expect("keygen prints the public key")
        .trim_matches('"')
        .to_owned();
    (key, public)
}

fn push(sandbox: &Sandbox, reference: &str, sign: &[&str]) -> String {
    let library = library("market-data");
    let mut args = vec!["push", "--insecure"];
    for key in sign {
        args.extend(["--sign", key]);
    }
    args.extend([library.to_str().expect("utf-8 path"), reference]);
    let printed = success_stdout(&sandbox.run(&args));
    printed
        .lines()
        .find_map(|line| line.strip_prefix("pinned: "))
        .expect("push prints the pinned reference")
        .to_owned()
}

fn source(reference: &str, extra: &str) -> String {
    format!(
        "[[sources]]\nname = \"market-data\"\noci = \"{reference}\"\ninsecure = true\n{extra}\n"
    )
}

fn trust(keys: &[(&str, &str)], require: bool) -> String {
    let keys: Vec<String> = keys
        .iter()
        .map(|(name, public)| format!("{{ name = \"{name}\", public = \"{public}\" }}"))
        .collect();
    format!(
        "[trust]\nrequire_signature = {require}\nkeys = [{}]\n",
        keys.join(", ")
    )
}

#[test]
fn a_pushed_plugin_is_pulled_verified_and_served_and_a_restart_asks_the_registry_nothing() {
    let Some(mut registry) = TestRegistry::start() else {
        return;
    };
    let sandbox = Sandbox::new();
    let (key, public) = keygen(&sandbox, "release.key");
    let reference = format!("{}/plugins/market-data:1.0", registry.address);
    let pinned = push(&sandbox, &reference, &[&key]);
    sandbox.write_config(&(source(&reference, "") + &trust(&[("release", &public)], true)));

    // Reviewed before anything is pulled: the description, without the library.
    let logged_before = registry.log().len();
    let target = format!("oci://{reference}");
    let inspected = success_stdout(&run(&sandbox, &["inspect", "--insecure", &target]));
    assert!(
        inspected.contains("plugin:      market-data")
            && inspected.contains("not pulled")
            && inspected.contains("signed:      by release"),
        "{inspected}"
    );
    assert!(inspected.contains("method quote"), "{inspected}");
    let library_blob = format!("blobs/sha256:{}", crate_digest(&library("market-data")));
    let asked = registry.log()[logged_before..].to_owned();
    assert!(
        asked.contains("/v2/plugins/market-data/manifests/"),
        "{asked}"
    );
    assert!(
        !asked.contains(&library_blob),
        "inspect fetched the library: {asked}"
    );
    assert!(
        !sandbox.cache_dir().join("oci").exists(),
        "inspect kept nothing"
    );
    // `list` reads only what was pulled, and says what was not yet.
    let listed = success_stdout(&run(&sandbox, &["list"]));
    assert!(
        listed.contains("source `market-data`") && listed.contains("nothing pulled yet"),
        "{listed}"
    );

    let quote = success_stdout(&run(&sandbox, &QUOTE));
    assert!(quote.contains("\"bid\""), "{quote}");
    let listed: serde_json::Value =
        serde_json::from_str(&success_stdout(&run(&sandbox, &["list", "--json"]))).expect("json");
    let plugin = &listed["plugins"][0];
    let digest = pinned.split('@').nth(1).expect("a digest");
    assert_eq!(plugin["source"]["digest"], digest, "{plugin}");
    assert_eq!(plugin["source"]["signed_by"], "release", "{plugin}");
    assert_eq!(plugin["source"]["platform"], "linux/amd64", "{plugin}");

    let before = registry.requests();
    success_stdout(&run(&sandbox, &["check"]));
    success_stdout(&run(&sandbox, &QUOTE));
    assert_eq!(
        registry.requests(),
        before,
        "if-not-present asks the registry nothing once pulled"
    );
    registry.stop();
    let served = success_stdout(&run(&sandbox, &QUOTE));
    assert!(
        served.contains("\"bid\""),
        "served from the cache with the registry down: {served}"
    );
}

#[test]
fn unsigned_wrong_key_wrong_platform_and_tampered_artifacts_are_refused_naming_what() {
    let Some(registry) = TestRegistry::start() else {
        return;
    };
    let sandbox = Sandbox::new();
    let (key, public) = keygen(&sandbox, "release.key");
    let (stranger, _) = keygen(&sandbox, "stranger.key");
    let at = |tag: &str| format!("{}/plugins/market-data:{tag}", registry.address);
    push(&sandbox, &at("unsigned"), &[]);
    push(&sandbox, &at("stranger"), &[&stranger]);
    let signed = push(&sandbox, &at("signed"), &[&key]);
    let keys = trust(&[("release", &public)], true);
    let refused = |reference: &str, extra: &str| {
        let cache = sandbox.cache_dir();
        let _ = fs::remove_dir_all(&cache);
        sandbox.write_config(&(source(reference, extra) + &keys));
        failure_text(&run(&sandbox, &QUOTE))
    };
    let unsigned = refused(&at("unsigned"), "");
    assert!(
        unsigned.contains("no signature") && unsigned.contains("release ("),
        "{unsigned}"
    );
    let unknown = refused(&at("stranger"), "");
    assert!(
        unknown.contains("signed only by key") && unknown.contains("no [[trust.keys]] entry"),
        "{unknown}"
    );
    // Reviewed where signatures are not required: what each one's signatures are.
    sandbox.write_config(&trust(&[("release", &public)], false));
    for (tag, says) in [
        (
            "unsigned",
            "signed:      by no trusted key (it has no signature)",
        ),
        (
            "stranger",
            "signed:      by no trusted key (signed only by key ",
        ),
        ("signed", "signed:      by release"),
    ] {
        let target = format!("oci://{}", at(tag));
        let inspected = success_stdout(&run(&sandbox, &["inspect", "--insecure", &target]));
        assert!(inspected.contains(says), "{tag}: {inspected}");
    }
    let platform = refused(&signed, "platform = \"linux/arm64\"");
    assert!(
        platform.contains("linux/arm64") && platform.contains("it has: linux/amd64"),
        "{platform}"
    );

    let layer = crate_digest(&library("market-data"));
    let blob = registry_blob(&registry, &layer);
    let mut bytes = fs::read(&blob).expect("the library's blob");
    bytes[1000] ^= 0xff;
    fs::write(&blob, bytes).expect("tampering with the blob");
    let tampered = refused(&signed, "");
    assert!(
        tampered.contains(&format!("sha256:{layer}")) && tampered.contains("tampered"),
        "{tampered}"
    );
    assert!(
        !sandbox
            .cache_dir()
            .join("oci/plugins/market-data.so")
            .exists(),
        "nothing tampered is served"
    );
}

/// The SHA-256 (hex) of a file.
fn crate_digest(path: &Path) -> String {
    plugin_host::trust::sha256_of(path).expect("hashing")
}

/// Where the registry keeps blob `hex` (distribution's filesystem driver).
fn registry_blob(registry: &TestRegistry, hex: &str) -> std::path::PathBuf {
    registry.storage().join(format!(
        "docker/registry/v2/blobs/sha256/{}/{hex}/data",
        &hex[..2]
    ))
}

#[test]
fn a_failed_pull_keeps_the_previous_version_serving_and_says_so() {
    let Some(mut registry) = TestRegistry::start() else {
        return;
    };
    let sandbox = Sandbox::new();
    let reference = format!("{}/plugins/market-data:1.0", registry.address);
    push(&sandbox, &reference, &[]);
    sandbox.write_config(&source(&reference, "pull = \"always\""));
    success_stdout(&run(&sandbox, &["check"]));
    registry.stop();
    let check = failure_text(&run(&sandbox, &["check"]));
    assert!(
        check.contains("still serving the previous pull") && check.contains("Connection refused"),
        "{check}"
    );
    success_stdout(&run(&sandbox, &QUOTE));
    let blobs = |sandbox: &Sandbox| {
        fs::read_dir(sandbox.cache_dir().join("oci/blobs/sha256"))
            .expect("the store")
            .count()
    };
    assert_eq!(
        blobs(&sandbox),
        1,
        "the library a failed pull keeps serving stays in the store"
    );
    // A source the config no longer names: its library leaves the store at the next start.
    sandbox.write_config(
        &source(&reference, "pull = \"always\"")
            .replace("name = \"market-data\"", "name = \"other\""),
    );
    let _ = run(&sandbox, &["check"]);
    assert_eq!(blobs(&sandbox), 0, "no source serves it any more");
}

#[test]
fn a_layout_directory_source_serves_and_a_pinned_host_trusts_only_what_was_verified() {
    let sandbox = Sandbox::new();
    let layout = sandbox.root().join("market-data.oci");
    let target = format!("{}:1.0", layout.display());
    let library = library("market-data");
    let packed = success_stdout(&sandbox.run(&["pack", library.to_str().expect("utf-8"), &target]));
    let digest = packed
        .split('(')
        .nth(1)
        .and_then(|d| d.strip_suffix(")\n"))
        .expect("pack prints the digest")
        .to_owned();
    let trust_file = sandbox.root().join("trusted.toml");
    let pinned_host = format!(
        "[host]\ntrust = \"pinned\"\ntrust_file = \"{}\"\n",
        trust_file.display()
    );
    let layout_source = |reference: &str| {
        format!("[[sources]]\nname = \"market-data\"\noci-layout = \"{reference}\"\n")
    };

    // By tag, unsigned: served where permissions are the policy, refused where pinned.
    sandbox.write_config(&layout_source(&target));
    assert!(success_stdout(&run(&sandbox, &QUOTE)).contains("\"bid\""));
    sandbox.write_config(&(pinned_host.clone() + &layout_source(&target)));
    let refused = failure_text(&run(&sandbox, &QUOTE));
    assert!(
        refused.contains("not trusted") || refused.contains("untrusted"),
        "{refused}"
    );

    // Pinned by digest: the build that was verified is trusted, with no `trust add`;
    // another build dropped in the plugins directory is not.
    let by_digest = format!("{}@{digest}", layout.display());
    sandbox.write_config(&(pinned_host + &layout_source(&by_digest)));
    assert!(success_stdout(&run(&sandbox, &QUOTE)).contains("\"bid\""));
    sandbox.add_plugin("historical-data");
    let listed = success_stdout(&run(&sandbox, &["list"]));
    let row = |file: &str| {
        listed
            .lines()
            .find(|l| l.trim_start().starts_with(file))
            .unwrap_or_default()
            .to_owned()
    };
    assert!(row("market-data.so").contains(" ok "), "{listed}");
    assert!(row("libhistorical_data.so").contains("error"), "{listed}");

    // The records vouch only while no one else can write them.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let records = sandbox.cache_dir().join("oci/sources");
        fs::set_permissions(&records, fs::Permissions::from_mode(0o777)).expect("chmod");
        let listed = success_stdout(&run(&sandbox, &["list"]));
        let row = listed
            .lines()
            .find(|l| l.trim_start().starts_with("market-data.so"))
            .unwrap_or_default();
        assert!(
            row.contains("error"),
            "world-writable records vouch for nothing: {listed}"
        );
    }
}

#[test]
fn a_followed_tag_that_moves_upgrades_an_isolated_component_with_no_failed_call() {
    use std::sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    };
    let Some(registry) = TestRegistry::start() else {
        return;
    };
    let sandbox = Sandbox::new();
    let reference = format!("{}/plugins/probe:live", registry.address);
    let probe = library("fixture-probe");
    let push_file = |file: &Path| {
        let file = file.to_str().expect("utf-8 path");
        success_stdout(&sandbox.run(&["push", "--insecure", file, &reference]));
    };
    push_file(&probe);
    let config = format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n[[sources]]\nname = \"probe\"\noci = \"{reference}\"\ninsecure = true\nfollow = \"1s\"\n\
         [components.counter]\nisolation = \"process\"\n[components.counter.config]\ndelay_ms = 0\n"
    );
    let host = Arc::new(plugin_host_tests::RunningHost::start(&sandbox, &config));
    let pid = |host: &plugin_host_tests::RunningHost| {
        let (status, pid) = host.call("counter", "pid", "null");
        pid.unwrap_or_else(|err| panic!("{status}: {err:?}"))
            .as_u64()
            .expect("a pid")
    };
    let first = pid(&host);
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicU64::new(0));
    let traffic: Vec<_> = (0..3)
        .map(|_| {
            let (host, stop, answered) =
                (Arc::clone(&host), Arc::clone(&stop), Arc::clone(&answered));
            std::thread::spawn(move || {
                let mut failures = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    match host.call("counter", "pid", "null") {
                        (200, _) => {
                            answered.fetch_add(1, Ordering::Relaxed);
                        }
                        (status, answer) => failures.push(format!("{status}: {answer:?}")),
                    }
                }
                failures
            })
        })
        .collect();

    // A new build under the same tag: bytes after the ELF's end change its digest, not
    // what it does.
    let next = sandbox.root().join("next.so");
    let mut bytes = fs::read(&probe).expect("the probe");
    bytes.extend_from_slice(b"another build");
    fs::write(&next, bytes).expect("the next build");
    push_file(&next);
    let second =
        plugin_host_tests::wait_for("the followed tag's new build in a new worker", || {
            let now = pid(&host);
            (now != first).then_some(now)
        });
    let metrics = host.get("/metrics").1;
    assert!(
        metrics.contains("plugin_host_source_pulls_total{source=\"probe\",result=\"pulled\"} 2"),
        "{}",
        metrics
            .lines()
            .filter(|l| l.contains("source_pulls"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let during = answered.load(Ordering::Relaxed);
    plugin_host_tests::wait_for("calls answered by the new worker", || {
        (answered.load(Ordering::Relaxed) > during + 20).then_some(())
    });
    stop.store(true, Ordering::Relaxed);
    let failures: Vec<String> = traffic
        .into_iter()
        .flat_map(|t| t.join().expect("traffic"))
        .collect();
    assert!(
        failures.is_empty(),
        "calls failed while the tag moved: {failures:?}"
    );
    assert_ne!(second, first);
    let (_, plugins) = host.get("/plugins");
    let next_digest = format!(
        "sha256:{}",
        plugin_host::trust::sha256_of(&next).expect("hash")
    );
    assert!(
        plugins.contains(&next_digest),
        "/plugins names the new library: {plugins}"
    );
}

/// Runs `script` as root of a user and mount namespace of its own (so unprivileged users
/// may mount there too), with `$BIN` the binary; its output.
#[cfg(target_os = "linux")]
fn in_mount_namespace(script: &str, env: &[(&str, &Path)]) -> Output {
    let mut command = std::process::Command::new("unshare");
    command
        .args(["--user", "--map-root-user", "--mount", "sh", "-c", script])
        .env("BIN", plugin_host_tests::binary())
        .env_remove("RUST_LOG");
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().expect("running unshare")
}

#[cfg(target_os = "linux")]
#[test]
fn a_plugins_directory_on_a_noexec_mount_loads_through_vetted_copies_or_is_refused_naming_the_mount(
) {
    let sandbox = Sandbox::new();
    let mount = sandbox.root().join("volume");
    fs::create_dir(&mount).expect("mount point");
    let script = r#"
        set -e
        mount -t tmpfs -o size=64m,mode=0755 tmpfs "$MOUNT"
        cp "$LIBRARY" "$MOUNT/"
        mount -o remount,ro,noexec "$MOUNT"
        if cp "$LIBRARY" "$MOUNT/again.so" 2>/dev/null; then echo "the mount is writable"; exit 3; fi
        "$BIN" --plugins-dir "$MOUNT" --cache-dir "$CACHE" call market-data quote '{"symbol": "AAPL", "tick": 0}'
        "$BIN" --plugins-dir "$MOUNT" --cache-dir "$CACHE" call market-data quote '{"symbol": "AAPL", "tick": 1}'
        echo "== copying off"
        PLUGIN_HOST_HOST_COPY_FROM_NOEXEC=false "$BIN" --plugins-dir "$MOUNT" --cache-dir "$CACHE" list 2>&1 || echo "exit $?"
        echo "== cache full"
        mkdir -p "$CACHE-full"
        mount -t tmpfs -o size=64k tmpfs "$CACHE-full"
        "$BIN" --plugins-dir "$MOUNT" --cache-dir "$CACHE-full" list 2>&1 || echo "exit $?"
    "#;
    let library = library("market-data");
    let cache = sandbox.cache_dir();
    let output = in_mount_namespace(
        script,
        &[("MOUNT", &mount), ("LIBRARY", &library), ("CACHE", &cache)],
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{text}");
    let (loaded, refused) = text.split_once("== copying off").expect("both parts ran");
    let (refused, full) = refused.split_once("== cache full").expect("all parts ran");
    // A copy that cannot be made lists its file as unusable, with why, not as no file.
    let listed = full
        .lines()
        .find(|l| l.contains("libmarket_data.so") && l.contains("error"));
    assert!(
        listed.is_some() && full.contains("No space left") && full.contains("free space there"),
        "{full}"
    );
    assert_eq!(
        loaded.matches("\"bid\"").count(),
        2,
        "loaded through the copy, twice: {text}"
    );
    let copies: Vec<_> = fs::read_dir(cache.join("noexec"))
        .expect("the copies")
        .flatten()
        .collect();
    assert_eq!(copies.len(), 1, "one directory of copies");
    let refusal: Vec<&str> = refused
        .lines()
        .filter(|l| l.starts_with("error:"))
        .collect();
    assert_eq!(refusal.len(), 1, "{refused}");
    assert!(
        refusal[0].contains("noexec mount")
            && refusal[0].contains(&mount.display().to_string())
            && refusal[0].contains("copy_from_noexec"),
        "{refused}"
    );
    assert!(
        refused.contains("exit 2") || refused.contains("exit 1"),
        "{refused}"
    );
}
