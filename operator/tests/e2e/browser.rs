//! Test 7, the demo page in a real browser: headless Debian chromium, driven by playwright-core
//! (`browser/demo.mjs`), opens the demo page through HAProxy in two separate browser contexts
//! (two people), both join one room, and each sees the other's message. Screenshots of both
//! pages go to `target/e2e/browser/`. `scripts/install-browser-deps.sh` installs chromium, node
//! and playwright-core.

use std::path::Path;
use std::time::Duration;

use crate::SERIAL;
use crate::harness::{LocalCluster, cluster_yaml, output_dir};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_browser_pages_chat_through_haproxy() {
    let _serial = SERIAL.lock().await;
    let driver = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/browser");
    assert!(
        driver.join("node_modules/playwright-core").is_dir(),
        "playwright-core is not installed: run `bash scripts/install-browser-deps.sh`"
    );
    let cluster = LocalCluster::start("browser", &cluster_yaml("chat", 3, 2)).unwrap();
    let out = output_dir("browser");
    for shot in ["alice.png", "bob.png"] {
        let _ = std::fs::remove_file(out.join(shot));
    }
    let run = tokio::process::Command::new("node")
        .arg(driver.join("demo.mjs"))
        .arg(&cluster.state.demo_url)
        .arg(&out)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(90), run)
        .await
        .expect("the browser test took over 90 s")
        .expect("run node (is nodejs installed?)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let last = stdout.lines().last().unwrap_or_default();
    let result: serde_json::Value = serde_json::from_str(last)
        .unwrap_or_else(|_| panic!("no result from demo.mjs:\n{stdout}\n{stderr}"));
    println!("browser: {result}");
    assert_eq!(result["ok"], true, "{result}\n{stderr}");
    assert!(output.status.success());
    for key in ["alice_to_bob_offset", "bob_to_alice_offset"] {
        assert!(
            result[key].as_str().is_some_and(|o| o.contains('-')),
            "{key} in {result}"
        );
    }
    for shot in ["alice.png", "bob.png"] {
        let len = std::fs::metadata(out.join(shot))
            .map(|m| m.len())
            .unwrap_or(0);
        assert!(len > 1000, "screenshot {shot} missing or empty");
    }
    println!("browser: screenshots in {}", out.display());
}
