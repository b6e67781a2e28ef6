//! Voice with real browsers: headless Chromium (Debian's `chromium`) opens
//! `tests/voice/page.html`, which joins a voice channel through the canonical signaling with
//! Chromium's fake microphone and camera and a canvas as its screen share. An aiortc peer
//! (`tests/voice/peer.py`) in the same channel hears the browser, and the browser hears the
//! peer's tone. A second browser is left only the server's ICE-TCP candidate: it must connect
//! over TCP and decode the first browser's microphone, camera and screen.
//!
//! Chromium reports through its console (`--enable-logging=stderr`): lines
//! `XCORD <kind> <json>`. Set `XCORD_TEST_CHROMIUM` to use another binary.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use xcord_testkit::{Backend, TestApp, TestUser, spawn_app};

use crate::voice::{Participant, dispatches_seen, join, listen_until, renegotiate, voice_room};

/// How long a browser may take to reach a reported state (it starts, captures, connects).
const BROWSER_WAIT: Duration = Duration::from_secs(45);

/// One headless Chromium with a test page open.
pub(crate) struct Browser {
    child: Child,
    reports: mpsc::UnboundedReceiver<(String, Value)>,
    /// The last lines Chromium printed, shown when a step fails.
    log: Arc<Mutex<Vec<String>>>,
    _profile: tempfile::TempDir,
}

/// `kind` and JSON of a console line `… "XCORD <kind> <json>", source: …`.
fn report_of(line: &str) -> Option<(String, Value)> {
    let start = line.find("\"XCORD ")? + "\"XCORD ".len();
    let end = line.rfind("\", source:")?;
    let (kind, json) = line.get(start..end)?.split_once(' ')?;
    Some((kind.to_owned(), serde_json::from_str(json).ok()?))
}

impl Browser {
    fn open(app: &TestApp, user: &TestUser, channel: &str, tcp_only: bool) -> Browser {
        let page = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/voice/page.html");
        Browser::open_url(format!(
            "file://{page}#api={}&token={}&channel={channel}&tcp={}",
            app.url("/api/v1"),
            user.token,
            u8::from(tcp_only)
        ))
    }

    /// Chromium with a fake microphone and camera, opening `url`.
    pub(crate) fn open_url(url: String) -> Browser {
        let binary = std::env::var("XCORD_TEST_CHROMIUM").unwrap_or_else(|_| "chromium".into());
        let profile = tempfile::tempdir().expect("a profile directory");
        let mut child = Command::new(&binary)
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-quic",
                "--use-fake-device-for-media-stream",
                "--use-fake-ui-for-media-stream",
                "--allow-loopback-in-peer-connection",
                "--autoplay-policy=no-user-gesture-required",
                "--enable-logging=stderr",
                "--v=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("{binary} must be installed (Debian's chromium; ./scripts/test installs it): {e}")
            });
        let stderr = child.stderr.take().expect("chromium's stderr");
        let (tx, reports) = mpsc::unbounded_channel();
        let log = Arc::new(Mutex::new(Vec::new()));
        let keep = log.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(report) = report_of(&line) {
                    let _ = tx.send(report);
                }
                // D-Bus is absent here, and Chromium says so many times.
                if line.contains("dbus") {
                    continue;
                }
                if let Ok(mut log) = keep.lock() {
                    if log.len() >= 60 {
                        log.remove(0);
                    }
                    log.push(line);
                }
            }
        });
        Browser {
            child,
            reports,
            log,
            _profile: profile,
        }
    }

    fn tail(&self) -> String {
        self.log.lock().map(|l| l.join("\n")).unwrap_or_default()
    }

    /// Waits for a report `kind` whose payload satisfies `pred`; fails on an `error` report.
    pub(crate) async fn report(&mut self, kind: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + BROWSER_WAIT;
        let mut last = Value::Null;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(left, self.reports.recv()).await {
                Ok(Some((k, v))) if k == "error" => {
                    panic!("the page failed: {v}\n{}", self.tail())
                }
                Ok(Some((k, v))) if k == kind => {
                    if pred(&v) {
                        return v;
                    }
                    last = v;
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => panic!(
                    "no {kind} report as expected from the page (last: {last})\n{}",
                    self.tail()
                ),
            }
        }
    }

    pub(crate) async fn close(mut self) {
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
    }
}

/// Answers server offers until the last one announces every msid in `wanted`.
pub(crate) async fn renegotiate_until(
    app: &TestApp,
    p: &mut Participant,
    channel: &str,
    wanted: &[String],
) {
    for _ in 0..12 {
        let offer = renegotiate(app, p, channel).await;
        if wanted
            .iter()
            .all(|m| offer.contains(&format!("a=msid:{m}\r\n")))
        {
            return;
        }
    }
    panic!("the server never offered all of {wanted:?}");
}

/// Listens until the peer decodes the track `msid` at a real level.
pub(crate) async fn peer_hears(p: &mut Participant, msid: &str) -> Value {
    listen_until(&mut p.peer, 15, msid, |heard| {
        let t = &heard["by_msid"][msid];
        t["frames"].as_u64().unwrap_or(0) > 10 && t["peak_dbfs"].as_f64().unwrap_or(-200.0) > -40.0
    })
    .await
}

/// Decoded audio with some energy (Chromium's fake microphone beeps; the peer's tone is
/// steady).
pub(crate) fn audible(t: &Value) -> bool {
    t["packets"].as_u64().unwrap_or(0) > 50 && t["energy"].as_f64().unwrap_or(0.0) > 0.001
}

/// Decoded video frames whose size has the aspect `w:h` (the encoder may scale it down).
fn video_of_aspect(t: &Value, w: u64, h: u64) -> bool {
    let (fw, fh) = (t["size"][0].as_u64(), t["size"][1].as_u64());
    t["frames"].as_u64().unwrap_or(0) > 5
        && matches!((fw, fh), (Some(fw), Some(fh)) if fw > 0 && fw * h == fh * w)
}

/// A VOICE_TRACK of `user`'s `kind` track in `state`.
pub(crate) fn track_of(
    user: &str,
    kind: &'static str,
    state: &'static str,
) -> impl Fn(&Value) -> bool {
    let user = user.to_owned();
    move |d: &Value| d["userId"] == user.as_str() && d["kind"] == kind && d["state"] == state
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browsers_hear_and_see_each_other_through_the_sfu() {
    let app = spawn_app(Backend::Sqlite).await;
    let (r, third, channel) = voice_room(&app, "vweb").await;
    let (mut watcher, _) = app.gateway_as(&r.owner).await;
    let member = r.member.id.clone();
    let [audio, camera, screen] =
        ["audio", "video", "screen"].map(|kind| format!("{member} {kind}"));
    let tone = format!("{} audio", r.owner.id);

    // The owner's aiortc peer sends a tone.
    let mut owner = join(&app, r.owner.clone(), &channel, true).await;

    // The first browser joins with microphone, camera and screen; the peer hears it.
    let mut first = Browser::open(&app, &r.member, &channel, false);
    first.report("joined", |_| true).await;
    renegotiate_until(
        &app,
        &mut owner,
        &channel,
        &[audio.clone(), camera.clone(), screen.clone()],
    )
    .await;
    peer_hears(&mut owner, &audio).await;
    // Everyone who sees the channel is told of the three tracks.
    let of_member = |kind: &'static str| track_of(&member, kind, "added");
    let (a, v, s) = (of_member("audio"), of_member("video"), of_member("screen"));
    dispatches_seen(
        &mut watcher,
        &[
            ("VOICE_TRACK", &a),
            ("VOICE_TRACK", &v),
            ("VOICE_TRACK", &s),
        ],
    )
    .await;
    // The browser decodes the peer's tone, over UDP.
    let stats = first
        .report("stats", |s| audible(&s["received"][&tone]))
        .await;
    assert_eq!(stats["protocol"], "udp", "{stats}");

    // A second browser, left only the server's TCP candidate, connects over ICE-TCP and
    // receives the first browser's camera (4:3) and screen (16:9) on the tracks named so,
    // its microphone and the peer's tone.
    let mut second = Browser::open(&app, &third, &channel, true);
    second.report("joined", |_| true).await;
    let stats = second
        .report("stats", |s| {
            let got = &s["received"];
            s["protocol"] == "tcp"
                && audible(&got[&tone])
                && audible(&got[&audio])
                && video_of_aspect(&got[&camera], 4, 3)
                && video_of_aspect(&got[&screen], 16, 9)
        })
        .await;
    assert_eq!(stats["protocol"], "tcp", "{stats}");
    // And the peer hears the second browser too.
    let third_audio = format!("{} audio", third.id);
    renegotiate_until(
        &app,
        &mut owner,
        &channel,
        std::slice::from_ref(&third_audio),
    )
    .await;
    peer_hears(&mut owner, &third_audio).await;

    // Closing the first browser ends its gateway session and with it its voice session; the
    // channel is told its three tracks are gone.
    first.close().await;
    let of_member = |kind: &'static str| track_of(&member, kind, "removed");
    let (a, v, s) = (of_member("audio"), of_member("video"), of_member("screen"));
    let left = |d: &Value| d["userId"] == member.as_str() && d["channelId"].is_null();
    dispatches_seen(
        &mut watcher,
        &[
            ("VOICE_TRACK", &a),
            ("VOICE_TRACK", &v),
            ("VOICE_TRACK", &s),
            ("VOICE_STATE_UPDATE", &left),
        ],
    )
    .await;

    second.close().await;
    owner.peer.close().await;
}
