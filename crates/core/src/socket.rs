//! Rules of the relay's WebSockets that are not wire formats: socket ids, the
//! `ref` a client gives a `send` frame (PROTOCOL.md §4.2), and an address object's
//! table of its sockets: who gets a message, the hand-off from replay to live,
//! expiry, and the per-IP recount.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A `ref` is 1 to 64 bytes.
pub fn valid_ref(reference: &str) -> bool {
    (1..=64).contains(&reference.len())
}

/// Ids given per millisecond before the clock part must move on.
const IDS_PER_MS: u64 = 4096;

/// A socket id unique across an object's wake-ups: the clock moves on while the
/// object's counter restarts from zero after hibernation.
pub fn socket_id(now_ms: u64, counter: u64) -> u64 {
    now_ms.saturating_mul(IDS_PER_MS) + counter % IDS_PER_MS
}

/// What an address object knows of one of its sockets; kept with the socket
/// through hibernation (its attachment) and in the object's [`Table`] while awake.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct SocketInfo {
    pub sid: u64,
    pub address: String,
    /// The client's IP, whose socket place is given back on close (then emptied).
    #[serde(default)]
    pub ip: String,
    /// The IP's limiter key, against which every client frame counts (§4.2).
    #[serde(default)]
    pub limit_ip: String,
    /// An inbox socket's key (§3.1): its revocation or expiry closes the socket.
    #[serde(default)]
    pub key: Option<String>,
    #[serde(default)]
    pub expires_at: Option<u64>,
    /// False while the socket's replay is still being sent: live frames wait.
    #[serde(default = "yes")]
    pub live: bool,
    /// While replaying: where the next replay page starts, once the client asks
    /// for it (`next`, §4.2); `None` while a page is being sent, and once live.
    #[serde(default)]
    pub replay: Option<u64>,
}

fn yes() -> bool {
    true
}

/// An address object's sockets by id, each handle `S` with its info, so a message
/// goes out without reading every socket's attachment. Rebuilt from the runtime's
/// list after a wake-up ([`Table::rebuild`]); kept in step by the object on every
/// open, hand-off and close.
#[derive(Debug)]
pub struct Table<S> {
    sockets: BTreeMap<u64, (S, SocketInfo)>,
}

impl<S> Default for Table<S> {
    fn default() -> Self {
        Table { sockets: BTreeMap::new() }
    }
}

/// Who gets one message, by [`Table::fan_out`].
#[derive(Debug, PartialEq, Eq)]
pub struct FanOut<'a, S> {
    /// Live sockets to send it to.
    pub send: Vec<&'a S>,
    /// Sockets whose key has expired: close them instead (§3.1).
    pub expired: Vec<u64>,
}

impl<S> Table<S> {
    /// The table of the sockets the runtime still holds (after hibernation); a
    /// socket without readable info is left out (the object closes it).
    pub fn rebuild(sockets: impl IntoIterator<Item = (S, Option<SocketInfo>)>) -> Table<S> {
        let sockets = sockets.into_iter().filter_map(|(s, info)| info.map(|i| (i.sid, (s, i)))).collect();
        Table { sockets }
    }

    pub fn len(&self) -> usize {
        self.sockets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sockets.is_empty()
    }

    /// A socket accepted (not yet live while its replay is sent).
    pub fn insert(&mut self, socket: S, info: SocketInfo) {
        self.sockets.insert(info.sid, (socket, info));
    }

    /// The hand-off: the socket's replay is sent (under the write lock), from now
    /// on it gets every message live. Returns its info to store with it.
    pub fn go_live(&mut self, sid: u64) -> Option<&SocketInfo> {
        let (_, info) = self.sockets.get_mut(&sid)?;
        info.live = true;
        info.replay = None;
        Some(info)
    }

    /// Takes the replay cursor of a replaying socket that is waiting for its
    /// client's `next` (one page at a time: a second `next` meanwhile finds none).
    pub fn take_replay(&mut self, sid: u64) -> Option<u64> {
        self.sockets.get_mut(&sid).and_then(|(_, info)| if info.live { None } else { info.replay.take() })
    }

    /// A replay page went out: the next one starts at `cursor` when the client asks.
    pub fn replay_from(&mut self, sid: u64, cursor: u64) -> Option<&SocketInfo> {
        let (_, info) = self.sockets.get_mut(&sid)?;
        info.replay = Some(cursor);
        Some(info)
    }

    /// A socket gone; its info, if it was here.
    pub fn remove(&mut self, sid: u64) -> Option<(S, SocketInfo)> {
        self.sockets.remove(&sid)
    }

    /// The socket `sid`, if open here.
    pub fn socket(&self, sid: u64) -> Option<&S> {
        self.sockets.get(&sid).map(|(s, _)| s)
    }

    pub fn info(&self, sid: u64) -> Option<&SocketInfo> {
        self.sockets.get(&sid).map(|(_, i)| i)
    }

    /// Who gets a message committed at `now`: every live socket but `except` (the
    /// one that sent it); sockets still replaying get it from their replay.
    pub fn fan_out(&self, except: Option<u64>, now: u64) -> FanOut<'_, S> {
        let mut out = FanOut { send: Vec::new(), expired: Vec::new() };
        for (sid, (socket, info)) in &self.sockets {
            if !info.live || except == Some(*sid) {
                continue;
            }
            if info.expires_at.is_some_and(|at| at <= now) {
                out.expired.push(*sid);
            } else {
                out.send.push(socket);
            }
        }
        out
    }

    /// The sockets a key opened (closed when it is revoked).
    pub fn opened_by(&self, key: &str) -> Vec<u64> {
        self.sockets.iter().filter(|(_, (_, i))| i.key.as_deref() == Some(key)).map(|(sid, _)| *sid).collect()
    }

    /// Sockets whose key has expired by `now`, and the next expiry after it.
    pub fn expiry(&self, now: u64) -> (Vec<u64>, Option<u64>) {
        let (mut expired, mut next) = (Vec::new(), None::<u64>);
        for (sid, (_, info)) in &self.sockets {
            match info.expires_at {
                Some(at) if at <= now => expired.push(*sid),
                Some(at) => next = Some(next.map_or(at, |n| n.min(at))),
                None => {}
            }
        }
        (expired, next)
    }

    /// The recount of the IP's socket places here: open sockets of `ip` whose
    /// place is still held (an empty ip never counts).
    pub fn count_of_ip(&self, ip: &str) -> usize {
        self.sockets.values().filter(|(_, i)| !ip.is_empty() && i.ip == ip).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refs_are_1_to_64_bytes() {
        assert!(!valid_ref(""));
        assert!(valid_ref("a"));
        assert!(valid_ref(&"x".repeat(64)));
        assert!(!valid_ref(&"x".repeat(65)));
        assert!(!valid_ref(&"é".repeat(33)), "bytes, not characters");
    }

    fn info(sid: u64, ip: &str, key: Option<&str>, expires_at: Option<u64>, live: bool) -> SocketInfo {
        SocketInfo {
            sid,
            address: "a".into(),
            ip: ip.into(),
            limit_ip: ip.into(),
            key: key.map(Into::into),
            expires_at,
            live,
            replay: None,
        }
    }

    #[test]
    fn a_message_goes_to_live_sockets_but_its_sender_and_replaying_ones_wait_for_their_replay() {
        let mut t = Table::default();
        t.insert("a", info(1, "ip1", None, None, true));
        t.insert("b", info(2, "ip1", None, None, true));
        t.insert("c", info(3, "ip2", None, None, false));
        assert_eq!(t.fan_out(Some(2), 10).send, [&"a"]);
        // The hand-off: from now on c gets every message live.
        assert!(t.go_live(3).unwrap().live);
        assert_eq!(t.fan_out(None, 10).send, [&"a", &"b", &"c"]);
        t.remove(1);
        assert_eq!(t.fan_out(None, 10).send, [&"b", &"c"]);
        assert!(t.go_live(1).is_none(), "a closed socket does not come back");
    }

    #[test]
    fn a_replay_goes_one_page_at_a_time_as_the_client_asks() {
        let mut t = Table::default();
        t.insert("a", info(1, "ip", None, None, false));
        assert_eq!(t.take_replay(1), None, "no page asked for yet");
        t.replay_from(1, 500);
        assert_eq!(t.take_replay(1), Some(500));
        assert_eq!(t.take_replay(1), None, "a second `next` while the page goes out finds none");
        t.replay_from(1, 1000);
        t.go_live(1);
        assert_eq!(t.take_replay(1), None, "a live socket has no replay");
    }

    #[test]
    fn an_expired_key_closes_its_socket_instead_of_getting_the_message() {
        let mut t = Table::default();
        t.insert("a", info(1, "ip", Some("k1"), Some(100), true));
        t.insert("b", info(2, "ip", Some("k2"), Some(200), true));
        let out = t.fan_out(None, 100);
        assert_eq!((out.send, out.expired), (vec![&"b"], vec![1]));
        assert_eq!(t.expiry(100), (vec![1], Some(200)));
        assert_eq!(t.opened_by("k2"), [2]);
    }

    #[test]
    fn the_recount_counts_only_places_still_held_by_the_ip() {
        let mut sockets = vec![
            ("a", Some(info(1, "ip1", None, None, true))),
            ("b", Some(info(2, "ip1", None, None, true))),
            ("c", Some(info(3, "", None, None, true))),
            ("lost", None),
        ];
        sockets.push(("d", Some(info(4, "ip2", None, None, true))));
        let t = Table::rebuild(sockets);
        assert_eq!(t.len(), 4, "a socket without info is left out");
        assert_eq!((t.count_of_ip("ip1"), t.count_of_ip("ip2"), t.count_of_ip("")), (2, 1, 0));
    }

    #[test]
    fn socket_ids_do_not_repeat_across_wake_ups() {
        // Before hibernation: counter 1, 2 at t = 1000; after it: counter 1 again at t = 1001.
        let before = [socket_id(1_000, 1), socket_id(1_000, 2)];
        let after = socket_id(1_001, 1);
        assert!(!before.contains(&after));
        assert_ne!(before[0], before[1]);
    }
}
