//! `warroom backup` and `warroom restore`: a snapshot of the store (`store::snapshot`'s format)
//! taken from a stopped folder directly, or from a running bot through its backup socket.
//!
//! One process holds a sled folder (`warroom.lock`), and copying sled's files while it writes
//! gives no consistent image. So the process that holds the folder takes the snapshot: while
//! it runs, `warroom console` and `warroom discord` listen on a Unix socket in the data folder
//! (`warroom.sock`, mode 0600, removed at a clean stop). `warroom backup` first tries to open
//! the folder itself; if another process holds it, it asks that process through the socket,
//! which answers with the backup file's bytes (or one `{"error":…}` line). Either way the
//! snapshot is taken with writers paused (`Store::snapshot`), so it is the store at one
//! instant, and the file is checked whole before it is written (to a `.partial` file, synced,
//! then renamed), so a backup file on disk is always complete.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Weak;
use std::time::Duration;

use anyhow::Context as _;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

use crate::app::App;
use crate::store::postgres::{PgStore, PgUrl};
use crate::store::snapshot::{self, Snapshot};
use crate::store::{Store, StoreError, StoreOptions};

/// The socket's file name in the data folder.
pub const SOCKET: &str = "warroom.sock";
/// What a client sends.
const REQUEST: &[u8] = b"backup 1\n";

/// Listens on `dir/warroom.sock` until `stop`, answering each request with a snapshot of the
/// app's store. Holds the app weakly, so it never keeps the data folder open.
pub async fn serve(app: Weak<App>, dir: PathBuf, mut stop: watch::Receiver<bool>) {
    let path = dir.join(SOCKET);
    // This process holds the folder's lock, so a socket file left here is a crashed run's.
    let _ = std::fs::remove_file(&path);
    let listener = match tokio::net::UnixListener::bind(&path) {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(
                error = %e,
                socket = %path.display(),
                "cannot listen for backups; `warroom backup` works only while this process is stopped"
            );
            return;
        }
    };
    {
        use std::os::unix::fs::PermissionsExt as _;
        if let Err(e) = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)) {
            tracing::warn!(error = %e, "cannot restrict the backup socket to this user");
        }
    }
    loop {
        let conn = tokio::select! {
            c = listener.accept() => c,
            _ = stop.changed() => break,
        };
        let Ok((stream, _)) = conn else {
            continue;
        };
        let app = app.clone();
        tokio::spawn(async move {
            if let Err(e) = answer(app, stream).await {
                tracing::warn!(error = %e, "a backup request failed");
            }
        });
    }
    drop(listener);
    let _ = std::fs::remove_file(&path);
}

async fn answer(app: Weak<App>, stream: tokio::net::UnixStream) -> anyhow::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut request = Vec::new();
    let mut reader = tokio::io::BufReader::new(read.take(64));
    tokio::time::timeout(
        Duration::from_secs(5),
        reader.read_until(b'\n', &mut request),
    )
    .await
    .context("the request did not arrive")??;
    let bytes = if request != REQUEST {
        error_line("unknown request; use `warroom backup` of the same version")
    } else {
        let taken = tokio::task::spawn_blocking(move || -> Result<Vec<u8>, String> {
            let app = app.upgrade().ok_or("the bot is stopping")?;
            let snap = app
                .store()
                .snapshot()
                .map_err(|e| app.store().explain(e).to_string())?;
            snapshot::encode(&snap).map_err(|e| e.to_string())
        })
        .await;
        match taken {
            Ok(Ok(b)) => {
                tracing::info!(bytes = b.len(), "backup taken for `warroom backup`");
                b
            }
            Ok(Err(e)) => error_line(&e),
            Err(_) => error_line("the snapshot failed"),
        }
    };
    write.write_all(&bytes).await?;
    write.shutdown().await?;
    Ok(())
}

fn error_line(text: &str) -> Vec<u8> {
    let mut line = serde_json::json!({ "error": text })
        .to_string()
        .into_bytes();
    line.push(b'\n');
    line
}

/// Asks the process that holds `dir` for a backup, through its socket.
fn request(dir: &Path) -> anyhow::Result<Vec<u8>> {
    let path = dir.join(SOCKET);
    let mut stream = std::os::unix::net::UnixStream::connect(&path).with_context(|| {
        format!(
            "another process holds {} but does not answer on {} ; back it up with a warroom of the same version as the running one, or stop it and run `warroom backup` again",
            dir.display(),
            path.display()
        )
    })?;
    stream.set_read_timeout(Some(Duration::from_secs(600)))?;
    stream.write_all(REQUEST)?;
    let mut bytes = Vec::new();
    stream
        .read_to_end(&mut bytes)
        .context("the running process stopped answering before the backup was complete")?;
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&bytes)
        && let Some(e) = v.get("error").and_then(|e| e.as_str())
    {
        anyhow::bail!("the running process could not take the backup: {e}");
    }
    Ok(bytes)
}

/// `warroom backup --data DIR --out FILE`: returns what it wrote.
pub fn backup(dir: &Path, options: &StoreOptions, out: &Path) -> anyhow::Result<Snapshot> {
    if !dir.join("db").exists() {
        anyhow::bail!(
            "there is no warroom data folder at {} (it has no db/); give the folder with --data",
            dir.display()
        );
    }
    let bytes = match Store::open_with(dir, options) {
        Ok(store) => {
            let snap = store.snapshot().map_err(|e| store.explain(e))?;
            snapshot::encode(&snap)?
        }
        Err(StoreError::Locked { .. }) => request(dir)?,
        Err(e) => return Err(e.into()),
    };
    // Checked whole before it is written: a backup that cannot be restored is no backup.
    let snap = snapshot::decode(&bytes).context("the backup just taken does not read back")?;
    write_atomically(out, &bytes)?;
    Ok(snap)
}

/// Writes `bytes` to `out` through a synced `.partial` file and a rename.
fn write_atomically(out: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut partial = out.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    let cannot = |e: std::io::Error| {
        anyhow::anyhow!(
            "cannot write the backup to {}: {e}; check that its folder exists and this user may write there",
            out.display()
        )
    };
    let mut f = std::fs::File::create(&partial).map_err(cannot)?;
    f.write_all(bytes).map_err(cannot)?;
    f.sync_all().map_err(cannot)?;
    drop(f);
    std::fs::rename(&partial, out).map_err(cannot)?;
    if let Some(parent) = out.parent()
        && let Ok(d) = std::fs::File::open(if parent.as_os_str().is_empty() {
            Path::new(".")
        } else {
            parent
        })
    {
        let _ = d.sync_all();
    }
    Ok(())
}

/// `warroom restore --in FILE --data DIR`: the file is read and checked whole first, so a
/// damaged file leaves no trace; then it goes into the store in one transaction, and only into
/// an empty one.
pub fn restore(dir: &Path, options: &StoreOptions, input: &Path) -> anyhow::Result<Snapshot> {
    let bytes = std::fs::read(input)
        .with_context(|| format!("cannot read the backup {}", input.display()))?;
    let snap = snapshot::decode(&bytes)
        .with_context(|| format!("{} cannot be restored", input.display()))?;
    let existed = dir.exists();
    let store = Store::open_with(dir, options)?;
    if let Err(e) = store.restore(&snap) {
        let refused = matches!(e, StoreError::NotEmpty { .. });
        drop(store);
        // A folder this call created for a restore that failed goes again.
        if !existed && !refused {
            let _ = std::fs::remove_dir_all(dir);
        }
        return Err(e.into());
    }
    Ok(snap)
}

/// `warroom backup --store URL --out FILE`: a snapshot of a PostgreSQL store, taken in one
/// repeatable-read transaction, so that it is consistent while replicas write.
pub fn backup_pg(url: &PgUrl, out: &Path) -> anyhow::Result<Snapshot> {
    let store = PgStore::connect(url)?;
    let bytes = snapshot::encode(&store.snapshot()?)?;
    let snap = snapshot::decode(&bytes).context("the backup just taken does not read back")?;
    write_atomically(out, &bytes)?;
    Ok(snap)
}

/// `warroom restore --store URL --in FILE`: the file is checked whole first, then loaded in
/// one transaction into the database, only if it is empty.
pub fn restore_pg(url: &PgUrl, input: &Path) -> anyhow::Result<Snapshot> {
    let bytes = std::fs::read(input)
        .with_context(|| format!("cannot read the backup {}", input.display()))?;
    let snap = snapshot::decode(&bytes)
        .with_context(|| format!("{} cannot be restored", input.display()))?;
    PgStore::connect(url)?.restore(&snap)?;
    Ok(snap)
}
