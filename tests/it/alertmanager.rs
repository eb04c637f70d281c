//! A real Prometheus Alertmanager (Debian's `prometheus-alertmanager`) in front of a real
//! `warroom console --http`: alerts are posted to Alertmanager's `/api/v2/alerts`, and its
//! webhook receiver, with short group and repeat intervals, notifies warroom. The test shows
//! one incident per group opened once despite repeats, a second alert in the group appended,
//! the resolve notice, and that killing warroom between notifications loses and doubles
//! nothing. Real time: about 30 s.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use warroom::domain::{EventKind, IncidentId, NudgeKind};
use warroom::store::Store;

use crate::helpers::{free_port, program, say};

const TOKEN: &str = "am-webhook-token";
const WAIT: Duration = Duration::from_secs(25);

/// A `warroom console --http` child on `port`, its stdout lines collected.
struct Warroom {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Warroom {
    fn start(config: &Path, data: &Path, port: u16) -> Warroom {
        let mut child = Command::new(env!("CARGO_BIN_EXE_warroom"))
            .args([
                "--config",
                config.to_str().unwrap(),
                "console",
                "--data",
                data.to_str().unwrap(),
                "--http",
                &format!("127.0.0.1:{port}"),
                "--format",
                "jsonl",
            ])
            .env_remove("WARROOM_DATA")
            .env("WARROOM_TEST_AM_TOKEN", TOKEN)
            // Its input stays open: the console runs until it is killed.
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start warroom");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let out = child.stdout.take().unwrap();
        let sink = lines.clone();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(l);
            }
        });
        let err = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(err).lines().map_while(Result::ok) {
                if l.contains("http listening") {
                    let _ = tx.send(());
                }
                say(&format!("warroom: {l}"));
            }
        });
        rx.recv_timeout(WAIT).expect("warroom says it is listening");
        Warroom { child, lines }
    }

    fn count(&self, needle: &str) -> usize {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }

    /// Kills it without warning, as a crash would.
    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Warroom {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A throwaway Alertmanager on 127.0.0.1 with its storage in a temp folder, no clustering,
/// and a webhook receiver pointing at warroom. Stopped on drop.
struct Alertmanager {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Alertmanager {
    fn start(bin: &Path, warroom_port: u16) -> Alertmanager {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let config = dir.path().join("alertmanager.yml");
        std::fs::write(
            &config,
            format!(
                r#"route:
  receiver: warroom
  group_by: ['alertname']
  group_wait: 1s
  group_interval: 2s
  repeat_interval: 4s
receivers:
  - name: warroom
    webhook_configs:
      - url: 'http://127.0.0.1:{warroom_port}/alerts/am'
        send_resolved: true
        http_config:
          authorization:
            type: Bearer
            credentials: '{TOKEN}'
"#
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.path().join("alertmanager.log")).unwrap();
        let child = Command::new(bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .arg("--log.level=info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start alertmanager");
        Alertmanager { child, port, dir }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("alertmanager.log")).unwrap_or_default()
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn wait_for(what: &str, am: &Alertmanager, mut done: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < WAIT {
        if done().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!(
        "waited {WAIT:?} for {what}; alertmanager's log:\n{}",
        am.log()
    );
}

/// `warroom_alerts_received_total{source="am",outcome}` from warroom's `/metrics`.
async fn received(client: &reqwest::Client, port: u16, outcome: &str) -> f64 {
    let Ok(resp) = client
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
    else {
        return 0.0;
    };
    let text = resp.text().await.unwrap_or_default();
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == "warroom_alerts_received_total")
        .filter(|s| {
            s.labels.get("source") == Some("am") && s.labels.get("outcome") == Some(outcome)
        })
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}

/// Posts alerts to Alertmanager's API: `(instance, firing)`.
async fn post_alerts(client: &reqwest::Client, am: &Alertmanager, alerts: &[(&str, bool)]) {
    let now = chrono::Utc::now();
    let body: Vec<_> = alerts
        .iter()
        .map(|(instance, firing)| {
            let ends = if *firing {
                now + chrono::TimeDelta::hours(1)
            } else {
                now - chrono::TimeDelta::seconds(1)
            };
            json!({
                "labels": {"alertname": "MailQueueStuck", "instance": instance, "severity": "critical", "service": "mail"},
                "annotations": {"summary": "The mail queue is not draining"},
                "generatorURL": format!("http://prometheus.test:9090/graph?g0.expr=mail_queue{{instance=\"{instance}\"}}"),
                "startsAt": (now - chrono::TimeDelta::minutes(1)).to_rfc3339(),
                "endsAt": ends.to_rfc3339(),
            })
        })
        .collect();
    let resp = client
        .post(format!("http://127.0.0.1:{}/api/v2/alerts", am.port))
        .header("Content-Type", "application/json")
        .body(serde_json::to_vec(&body).unwrap())
        .send()
        .await
        .expect("alertmanager answers");
    assert_eq!(
        resp.status().as_u16(),
        200,
        "{}",
        resp.text().await.unwrap_or_default()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_alertmanager_opens_one_incident_per_group_and_a_restart_loses_and_doubles_nothing()
{
    let Some(bin) = program("prometheus-alertmanager") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let config: PathBuf = dir.path().join("warroom.toml");
    std::fs::write(
        &config,
        "[alerts.sources.am]\nkind = \"alertmanager\"\ntoken_env = \"WARROOM_TEST_AM_TOKEN\"\n",
    )
    .unwrap();
    let data = dir.path().join("data");
    let wport = free_port();
    let client = reqwest::Client::new();
    let first = Warroom::start(&config, &data, wport);
    let am = Alertmanager::start(&bin, wport);
    wait_for("alertmanager to be ready", &am, async || {
        client
            .get(format!("http://127.0.0.1:{}/-/ready", am.port))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    })
    .await;

    // One alert: the group's incident opens once, and Alertmanager's repeats add nothing.
    post_alerts(&client, &am, &[("mx1", true)]).await;
    wait_for("the incident to open", &am, async || {
        first.count("opened by alert:am") >= 1
    })
    .await;
    wait_for("a repeated notification", &am, async || {
        received(&client, wport, "unchanged").await >= 1.0
    })
    .await;
    assert_eq!(received(&client, wport, "opened").await, 1.0);
    assert_eq!(first.count("opened by alert:am"), 1);

    // warroom dies; meanwhile a second alert joins the group. Alertmanager cannot deliver it
    // and retries; the restarted warroom gets it, and appends it once.
    first.kill();
    post_alerts(&client, &am, &[("mx1", true), ("mx2", true)]).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let second = Warroom::start(&config, &data, wport);
    wait_for("the second alert to be appended", &am, async || {
        second.count("New alert in the group") >= 1
    })
    .await;
    wait_for("a repeat after the restart", &am, async || {
        received(&client, wport, "unchanged").await >= 1.0
    })
    .await;
    assert_eq!(
        received(&client, wport, "opened").await,
        0.0,
        "nothing reopened"
    );

    // Both resolve: the notice, and the current tier is asked to confirm.
    post_alerts(&client, &am, &[("mx1", false), ("mx2", false)]).await;
    wait_for("the resolve notice", &am, async || {
        second.count("the monitoring source reports this resolved") >= 1
    })
    .await;
    second.kill();
    drop(am);

    // What the data folder holds after two crashes: one incident, each thing once.
    let store = Store::open(&data).unwrap();
    let incidents = store.incidents().unwrap();
    assert_eq!(incidents.len(), 1, "one group, one incident");
    let inc = &incidents[0];
    assert_eq!(inc.opener.as_str(), "alert:am");
    assert_eq!(inc.title, "The mail queue is not draining");
    assert_eq!(inc.severity.level(), 1);
    assert_eq!(inc.service, "mail");
    let link = inc.alert.as_ref().unwrap();
    assert_eq!(link.alerts.len(), 2, "{link:#?}");
    assert!(link.reported_resolved);
    let events = store.events(IncidentId(1)).unwrap();
    let count =
        |pred: &dyn Fn(&warroom::domain::Event) -> bool| events.iter().filter(|e| pred(e)).count();
    assert_eq!(count(&|e| e.kind == EventKind::Opened), 1);
    assert_eq!(
        count(&|e| e.text.contains("new alert in the group")),
        1,
        "{events:#?}"
    );
    assert!(
        events.iter().any(|e| e.text.contains("instance=mx2")
            && e.text.contains("http://prometheus.test:9090/graph")),
        "the timeline shows labels and the generator URL"
    );
    assert_eq!(
        count(&|e| e.text.contains("reports this resolved")),
        1,
        "{events:#?}"
    );
    assert_eq!(
        inc.nudges
            .iter()
            .filter(|n| n.kind == NudgeKind::ConfirmResolved)
            .count(),
        1
    );
    assert!(inc.is_open(), "auto_resolve is off: a person confirms");
}
