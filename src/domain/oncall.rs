//! On-call schedules in the domain's terms: who holds a role at an instant, when the next
//! handoff is, DST-correct shift boundaries, and overrides. Pure: time arrives as an argument.
//!
//! A schedule's shift boundaries are local wall-clock times in its zone: with `handoff =
//! "08:00"` and `shift = "12h"` they are 08:00 and 20:00 local every day, so across a
//! daylight-saving change the night shift that contains it is 11h or 13h long (as the people
//! on it expect), and no other shift moves. A boundary that falls in a spring-forward gap is
//! taken at the first valid instant after it; one in a fall-back repeat at its first
//! occurrence.

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use super::command::Deadline;
use super::engine::{Actor, Ctx, Refusal, RefusalKind, authorize_replacing, human, refuse};
use super::model::{RoleKey, UserName};

/// One `[schedules.NAME]` table: a rotation of people staffing one role key.
#[derive(Clone, Debug, PartialEq)]
pub struct Schedule {
    pub name: String,
    pub role: RoleKey,
    pub zone: Tz,
    pub rotation: Vec<UserName>,
    /// Divides 24h evenly, or is a whole number of days (checked by the configuration).
    pub shift: Duration,
    /// Local time of the first handoff of each day.
    pub handoff: NaiveTime,
    /// The local day the first person's first shift begins, at `handoff`.
    pub start: NaiveDate,
}

/// One shift of a schedule: `user` holds `role` from `from` (inclusive) to `to` (exclusive).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shift {
    pub index: u64,
    pub user: UserName,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

/// Why a shift length is refused, for the configuration's message.
pub fn shift_problem(shift: Duration) -> Option<String> {
    let day = Duration::days(1);
    let secs = shift.num_seconds();
    if secs < 60 {
        return Some("a shift is at least 1m".into());
    }
    if shift > Duration::days(28) {
        return Some("a shift is at most 28d".into());
    }
    let fits = if shift <= day {
        day.num_seconds() % secs == 0
    } else {
        secs % day.num_seconds() == 0
    };
    if fits {
        None
    } else {
        Some(
            "a shift must divide the day evenly (1h, 2h, 3h, 4h, 6h, 8h, 12h, 24h) or be whole days (2d, 7d): otherwise the last shift before the next day's first handoff would be short, a gap in the rotation"
                .into(),
        )
    }
}

impl Schedule {
    /// The local wall-clock time of boundary `k` (the start of shift `k`).
    fn local_boundary(&self, k: u64) -> Option<NaiveDateTime> {
        let day = Duration::days(1);
        let (cycle, per_cycle) = if self.shift < day {
            (
                day,
                day.num_seconds().checked_div(self.shift.num_seconds())?,
            )
        } else {
            (self.shift, 1)
        };
        let per_cycle = u64::try_from(per_cycle).ok().filter(|n| *n > 0)?;
        let cycles = i32::try_from(k / per_cycle).ok()?;
        let within = i32::try_from(k % per_cycle).ok()?;
        let first = self.start.and_time(self.handoff);
        first
            .checked_add_signed(cycle.checked_mul(cycles)?)?
            .checked_add_signed(self.shift.checked_mul(within)?)
    }

    /// Boundary `k` as an instant: the local time in the zone, DST-resolved.
    pub fn boundary(&self, k: u64) -> Option<DateTime<Utc>> {
        let local = self.local_boundary(k)?;
        resolve(&self.zone, local)
    }

    fn user_of(&self, k: u64) -> Option<UserName> {
        let n = u64::try_from(self.rotation.len()).ok().filter(|n| *n > 0)?;
        let i = usize::try_from(k % n).ok()?;
        self.rotation.get(i).cloned()
    }

    pub fn shift(&self, k: u64) -> Option<Shift> {
        Some(Shift {
            index: k,
            user: self.user_of(k)?,
            from: self.boundary(k)?,
            to: self.boundary(k.checked_add(1)?)?,
        })
    }

    /// The shift that holds `t`; None before the schedule starts.
    pub fn shift_at(&self, t: DateTime<Utc>) -> Option<Shift> {
        let first = self.boundary(0)?;
        if t < first {
            return None;
        }
        let secs = self.shift.num_seconds().max(1);
        let guess = t.signed_duration_since(first).num_seconds() / secs;
        let mut k = u64::try_from(guess).unwrap_or(0).saturating_sub(2);
        // DST moves a boundary by at most a few hours; a few steps find the shift.
        for _ in 0..8 {
            let s = self.shift(k)?;
            if t < s.from {
                k = k.checked_sub(1)?;
            } else if t >= s.to {
                k = k.checked_add(1)?;
            } else {
                return Some(s);
            }
        }
        None
    }

    /// The shifts that overlap `[from, to)`, at most `limit`.
    pub fn shifts(&self, from: DateTime<Utc>, to: DateTime<Utc>, limit: usize) -> Vec<Shift> {
        let mut k = match self.shift_at(from) {
            Some(s) => s.index,
            None => 0,
        };
        let mut out = Vec::new();
        while out.len() < limit {
            let Some(s) = self.shift(k) else { break };
            if s.from >= to {
                break;
            }
            if s.to > from {
                out.push(s);
            }
            let Some(next) = k.checked_add(1) else { break };
            k = next;
        }
        out
    }
}

/// A local wall-clock time as an instant: the first of a repeated hour, or the first valid
/// instant after a skipped one.
pub fn resolve(zone: &Tz, local: NaiveDateTime) -> Option<DateTime<Utc>> {
    let mut probe = local;
    for _ in 0..=180 {
        match zone.from_local_datetime(&probe) {
            LocalResult::Single(t) => return Some(t.with_timezone(&Utc)),
            LocalResult::Ambiguous(a, b) => return Some(a.min(b).with_timezone(&Utc)),
            LocalResult::None => probe = probe.checked_add_signed(Duration::minutes(1))?,
        }
    }
    None
}

/// An override: `user` holds `role` from `from` to `to`, instead of whoever the schedule says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Override {
    pub id: u64,
    pub role: RoleKey,
    pub user: UserName,
    /// Whom the schedule had on call when it was made (for the listing).
    pub replaces: Option<UserName>,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub reason: String,
    pub by: UserName,
    /// Set once removed with `/oncall remove`: kept, so that the record shows it, but no longer
    /// in force.
    #[serde(default)]
    pub removed: Option<(UserName, DateTime<Utc>)>,
}

impl Override {
    pub fn in_force(&self) -> bool {
        self.removed.is_none()
    }
}

/// Who holds a role over a stretch of time, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holding {
    pub user: UserName,
    /// Until this instant (the next change of holder or of reason).
    pub until: Option<DateTime<Utc>>,
    /// The schedule that staffs the role.
    pub schedule: String,
    /// Set when an override, not the rotation, puts them there.
    pub by_override: Option<u64>,
}

/// The schedules with the stored overrides: everything needed to answer "who is on".
#[derive(Clone, Copy, Debug)]
pub struct OnCall<'a> {
    pub schedules: &'a [Schedule],
    pub overrides: &'a [Override],
}

impl<'a> OnCall<'a> {
    pub fn schedule_for(&self, role: &RoleKey) -> Option<&'a Schedule> {
        self.schedules.iter().find(|s| s.role == *role)
    }

    /// Who holds `role` at `t`: an override in force (the newest wins), else the rotation. None
    /// for a role without a schedule (it behaves as before: the roster's holders) or before
    /// its schedule starts.
    pub fn holder(&self, role: &RoleKey, t: DateTime<Utc>) -> Option<Holding> {
        let sched = self.schedule_for(role)?;
        let active = self
            .overrides
            .iter()
            .filter(|o| o.in_force() && o.role == *role && o.from <= t && t < o.to)
            .max_by_key(|o| o.id);
        // The next override to begin cuts whatever holds now short.
        let next_start = self
            .overrides
            .iter()
            .filter(|o| o.in_force() && o.role == *role && o.from > t)
            .map(|o| o.from)
            .min();
        let cut = |end: Option<DateTime<Utc>>| match (end, next_start) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if let Some(o) = active {
            return Some(Holding {
                user: o.user.clone(),
                until: cut(Some(o.to)),
                schedule: sched.name.clone(),
                by_override: Some(o.id),
            });
        }
        let s = sched.shift_at(t)?;
        Some(Holding {
            user: s.user,
            until: cut(Some(s.to)),
            schedule: sched.name.clone(),
            by_override: None,
        })
    }

    /// The next change of holder after `t`: (when, who takes over). Stretches where the same
    /// person goes on (an override for the person already on) are skipped.
    pub fn next_handoff(
        &self,
        role: &RoleKey,
        t: DateTime<Utc>,
    ) -> Option<(DateTime<Utc>, Holding)> {
        let now = self.holder(role, t);
        let mut at = match &now {
            Some(h) => h.until?,
            None => self.schedule_for(role)?.boundary(0).filter(|b| *b > t)?,
        };
        for _ in 0..64 {
            let next = self.holder(role, at)?;
            if now.as_ref().map(|h| &h.user) != Some(&next.user) {
                return Some((at, next));
            }
            at = next.until?;
        }
        None
    }

    /// The next instant after `t` at which the holder of `role` may change: the handoff
    /// timer's deadline.
    pub fn next_change(&self, role: &RoleKey, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self.holder(role, t) {
            Some(h) => h.until,
            None => self.schedule_for(role)?.boundary(0).filter(|b| *b > t),
        }
    }

    /// The role keys `user` holds by being on call at `t`.
    pub fn roles_of(&self, user: &UserName, t: DateTime<Utc>) -> BTreeSet<RoleKey> {
        self.schedules
            .iter()
            .filter(|s| self.holder(&s.role, t).is_some_and(|h| h.user == *user))
            .map(|s| s.role.clone())
            .collect()
    }
}

/// A moment given to `/oncall override`, as a time in the schedule's zone.
fn resolve_moment(d: Deadline, zone: &Tz, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    match d {
        Deadline::In(span) => after.checked_add_signed(span),
        Deadline::Exactly(t) => Some(t),
        Deadline::At(clock) => {
            // The next occurrence of that local time after `after`.
            let local_day = after.with_timezone(zone).date_naive();
            for days in 0..=2 {
                let day = local_day.checked_add_signed(Duration::days(days))?;
                let t = resolve(zone, day.and_time(clock))?;
                if t > after {
                    return Some(t);
                }
            }
            None
        }
    }
}

/// How long one override may last.
pub const OVERRIDE_MAX: Duration = Duration::days(14);

/// `/oncall override`: checks and builds an override (stored by the caller). `id` is the
/// number the store handed out for it.
#[allow(clippy::too_many_arguments)]
pub fn make_override(
    ctx: &Ctx,
    actor: &Actor,
    id: u64,
    role: &RoleKey,
    user: &UserName,
    from: Deadline,
    to: Deadline,
    reason: &str,
) -> Result<(Override, String), Refusal> {
    let oc = ctx.oncall();
    let Some(sched) = oc.schedule_for(role) else {
        return refuse(
            RefusalKind::Invalid,
            format!(
                "option 'role': {role} has no schedule, so nobody is on call for it to be replaced; scheduled roles: {}",
                scheduled_roles(ctx.policy.schedules.as_slice())
            ),
        );
    };
    if !ctx.policy.roster.contains(user) {
        return refuse(
            RefusalKind::Invalid,
            format!(
                "option 'user': '{user}' is not on the roster; expected one of: {}",
                ctx.policy.roster.names()
            ),
        );
    }
    let theirs = ctx.policy.roster.roles_of(user);
    if !theirs.is_empty() && theirs.iter().all(RoleKey::is_external) {
        return refuse(
            RefusalKind::Invalid,
            format!(
                "option 'user': {user} is facilities or vendor staff, who cannot be on call for {role}; name a staff member"
            ),
        );
    }
    let reason = reason.trim();
    if reason.is_empty() {
        return refuse(
            RefusalKind::Invalid,
            "option 'reason': say why, for example reason:\"swap with alice\"",
        );
    }
    let Some(start) = resolve_moment(from, &sched.zone, ctx.now) else {
        return refuse(
            RefusalKind::Invalid,
            "option 'from': that time cannot be represented",
        );
    };
    // A start clock time already passed today means its next occurrence; a start a moment ago
    // (an RFC 3339 time in the past) starts now.
    let start = start.max(ctx.now);
    let Some(end) = resolve_moment(to, &sched.zone, start) else {
        return refuse(
            RefusalKind::Invalid,
            "option 'to': that time cannot be represented",
        );
    };
    if end <= start {
        return refuse(
            RefusalKind::Invalid,
            format!(
                "option 'to': the override would end ({}) before it starts ({}); give an end after the start, like from:22:00 to:06:00",
                local(end, &sched.zone),
                local(start, &sched.zone)
            ),
        );
    }
    if end.signed_duration_since(start) > OVERRIDE_MAX {
        return refuse(
            RefusalKind::Invalid,
            format!(
                "option 'to': an override lasts at most {}; for longer, change the rotation in the configuration",
                human(OVERRIDE_MAX)
            ),
        );
    }
    // The person replaced is the rotation's, whatever other overrides say: a swap is agreed
    // with whoever the schedule puts there.
    let replaced = sched.shift_at(start).map(|s| s.user);
    authorize_replacing(
        ctx,
        actor,
        None,
        "oncall override",
        None,
        None,
        replaced.as_ref(),
    )?;
    if replaced.as_ref() == Some(user) {
        return refuse(
            RefusalKind::Invalid,
            format!(
                "option 'user': the rotation already has {user} on call for {role} at {}; nothing to override",
                local(start, &sched.zone)
            ),
        );
    }
    let o = Override {
        id,
        role: role.clone(),
        user: user.clone(),
        replaces: replaced.clone(),
        from: start,
        to: end,
        reason: reason.to_string(),
        by: actor.user.clone(),
        removed: None,
    };
    let text = format!(
        "Override {id}: {user} is on call for {role} from {} to {}{} ({reason}).",
        local(start, &sched.zone),
        local(end, &sched.zone),
        replaced.map_or(String::new(), |r| format!(", instead of {r}"))
    );
    Ok((o, text))
}

/// `/oncall remove`: may `actor` remove `o`? The SDM, or the person it replaced.
pub fn may_remove(ctx: &Ctx, actor: &Actor, o: &Override) -> Result<(), Refusal> {
    authorize_replacing(
        ctx,
        actor,
        None,
        "oncall remove",
        None,
        None,
        o.replaces.as_ref(),
    )
}

fn scheduled_roles(s: &[Schedule]) -> String {
    if s.is_empty() {
        return "none (add [schedules.NAME] to the configuration)".into();
    }
    s.iter()
        .map(|s| s.role.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A time in a zone, for people: `Mon 2026-11-02 08:00 GMT`.
pub fn local(t: DateTime<Utc>, zone: &Tz) -> String {
    t.with_timezone(zone)
        .format("%a %Y-%m-%d %H:%M %Z")
        .to_string()
}

/// `/oncall show` and `warroom oncall`: who holds each role now, who is next and when.
pub fn render(oc: &OnCall, role: Option<&RoleKey>, now: DateTime<Utc>) -> String {
    let mut lines = vec![format!("On call at {} UTC:", now.format("%Y-%m-%d %H:%M"))];
    for s in oc.schedules {
        if role.is_some_and(|r| *r != s.role) {
            continue;
        }
        let z = &s.zone;
        let line = match oc.holder(&s.role, now) {
            Some(h) => {
                let why = h
                    .by_override
                    .map_or(String::new(), |id| format!(" (override {id})"));
                let next = match oc.next_handoff(&s.role, now) {
                    Some((at, n)) => format!(
                        "; next: {} from {} (in {})",
                        n.user,
                        local(at, z),
                        human(at.signed_duration_since(now))
                    ),
                    None => String::new(),
                };
                format!(
                    "{} ({}): {}{why} until {}{next}",
                    s.role,
                    s.name,
                    h.user,
                    h.until.map_or("further notice".into(), |u| local(u, z))
                )
            }
            None => match s.boundary(0) {
                Some(b) if b > now => format!(
                    "{} ({}): the schedule starts {} with {}; until then, the roster's {} holders",
                    s.role,
                    s.name,
                    local(b, z),
                    s.rotation
                        .first()
                        .map_or("nobody".into(), |u| u.to_string()),
                    s.role
                ),
                _ => format!("{} ({}): nobody", s.role, s.name),
            },
        };
        lines.push(line);
    }
    if lines.len() == 1 {
        lines.push(match role {
            Some(r) => format!("{r} has no schedule: it is held by its roster holders, as always. Scheduled roles: {}", scheduled_roles(oc.schedules)),
            None => "No schedules are configured: roles are held by their roster holders. Add [schedules.NAME] to the configuration (see the README, \"On-call schedules\").".into(),
        });
    }
    lines.join("\n")
}

/// `/oncall overrides`: those in force or still to come.
pub fn render_overrides(oc: &OnCall, now: DateTime<Utc>) -> String {
    let mut lines = Vec::new();
    for o in oc.overrides.iter().filter(|o| o.in_force() && o.to > now) {
        let zone = oc.schedule_for(&o.role).map_or(chrono_tz::UTC, |s| s.zone);
        lines.push(format!(
            "{} · {} · {} from {} to {}{} · {} (by {})",
            o.id,
            o.role,
            o.user,
            local(o.from, &zone),
            local(o.to, &zone),
            o.replaces
                .as_ref()
                .map_or(String::new(), |r| format!(", instead of {r}")),
            o.reason,
            o.by
        ));
    }
    if lines.is_empty() {
        return "No overrides in force or to come. Add one with /oncall override role:… user:… from:… to:… reason:…".into();
    }
    lines.insert(0, "Overrides:".into());
    lines.join("\n")
}

/// An iCalendar (RFC 5545) feed of a schedule: one event per shift overlapping `[from, to)`
/// (at most `limit`), with the holder an override puts there, in UTC. `stamp` is DTSTAMP.
pub fn ics(
    oc: &OnCall,
    sched: &Schedule,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    limit: usize,
    stamp: DateTime<Utc>,
) -> String {
    let fmt = |t: DateTime<Utc>| t.format("%Y%m%dT%H%M%SZ").to_string();
    let mut out = vec![
        "BEGIN:VCALENDAR".to_string(),
        "VERSION:2.0".into(),
        "PRODID:-//warroom//on-call//EN".into(),
        "CALSCALE:GREGORIAN".into(),
        format!(
            "X-WR-CALNAME:warroom on call: {} ({})",
            sched.name, sched.role
        ),
    ];
    // Each stretch with one holder is one event: shifts, cut where overrides begin and end.
    // From the start of the shift that holds `from`.
    let mut at = sched.shift_at(from).map_or(from, |s| s.from);
    let mut n = 0;
    while at < to && n < limit {
        let Some(h) = oc.holder(&sched.role, at) else {
            match sched.boundary(0).filter(|b| *b > at && *b < to) {
                Some(b) => {
                    at = b;
                    continue;
                }
                None => break,
            }
        };
        let start = at;
        let Some(end) = h.until else { break };
        let what = match h.by_override {
            Some(id) => format!("{} on call for {} (override {id})", h.user, sched.role),
            None => format!("{} on call for {}", h.user, sched.role),
        };
        out.push("BEGIN:VEVENT".into());
        out.push(format!(
            "UID:{}-{}-{}@warroom",
            sched.name,
            start.timestamp(),
            h.by_override.unwrap_or(0)
        ));
        out.push(format!("DTSTAMP:{}", fmt(stamp)));
        out.push(format!("DTSTART:{}", fmt(start)));
        out.push(format!("DTEND:{}", fmt(end)));
        out.push(format!("SUMMARY:{}", ics_text(&what)));
        out.push(format!(
            "DESCRIPTION:{}",
            ics_text(&format!(
                "schedule {} ({}), shift times local to {}",
                sched.name,
                sched.role,
                sched.zone.name()
            ))
        ));
        out.push("END:VEVENT".into());
        n += 1;
        at = end;
    }
    out.push("END:VCALENDAR".into());
    let mut text = String::new();
    for line in out {
        fold(&line, &mut text);
    }
    text
}

/// Writes one content line folded at 75 octets (RFC 5545 3.1), never inside a character.
fn fold(line: &str, out: &mut String) {
    let mut width = 0;
    for c in line.chars() {
        let n = c.len_utf8();
        if width + n > 75 {
            out.push_str("\r\n ");
            width = 1;
        }
        out.push(c);
        width += n;
    }
    out.push_str("\r\n");
}

/// A TEXT value, escaped as RFC 5545 says.
fn ics_text(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace(';', "\\;")
        .replace(',', "\\,")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sched() -> Schedule {
        Schedule {
            name: "l1-emea".into(),
            role: RoleKey::new("l1"),
            zone: chrono_tz::Europe::London,
            rotation: vec![UserName::new("alice"), UserName::new("erin")],
            shift: Duration::hours(12),
            handoff: NaiveTime::from_hms_opt(8, 0, 0).unwrap(),
            start: NaiveDate::from_ymd_opt(2026, 10, 20).unwrap(),
        }
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn shifts_follow_local_time_across_the_autumn_change() {
        let s = sched();
        // 2026-10-25 01:00 UTC London goes from BST to GMT.
        let night = s.shift_at(at("2026-10-25T03:00:00Z")).unwrap();
        assert_eq!(night.from, at("2026-10-24T19:00:00Z"));
        assert_eq!(night.to, at("2026-10-25T08:00:00Z"));
        assert_eq!(
            night.to.signed_duration_since(night.from),
            Duration::hours(13)
        );
        let day = s.shift_at(at("2026-10-25T09:00:00Z")).unwrap();
        assert_eq!(day.to.signed_duration_since(day.from), Duration::hours(12));
    }

    #[test]
    fn before_the_start_nobody_and_the_rotation_alternates() {
        let s = sched();
        assert!(s.shift_at(at("2026-10-20T06:00:00Z")).is_none());
        let a = s.shift_at(at("2026-10-20T08:00:00Z")).unwrap();
        assert_eq!(a.user.as_str(), "alice");
        let b = s.shift_at(at("2026-10-20T20:00:00Z")).unwrap();
        assert_eq!(b.user.as_str(), "erin");
    }

    #[test]
    fn an_override_takes_the_role_and_cuts_the_shift() {
        let s = [sched()];
        let o = [Override {
            id: 1,
            role: RoleKey::new("l1"),
            user: UserName::new("frank"),
            replaces: None,
            from: at("2026-11-02T22:00:00Z"),
            to: at("2026-11-03T06:00:00Z"),
            reason: "swap".into(),
            by: UserName::new("sam"),
            removed: None,
        }];
        let oc = OnCall {
            schedules: &s,
            overrides: &o,
        };
        let l1 = RoleKey::new("l1");
        let h = oc.holder(&l1, at("2026-11-02T21:00:00Z")).unwrap();
        assert_eq!(h.until, Some(at("2026-11-02T22:00:00Z")));
        let h = oc.holder(&l1, at("2026-11-02T23:00:00Z")).unwrap();
        assert_eq!(h.user.as_str(), "frank");
        let (when, next) = oc.next_handoff(&l1, at("2026-11-02T23:00:00Z")).unwrap();
        assert_eq!(when, at("2026-11-03T06:00:00Z"));
        assert_ne!(next.user.as_str(), "frank");
    }
}
