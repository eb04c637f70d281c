//! The incident board in a real headless browser (Chromium through WebDriver, `browser`), and
//! its refusals over plain HTTP: incidents opened through the console path are listed, a fired
//! timer reaches an open page without reload, share links open one incident only, no token no
//! board, and hostile titles stay text. Also writes the README's screenshots of the seed story.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::watch;

use warroom::app::App;
use warroom::board::Board;
use warroom::clock::{Clock, VirtualClock};
use warroom::config::Config;
use warroom::domain::UserName;
use warroom::http::{HttpState, Readiness};
use warroom::store::Store;

use super::browser::{Driver, ONE_AT_A_TIME};
use super::helpers::{START, at, story};

const TOKEN: &str = "board-viewer-token-for-tests-0123";
const XSS: &str = "<img src=x onerror=alert(1)>";

/// An app with the board enabled, on a temporary store and a virtual clock, served on
/// 127.0.0.1 (the listener a front end starts with `--http`).
struct Served {
    app: Arc<App>,
    clock: Arc<VirtualClock>,
    base: String,
    http: reqwest::Client,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Served {
    async fn start() -> Served {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::builtin().unwrap();
        config.board.enabled = true;
        let board = Board::from_config(&config, |var| {
            (var == "WARROOM_BOARD_TOKEN").then(|| TOKEN.to_string())
        })
        .unwrap()
        .expect("the board is enabled");
        let store = Store::open(&dir.path().join("data")).unwrap();
        let clock = Arc::new(VirtualClock::new(at(START)));
        let app = Arc::new(App::new(store, Arc::new(config), clock.clone()).without_cards());
        let readiness = Arc::new(Readiness::default());
        readiness.set_scheduler(true);
        let listener = warroom::http::bind("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stop_rx) = watch::channel(false);
        let state = HttpState {
            app: app.clone(),
            sources: Arc::new(Default::default()),
            readiness,
            board: Some(Arc::new(board)),
        };
        let task = tokio::spawn(async move {
            warroom::http::serve(listener, state, stop_rx)
                .await
                .unwrap();
        });
        Served {
            app,
            clock,
            base,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            stop,
            task,
            _dir: dir,
        }
    }

    /// Plays console lines as the console does: `/as` switches the acting user, `/clock
    /// advance` moves the virtual clock firing what falls due, `/in INC-n` (the tests' own)
    /// picks the incident, anything else goes through `App::run_line` in the current incident
    /// (at first the newest open one).
    async fn play(&self, text: &str) {
        let app = self.app.clone();
        let clock = self.clock.clone();
        let text = text.to_string();
        tokio::task::spawn_blocking(move || {
            let mut user = app.config().console_user.clone();
            let mut place = app.latest_open().unwrap().map(|i| i.id);
            for line in text.lines().map(str::trim) {
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                if let Some(id) = line.strip_prefix("/in ") {
                    // The tests' own line: act in this incident from now on.
                    place = Some(id.trim().parse().unwrap());
                } else if let Some(u) = line.strip_prefix("/as ") {
                    user = UserName::new(u.trim());
                } else if let Some(d) = line.strip_prefix("/clock advance ") {
                    let d = humantime::parse_duration(d.trim()).unwrap();
                    let target = clock.now() + chrono::TimeDelta::from_std(d).unwrap();
                    app.advance_to(&clock, target).unwrap();
                } else {
                    let r = app.run_line(&app.actor(&user), place, line);
                    assert_ne!(r.kind, warroom::app::ReplyKind::Error, "{line}: {}", r.text);
                    if r.incident.is_some() {
                        place = r.incident;
                    }
                }
            }
        })
        .await
        .unwrap();
    }

    /// A session cookie, signed in over plain HTTP.
    async fn cookie(&self) -> String {
        let r = self
            .http
            .post(format!("{}/login", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("token={TOKEN}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303);
        let c = r.headers()["set-cookie"].to_str().unwrap().to_string();
        c.split(';').next().unwrap().to_string()
    }

    async fn status(&self, path: &str, cookie: Option<&str>) -> (u16, String) {
        let mut req = self.http.get(format!("{}{path}", self.base));
        if let Some(c) = cookie {
            req = req.header("cookie", c);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.text().await.unwrap())
    }

    async fn stop(self) {
        let _ = self.stop.send(true);
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("the listener stops although browsers are connected")
            .unwrap();
    }
}

/// Signs a browser in through the login form.
async fn sign_in(b: &super::browser::Browser, base: &str) {
    b.goto(&format!("{base}/login")).await;
    b.type_into("#token", TOKEN).await;
    b.click("#login button").await;
    b.wait_for(
        "return document.querySelector('h1') !== null && document.querySelector('h1').textContent.startsWith('Open incidents');",
        Duration::from_secs(5),
    )
    .await
    .expect("signed in and on the board");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_board_lists_console_incidents_and_refuses_without_the_token() {
    let _one = ONE_AT_A_TIME.lock().await;
    let s = Served::start().await;
    s.play(
        "/incident open title:\"Core mail server down\" severity:1 service:mail\n\
         /update text:\"Booted into single-user mode\"\n\
         /incident open title:\"VPN drops every hour\" severity:3 service:vpn drill:true",
    )
    .await;

    // Over plain HTTP: every board page is refused without the cookie, and a wrong token too.
    for path in [
        "/",
        "/incidents/INC-1",
        "/incidents/INC-1/report.md",
        "/events",
    ] {
        let (status, body) = s.status(path, None).await;
        assert_eq!(status, 401, "{path}");
        assert!(!body.contains("Core mail server down"), "{path} leaks");
    }
    let wrong = s
        .http
        .post(format!("{}/login", s.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("token=not-the-token-at-all")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    assert!(wrong.headers().get("set-cookie").is_none());
    let forged = "warroom_board=v1.99999999999.00ff";
    assert_eq!(s.status("/", Some(forged)).await.0, 401);
    let cookie = s.cookie().await;
    let (status, body) = s.status("/", Some(&cookie)).await;
    assert_eq!(status, 200);
    assert!(body.contains("Core mail server down"));
    let (status, _) = s.status("/incidents/INC-9", Some(&cookie)).await;
    assert_eq!(status, 404);
    let (status, _) = s.status("/incidents/nonsense", Some(&cookie)).await;
    assert_eq!(status, 404);
    let r = s
        .http
        .get(format!("{}/", s.base))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    let csp = r.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"));

    let Some(driver) = Driver::start().await else {
        return s.stop().await;
    };
    // A browser without the token sees the sign-in page, not the board.
    let stranger = driver.browser(1280, 900).await;
    stranger.goto(&format!("{}/", s.base)).await;
    let text = stranger.body_text().await;
    assert!(text.contains("Sign in"), "{text}");
    assert!(!text.contains("Core mail server down"), "{text}");

    // Signed in, the board lists both incidents with their facts.
    let b = driver.browser(1280, 900).await;
    sign_in(&b, &s.base).await;
    assert_eq!(
        b.current_url().await,
        format!("{}/", s.base),
        "the form leads to the board"
    );
    let text = b.body_text().await;
    for want in [
        "INC-1: Core mail server down",
        "INC-2: VPN drops every hour",
        "SEV1",
        "SEV3",
        "DRILL",
        "mail",
        "Plan A",
        "Booted into single-user mode",
        "not alerted",
        "auto-escalation L1 → L2",
    ] {
        assert!(text.contains(want), "the board lacks {want:?}:\n{text}");
    }
    assert_eq!(
        b.eval("return document.querySelectorAll('#open > li').length;")
            .await,
        json!(2)
    );
    // The cookie is HttpOnly: no script can read it.
    assert_eq!(b.eval("return document.cookie;").await, json!(""));
    drop(b);
    drop(stranger);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_title_renders_as_text_and_runs_no_script() {
    let _one = ONE_AT_A_TIME.lock().await;
    let s = Served::start().await;
    s.play(&format!(
        "/incident open title:\"{XSS}\" severity:2 service:mail\n\
         /update text:\"<script>alert(2)</script> still down\"\n\
         /vendor add name:\"<b onmouseover=alert(3)>VMware</b>\" case:\"<i>SR-1</i>\""
    ))
    .await;
    let cookie = s.cookie().await;
    let (_, body) = s.status("/incidents/INC-1", Some(&cookie)).await;
    assert!(body.contains("&lt;img src=x onerror=alert(1)&gt;"));
    assert!(!body.contains(XSS));
    assert!(!body.contains("<script>alert"));

    let Some(driver) = Driver::start().await else {
        return s.stop().await;
    };
    let b = driver.browser(1280, 900).await;
    sign_in(&b, &s.base).await;
    for page in ["/", "/incidents/INC-1"] {
        b.goto(&format!("{}{page}", s.base)).await;
        // Give any injected handler the chance to run.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(b.alert_text().await, None, "{page} opened an alert");
        assert_eq!(b.text("main .title").await.as_deref(), Some(XSS), "{page}");
        assert_eq!(
            b.eval(
                "return document.querySelectorAll('main img, main script, main b, main i').length;"
            )
            .await,
            json!(0),
            "{page} holds injected elements"
        );
    }
    let text = b.body_text().await;
    assert!(
        text.contains("<script>alert(2)</script> still down"),
        "{text}"
    );
    assert!(
        text.contains("<b onmouseover=alert(3)>VMware</b>"),
        "{text}"
    );
    drop(b);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fired_timer_updates_the_open_page_within_two_seconds_without_reload() {
    let _one = ONE_AT_A_TIME.lock().await;
    let s = Served::start().await;
    s.play("/incident open title:\"Core mail server down\" severity:1 service:mail")
        .await;
    let Some(driver) = Driver::start().await else {
        return s.stop().await;
    };
    let b = driver.browser(1280, 900).await;
    sign_in(&b, &s.base).await;
    for page in ["/", "/incidents/INC-2"] {
        b.goto(&format!("{}{page}", s.base)).await;
        b.wait_for(
            "return document.body.getAttribute('data-live') === 'connected';",
            Duration::from_secs(5),
        )
        .await
        .expect("the live stream connects");
        let tier = b.text("main .tier").await.unwrap();
        assert!(tier.starts_with("L1"), "{page}: {tier}");
        b.eval("window.__notReloaded = 42; return true;").await;
        // SEV1's L1 budget is 30 minutes: the timer fires and escalates to L2.
        let app = s.app.clone();
        let clock = s.clock.clone();
        tokio::task::spawn_blocking(move || {
            let target = clock.now() + chrono::TimeDelta::minutes(31);
            assert!(app.advance_to(&clock, target).unwrap() >= 1);
        })
        .await
        .unwrap();
        let took = b
            .wait_for(
                "var t = document.querySelector('main .tier'); return t !== null && t.textContent.startsWith('L2');",
                Duration::from_secs(2),
            )
            .await;
        assert!(
            took.is_some(),
            "{page} still shows {:?} 2 s after the timer fired",
            b.text("main .tier").await
        );
        assert_eq!(
            b.eval("return window.__notReloaded;").await,
            json!(42),
            "{page} was reloaded"
        );
        // Back to L1 for the next page: a new incident, escalated from its own start.
        if page == "/" {
            s.play("/as sam\n/incident resolve summary:\"first half done\"\n/as alice")
                .await;
            s.play("/incident open title:\"Core mail server down again\" severity:1 service:mail")
                .await;
        }
    }
    // When the listener stops, the stream drops and the page says how stale it is.
    let _ = s.stop.send(true);
    let lost = b
        .wait_for(
            "return document.body.getAttribute('data-live') === 'lost';",
            Duration::from_secs(5),
        )
        .await;
    assert!(lost.is_some(), "the page never noticed the stream dropped");
    let live = b.text("#live").await.unwrap();
    assert!(
        live.contains("Connection lost") && live.contains("old"),
        "{live}"
    );
    drop(b);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_share_link_shows_one_incident_and_refuses_another() {
    let _one = ONE_AT_A_TIME.lock().await;
    let s = Served::start().await;
    s.play(
        "/incident open title:\"Core mail server down\" severity:1 service:mail\n\
         /vendor add name:VMware case:SR-77 callback:2h",
    )
    .await;
    s.play("/incident open title:\"Payroll export stuck\" severity:2 service:payroll")
        .await;
    let cookie = s.cookie().await;
    let (_, page) = s.status("/incidents/INC-1", Some(&cookie)).await;
    let link = page
        .split("id=\"share-link\" href=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the incident page shows its share link")
        .to_string();
    assert!(link.starts_with("/share/INC-1/"), "{link}");
    let sig = link.rsplit('/').next().unwrap().to_string();

    // Over HTTP: another incident with this signature is refused, and so is a broken one.
    assert_eq!(s.status(&format!("/share/INC-2/{sig}"), None).await.0, 403);
    assert_eq!(s.status("/share/INC-1/00", None).await.0, 403);
    assert_eq!(s.status(&format!("{link}/report.md"), None).await.0, 200);
    assert_eq!(s.status(&format!("{link}/events/x"), None).await.0, 404);

    if let Some(driver) = Driver::start().await {
        // A vendor's browser: no cookie, only the link.
        let vendor = driver.browser(1280, 900).await;
        vendor.goto(&format!("{}{link}", s.base)).await;
        let text = vendor.body_text().await;
        assert!(text.contains("INC-1: Core mail server down"), "{text}");
        assert!(text.contains("VMware") && text.contains("SR-77"), "{text}");
        assert!(!text.contains("Payroll export stuck"), "{text}");
        assert!(!text.contains("All incidents"), "{text}");
        assert_eq!(
            vendor
                .eval("return document.querySelector('#share-link');")
                .await,
            json!(null),
            "a share viewer is shown no share link"
        );
        vendor.goto(&format!("{}/share/INC-2/{sig}", s.base)).await;
        let text = vendor.body_text().await;
        assert!(text.contains("not valid"), "{text}");
        assert!(!text.contains("Payroll export stuck"), "{text}");
        vendor.goto(&format!("{}/", s.base)).await;
        assert!(!vendor.body_text().await.contains("Payroll export stuck"));
        drop(vendor);
    }

    // Valid until the incident resolves plus a day.
    s.play("/in INC-1\n/as sam\n/incident resolve summary:\"Fixed\"")
        .await;
    let clock = s.clock.clone();
    clock.set(clock.now() + chrono::TimeDelta::hours(23));
    assert_eq!(s.status(&link, None).await.0, 200);
    clock.set(clock.now() + chrono::TimeDelta::hours(2));
    let (status, body) = s.status(&link, None).await;
    assert_eq!(status, 410);
    assert!(body.contains("expired"));
    s.stop().await;
}

/// The README's screenshots: the seed story's board, up to just before its resolution, at
/// phone and desktop widths, written to `docs/`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn screenshots_of_the_seed_story_board() {
    let _one = ONE_AT_A_TIME.lock().await;
    let s = Served::start().await;
    let script = story();
    let cut = script
        .find("/incident resolve")
        .map(|i| &script[..i])
        .expect("the seed story resolves its incident");
    let played = cut.trim_end().strip_suffix("/as dana").unwrap_or(cut);
    s.play(played).await;
    let Some(driver) = Driver::start().await else {
        return s.stop().await;
    };
    let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
    std::fs::create_dir_all(&docs).unwrap();
    for (name, width, height) in [("board-phone", 412, 1400), ("board-desktop", 1280, 1000)] {
        let b = if width < 500 {
            driver.phone(width, height).await
        } else {
            driver.browser(width, height).await
        };
        sign_in(&b, &s.base).await;
        b.wait_for(
            "return document.body.getAttribute('data-live') === 'connected';",
            Duration::from_secs(5),
        )
        .await
        .expect("live");
        let text = b.body_text().await;
        assert!(
            text.contains("Core mail server fails to bind its IP"),
            "{text}"
        );
        assert!(text.contains("Plan B"), "{text}");
        let width_seen = b.eval("return window.innerWidth;").await;
        assert_eq!(width_seen, json!(width), "the window is {width} wide");
        let png = b.screenshot().await;
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        std::fs::write(docs.join(format!("{name}.png")), png).unwrap();
    }
    s.stop().await;
}

#[test]
fn the_board_configuration_is_checked_and_its_token_must_be_set() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("warroom.toml");
    std::fs::write(&path, "[board]\nenabled = \"yes\"\n").unwrap();
    let e = Config::load(Some(&path), &[]).unwrap_err().to_string();
    assert!(e.contains("board.enabled"), "{e}");
    std::fs::write(&path, "[board]\ntoken_env = \"not a name\"\n").unwrap();
    let e = Config::load(Some(&path), &[]).unwrap_err().to_string();
    assert!(e.contains("board.token_env"), "{e}");

    let off = Config::builtin().unwrap();
    assert!(
        Board::from_config(&off, |_| Some(TOKEN.into()))
            .unwrap()
            .is_none()
    );
    std::fs::write(
        &path,
        "[board]\nenabled = true\ntoken_env = \"WR_TEST_BOARD_UNSET\"\n",
    )
    .unwrap();
    let on = Config::load(Some(&path), &[]).unwrap();
    let e = Board::from_config(&on, |_| None).unwrap_err().to_string();
    assert!(e.contains("WR_TEST_BOARD_UNSET"), "{e}");
    let e = Board::from_config(&on, |_| Some("short".into()))
        .unwrap_err()
        .to_string();
    assert!(e.contains("shorter than"), "{e}");

    // The console with --http refuses to start without the token, naming the variable.
    let run = super::helpers::run_plain(
        &[
            "--config",
            path.to_str().unwrap(),
            "console",
            "--data",
            dir.path().join("data").to_str().unwrap(),
            "--http",
            "127.0.0.1:0",
        ],
        "",
    );
    assert!(!run.success);
    assert!(run.stderr.contains("WR_TEST_BOARD_UNSET"), "{}", run.stderr);
    assert!(!dir.path().join("data").exists(), "nothing opened");
}
