//! The rest of the store's interface on PostgreSQL, beside the commit path: the reads `App`
//! makes, the outbox's bookkeeping (deliveries, fallback copies, dead letters), drills and shift
//! handoffs (`deadlines`), on-call overrides and the front end's adapter ids. Each write is one
//! transaction, fenced by the handle's lease term when it has one (`PgStore::fence`), so that a
//! deposed replica changes nothing.

use chrono::{DateTime, TimeZone, Utc};

use super::{PgStore, describe, incident_id, sql_id};
use crate::domain::oncall::Override;
use crate::domain::{Incident, IncidentId};
use crate::store::{DeadLetter, DueTimer, Outgoing, StoreError};

/// The kinds of `deadlines` rows, as the schema's check names them.
const DRILL: &str = "drill";
const HANDOFF: &str = "handoff";

impl PgStore {
    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool.get().await.map_err(|e| self.error(e))
    }

    /// Opens a transaction, fenced: fails with `Deposed` (and writes nothing) when this handle
    /// writes under a term that is no longer the lease's.
    async fn begin<'c>(
        &self,
        client: &'c mut deadpool_postgres::Object,
    ) -> Result<deadpool_postgres::Transaction<'c>, StoreError> {
        let tx = client.transaction().await.map_err(|e| self.error(e))?;
        if let Some(term) = self.fenced_term() {
            self.check_term(&tx, term).await?;
        }
        Ok(tx)
    }

    fn sql(&self) -> impl Fn(tokio_postgres::Error) -> StoreError + '_ {
        move |e| self.error(describe(&e))
    }

    /// Every row's `body` column of `query`, decoded.
    fn read_bodies<T: serde::de::DeserializeOwned + Send>(
        &self,
        query: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
        what: &str,
    ) -> Result<Vec<T>, StoreError> {
        self.run(async {
            let client = self.client().await?;
            let rows = client.query(query, params).await.map_err(self.sql())?;
            self.bodies(&rows, what)
        })
    }

    /// Writes `msgs` into the outbox inside `tx` (a message queued again keeps its id).
    async fn put_outbox(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        msgs: &[Outgoing],
    ) -> Result<(), StoreError> {
        for m in msgs {
            tx.execute(
                "INSERT INTO outbox (id, body) VALUES ($1, $2)
                 ON CONFLICT (id) DO UPDATE SET body = excluded.body",
                &[&sql_id(m.id), &self.json(m)?],
            )
            .await
            .map_err(self.sql())?;
        }
        Ok(())
    }

    pub fn incidents(&self) -> Result<Vec<Incident>, StoreError> {
        self.read_bodies("SELECT body FROM incidents ORDER BY id", &[], "an incident")
    }

    /// The newest open incident.
    pub fn latest_open(&self) -> Result<Option<Incident>, StoreError> {
        let mut found: Vec<Incident> = self.read_bodies(
            "SELECT body FROM incidents WHERE open ORDER BY id DESC LIMIT 1",
            &[],
            "an incident",
        )?;
        Ok(found.pop())
    }

    /// Incidents opened at or after `since`, newest first (ids grow with opening time, as on
    /// sled, so it stops at the first older one).
    pub fn incidents_opened_since(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<Incident>, StoreError> {
        let all: Vec<Incident> = self.read_bodies(
            "SELECT body FROM incidents ORDER BY id DESC",
            &[],
            "an incident",
        )?;
        Ok(all
            .into_iter()
            .take_while(|i| i.opened_at >= since)
            .collect())
    }

    /// The open incident that holds alert group `group` of `source`, if any.
    pub fn alert_incident(
        &self,
        source: &str,
        group: &str,
    ) -> Result<Option<IncidentId>, StoreError> {
        self.run(async {
            let client = self.client().await?;
            let row = client
                .query_opt(
                    "SELECT incident FROM alert_groups WHERE source = $1 AND grp = $2",
                    &[&source, &group],
                )
                .await
                .map_err(self.sql())?;
            row.map(|r| r.try_get::<_, i64>(0).map(incident_id))
                .transpose()
                .map_err(self.sql())
        })
    }

    /// The time of the latest event ever committed, if any.
    pub fn last_event_at(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.run(async {
            let client = self.client().await?;
            let row = client
                .query_one("SELECT last_event_ms FROM warroom_state", &[])
                .await
                .map_err(self.sql())?;
            let ms: Option<i64> = row.try_get(0).map_err(self.sql())?;
            Ok(ms.and_then(|ms| Utc.timestamp_millis_opt(ms).single()))
        })
    }

    /// The earliest pending timer.
    pub fn next_timer(&self) -> Result<Option<DueTimer>, StoreError> {
        Ok(self
            .due_timers(DateTime::<Utc>::MAX_UTC, 1)?
            .into_iter()
            .next())
    }

    /// Removes a timer whose incident no longer knows it (it was already consumed).
    pub fn drop_timer(&self, t: &DueTimer) -> Result<(), StoreError> {
        self.run(async {
            let mut client = self.client().await?;
            let tx = self.begin(&mut client).await?;
            tx.execute(
                "DELETE FROM timers WHERE incident = $1 AND seq = $2",
                &[&sql_id(t.incident.0), &i64::from(t.seq.0)],
            )
            .await
            .map_err(self.sql())?;
            tx.commit().await.map_err(self.sql())
        })
    }

    /// The deadlines of one incident's pending timers.
    pub fn timers_of(&self, id: IncidentId) -> Result<Vec<DateTime<Utc>>, StoreError> {
        self.run(async {
            let client = self.client().await?;
            let rows = client
                .query(
                    "SELECT due FROM timers WHERE incident = $1 ORDER BY seq",
                    &[&sql_id(id.0)],
                )
                .await
                .map_err(self.sql())?;
            rows.iter()
                .map(|r| r.try_get(0))
                .collect::<Result<_, _>>()
                .map_err(self.sql())
        })
    }

    /// The message was delivered: it leaves the outbox (fenced, like every write here).
    pub fn delivered(&self, id: u64) -> Result<(), StoreError> {
        self.run(async {
            let mut client = self.client().await?;
            let tx = self.begin(&mut client).await?;
            tx.execute("DELETE FROM outbox WHERE id = $1", &[&sql_id(id)])
                .await
                .map_err(self.sql())?;
            tx.commit().await.map_err(self.sql())
        })
    }

    /// Queues `msgs` in one transaction.
    pub fn queue(&self, msgs: &[Outgoing]) -> Result<(), StoreError> {
        self.run(async {
            let mut client = self.client().await?;
            let tx = self.begin(&mut client).await?;
            self.put_outbox(&tx, msgs).await?;
            tx.commit().await.map_err(self.sql())
        })
    }

    /// Queues the fallback copies of `original` and marks it as fallen back, in one
    /// transaction, if it still waits; false (and nothing queued) if it has left the outbox.
    pub fn queue_fallback(
        &self,
        original: &Outgoing,
        copies: &[Outgoing],
    ) -> Result<bool, StoreError> {
        let mut marked = original.clone();
        marked.fallback_done = true;
        self.run(async {
            let mut client = self.client().await?;
            let tx = self.begin(&mut client).await?;
            let waiting = tx
                .query_opt(
                    "SELECT id FROM outbox WHERE id = $1 FOR UPDATE",
                    &[&sql_id(original.id)],
                )
                .await
                .map_err(self.sql())?;
            if waiting.is_none() {
                return Ok(false);
            }
            self.put_outbox(&tx, std::slice::from_ref(&marked)).await?;
            self.put_outbox(&tx, copies).await?;
            tx.commit().await.map_err(self.sql())?;
            Ok(true)
        })
    }

    /// The platform refused the message for good: it moves to the dead letters and `notices`
    /// are queued, in one transaction.
    pub fn dead_letter(
        &self,
        msg: &Outgoing,
        reason: &str,
        notices: &[Outgoing],
    ) -> Result<(), StoreError> {
        let record = self.json(&DeadLetter {
            message: msg.clone(),
            reason: reason.to_string(),
        })?;
        self.run(async {
            let mut client = self.client().await?;
            let tx = self.begin(&mut client).await?;
            let id = sql_id(msg.id);
            tx.execute("DELETE FROM outbox WHERE id = $1", &[&id])
                .await
                .map_err(self.sql())?;
            tx.execute(
                "INSERT INTO dead_letters (id, body) VALUES ($1, $2)
                 ON CONFLICT (id) DO UPDATE SET body = excluded.body",
                &[&id, &record],
            )
            .await
            .map_err(self.sql())?;
            self.put_outbox(&tx, notices).await?;
            tx.commit().await.map_err(self.sql())
        })
    }

    /// Every dead letter, oldest first.
    pub fn dead_letter_list(&self) -> Result<Vec<DeadLetter>, StoreError> {
        self.read_bodies(
            "SELECT body FROM dead_letters ORDER BY id",
            &[],
            "a dead letter",
        )
    }

    pub fn dead_letters(&self) -> Result<usize, StoreError> {
        self.run(async {
            let client = self.client().await?;
            let n: i64 = client
                .query_one("SELECT count(*) FROM dead_letters", &[])
                .await
                .and_then(|r| r.try_get(0))
                .map_err(self.sql())?;
            Ok(usize::try_from(n).unwrap_or(0))
        })
    }

    /// Puts dead letters back in the outbox (`id` None: all of them). Returns how many.
    pub fn retry_dead(&self, id: Option<u64>) -> Result<usize, StoreError> {
        self.run(async {
            let mut client = self.client().await?;
            let tx = self.begin(&mut client).await?;
            let rows = match id.map(sql_id) {
                Some(id) => {
                    tx.query(
                        "DELETE FROM dead_letters WHERE id = $1 RETURNING body",
                        &[&id],
                    )
                    .await
                }
                None => {
                    tx.query("DELETE FROM dead_letters RETURNING body", &[])
                        .await
                }
            }
            .map_err(self.sql())?;
            let letters: Vec<DeadLetter> = self.bodies(&rows, "a dead letter")?;
            let msgs: Vec<Outgoing> = letters.into_iter().map(|d| d.message).collect();
            self.put_outbox(&tx, &msgs).await?;
            tx.commit().await.map_err(self.sql())?;
            Ok(msgs.len())
        })
    }

    fn deadlines(&self, kind: &str) -> Result<Vec<(DateTime<Utc>, String)>, StoreError> {
        self.run(async {
            let client = self.client().await?;
            let rows = client
                .query(
                    "SELECT due, name FROM deadlines WHERE kind = $1 ORDER BY due, name",
                    &[&kind],
                )
                .await
                .map_err(self.sql())?;
            rows.iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                .collect::<Result<_, tokio_postgres::Error>>()
                .map_err(self.sql())
        })
    }

    /// Replaces `name`'s deadline of `kind` (None: removes it) and queues `outbox`, in one
    /// transaction: a deadline is claimed exactly once, with what it said.
    fn set_deadline(
        &self,
        kind: &str,
        name: &str,
        due: Option<DateTime<Utc>>,
        outbox: &[Outgoing],
    ) -> Result<(), StoreError> {
        self.run(async {
            let mut client = self.client().await?;
            let tx = self.begin(&mut client).await?;
            tx.execute(
                "DELETE FROM deadlines WHERE kind = $1 AND name = $2",
                &[&kind, &name],
            )
            .await
            .map_err(self.sql())?;
            if let Some(due) = due {
                tx.execute(
                    "INSERT INTO deadlines (kind, due, name) VALUES ($1, $2, $3)",
                    &[&kind, &due, &name],
                )
                .await
                .map_err(self.sql())?;
            }
            self.put_outbox(&tx, outbox).await?;
            tx.commit().await.map_err(self.sql())
        })
    }

    pub fn drills(&self) -> Result<Vec<(DateTime<Utc>, String)>, StoreError> {
        self.deadlines(DRILL)
    }

    pub fn drill_first(&self) -> Result<Option<(DateTime<Utc>, String)>, StoreError> {
        Ok(self.deadlines(DRILL)?.into_iter().next())
    }

    pub fn set_drill(
        &self,
        service: &str,
        due: Option<DateTime<Utc>>,
        outbox: &[Outgoing],
    ) -> Result<(), StoreError> {
        self.set_deadline(DRILL, service, due, outbox)
    }

    pub fn handoffs(&self) -> Result<Vec<(DateTime<Utc>, String)>, StoreError> {
        self.deadlines(HANDOFF)
    }

    pub fn handoff_first(&self) -> Result<Option<(DateTime<Utc>, String)>, StoreError> {
        Ok(self.deadlines(HANDOFF)?.into_iter().next())
    }

    pub fn set_handoff(
        &self,
        role: &str,
        due: Option<DateTime<Utc>>,
        outbox: &[Outgoing],
    ) -> Result<(), StoreError> {
        self.set_deadline(HANDOFF, role, due, outbox)
    }

    /// Every stored override, oldest first.
    pub fn overrides(&self) -> Result<Vec<Override>, StoreError> {
        self.read_bodies(
            "SELECT body FROM oncall_overrides ORDER BY id",
            &[],
            "an on-call override",
        )
    }

    /// The next override number: one past the highest stored (removed ones stay, marked).
    pub fn override_id(&self) -> Result<u64, StoreError> {
        self.run(async {
            let client = self.client().await?;
            let n: Option<i64> = client
                .query_one("SELECT max(id) FROM oncall_overrides", &[])
                .await
                .and_then(|r| r.try_get(0))
                .map_err(self.sql())?;
            Ok(n.and_then(|n| u64::try_from(n).ok())
                .unwrap_or(0)
                .saturating_add(1))
        })
    }

    /// Stores an override, durably.
    pub fn put_override(&self, o: &Override) -> Result<(), StoreError> {
        let body = self.json(o)?;
        self.run(async {
            let mut client = self.client().await?;
            let tx = self.begin(&mut client).await?;
            tx.execute(
                "INSERT INTO oncall_overrides (id, body) VALUES ($1, $2)
                 ON CONFLICT (id) DO UPDATE SET body = excluded.body",
                &[&sql_id(o.id), &body],
            )
            .await
            .map_err(self.sql())?;
            tx.commit().await.map_err(self.sql())
        })
    }

    /// A front end's own durable mapping (for example incident → Discord channel id).
    pub fn adapter_get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.run(async {
            let client = self.client().await?;
            let row = client
                .query_opt("SELECT value FROM adapter WHERE key = $1", &[&key])
                .await
                .map_err(self.sql())?;
            row.map(|r| r.try_get::<_, Vec<u8>>(0))
                .transpose()
                .map_err(self.sql())
        })
    }

    pub fn adapter_put(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.run(async {
            let mut client = self.client().await?;
            let tx = self.begin(&mut client).await?;
            tx.execute(
                "INSERT INTO adapter (key, value) VALUES ($1, $2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                &[&key, &value],
            )
            .await
            .map_err(self.sql())?;
            tx.commit().await.map_err(self.sql())
        })
    }

    pub fn adapter_remove(&self, key: &str) -> Result<(), StoreError> {
        self.run(async {
            let mut client = self.client().await?;
            let tx = self.begin(&mut client).await?;
            tx.execute("DELETE FROM adapter WHERE key = $1", &[&key])
                .await
                .map_err(self.sql())?;
            tx.commit().await.map_err(self.sql())
        })
    }

    /// Commits made through this handle (each one a durable PostgreSQL commit).
    pub fn committed(&self) -> u64 {
        self.commits.load(std::sync::atomic::Ordering::SeqCst)
    }
}
