//! What a client believes about a room (PROTOCOL.md §8.3). The relay can post
//! anything to an inbox or a room, so these rules are what keep it, and anyone
//! who is not a member, out: each decision is a pure function of what the reader
//! already knows and of what the message proves, so every rule has a unit test.
//!
//! "Authenticated" below means: a named direct message that opened in HPKE auth
//! mode with the `dh_key` of the bundle of the envelope's `key`, that bundle
//! verified by its wallet signature and active at the envelope's `ts`. The
//! caller establishes it (see the CLI's `authenticate`); anonymous messages
//! arrive here as `None`.

use denet_core::Wallet;
use sha2::{Digest, Sha256};

/// The furthest a rekey may move a room's epoch at once.
pub const MAX_EPOCH_JUMP: u32 = 1024;

/// What to do with a `rekey` content.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rekey {
    /// Not believed; the reason is for logs.
    Ignore(&'static str),
    /// A later epoch: seal with this key from now on.
    Advance,
    /// The current epoch, and this key wins the tie-break: seal with it, keep the
    /// held key to open.
    Replace,
    /// The current epoch, and the held key wins: keep this one to open only.
    OpenOnly,
}

/// What the reader knows of a room when a rekey arrives.
pub struct Known<'a> {
    /// The reader's current epoch.
    pub epoch: u32,
    /// The members of that epoch as the reader knows them (lowercase wallets).
    pub members: &'a [String],
    /// The key the reader seals with at `epoch`, if it holds one.
    pub sealing_key: Option<&'a [u8; 32]>,
}

/// §8.3: whether a rekey to `epoch` with room key `key` counts. `check_matches`
/// is `Some(false)` when the rekey carries a password check that the key derived
/// from it fails (a key nobody else holds, or another password); `None` when the
/// rekey carries no check.
pub fn judge_rekey(
    sender: Option<&Wallet>,
    known: &Known,
    epoch: u32,
    key: &[u8; 32],
    check_matches: Option<bool>,
) -> Rekey {
    let Some(sender) = sender else {
        return Rekey::Ignore("an anonymous rekey counts for nothing");
    };
    if !known.members.iter().any(|m| m == sender.as_str()) {
        return Rekey::Ignore("the sender is not a member of the room");
    }
    if check_matches == Some(false) {
        return Rekey::Ignore("the new key fails its password check");
    }
    if epoch > known.epoch {
        return if epoch - known.epoch <= MAX_EPOCH_JUMP {
            Rekey::Advance
        } else {
            Rekey::Ignore("the epoch jumps too far ahead")
        };
    }
    if epoch < known.epoch {
        return Rekey::Ignore("an older epoch");
    }
    match known.sealing_key {
        None => Rekey::Advance,
        Some(held) if held == key => Rekey::Ignore("this key is already held"),
        Some(held) if wins_tie(key, held) => Rekey::Replace,
        Some(_) => Rekey::OpenOnly,
    }
}

/// The tie-break of two rekeys for one epoch: the new key with the lower sha256,
/// compared as bytes, wins. Every member receives the same keys, so every member
/// decides alike (envelope ids differ per recipient, so they cannot be compared).
pub fn wins_tie(candidate: &[u8; 32], held: &[u8; 32]) -> bool {
    Sha256::digest(candidate)[..] < Sha256::digest(held)[..]
}

/// What to do with an `invite` content.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Invite {
    Ignore(&'static str),
    /// Record it: the reader may join with it.
    Offer,
}

/// §8.3: an invite only offers, from an authenticated sender, a room id (never
/// another kind of address) that the reader does not hold as a member: one it never
/// knew, or one it left (a new invite after leaving brings it back). It never
/// replaces the key of a room the reader is in.
pub fn judge_invite(sender: Option<&Wallet>, room: &str, held_as_member: bool) -> Invite {
    if sender.is_none() {
        return Invite::Ignore("an anonymous invite counts for nothing");
    }
    if denet_core::RoomId::parse(room).is_err() {
        return Invite::Ignore("the invite names no room id");
    }
    if held_as_member {
        return Invite::Ignore("the room is already held: an invite never replaces its key");
    }
    Invite::Offer
}

/// §8.3: a `join` adds its sender only when sealed under the reader's current
/// epoch, so a removed member holding an old key cannot re-add itself.
pub fn join_counts(current_epoch: u32, message_epoch: u32) -> bool {
    current_epoch == message_epoch
}

/// What to do with a `leave` content.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Leave {
    /// The sender was not a member of the current epoch: nothing to do.
    Ignore,
    /// Remove the sender; someone else (or nobody: the reader has left) rotates.
    Remove,
    /// Remove the sender and rotate the key to the next epoch.
    RemoveAndRekey,
}

/// §8.3 (1.2): a leave removes its sender when it was sealed under an epoch at or
/// after the sender's latest join as the reader knows it (`sender_since`): an old
/// leave served again, or read again from history, never removes a member who came
/// back. The reader rotates only if the leaver is among the members of its current
/// epoch, so the members who already took another member's rekey for this leave
/// (whose `members` no longer name the leaver) do not rotate again.
pub fn judge_leave(
    me: &Wallet,
    sender: &Wallet,
    members: &[String],
    sender_since: u32,
    message_epoch: u32,
    reader_left: bool,
) -> Leave {
    if sender == me || !members.iter().any(|m| m == sender.as_str()) || message_epoch < sender_since {
        return Leave::Ignore;
    }
    if reader_left { Leave::Remove } else { Leave::RemoveAndRekey }
}

/// The epoch after `epoch`, or `None` at the last one (an epoch never wraps).
pub fn next_epoch(epoch: u32) -> Option<u32> {
    epoch.checked_add(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wallet(n: u8) -> Wallet {
        Wallet::parse_strict(&format!("0x{}", hex::encode([n; 20]))).unwrap()
    }

    fn members(ws: &[&Wallet]) -> Vec<String> {
        ws.iter().map(|w| w.to_string()).collect()
    }

    /// Two keys ordered by the tie-break: (winner, loser).
    fn ordered_keys() -> ([u8; 32], [u8; 32]) {
        let (a, b) = ([1u8; 32], [2u8; 32]);
        if wins_tie(&a, &b) { (a, b) } else { (b, a) }
    }

    #[test]
    fn anonymous_rekey_is_ignored() {
        let (alice, held) = (wallet(1), [7u8; 32]);
        let m = members(&[&alice]);
        let known = Known { epoch: 0, members: &m, sealing_key: Some(&held) };
        assert!(matches!(judge_rekey(None, &known, 1, &[9; 32], None), Rekey::Ignore(_)));
    }

    #[test]
    fn rekey_from_a_non_member_is_ignored() {
        let (alice, mallory) = (wallet(1), wallet(6));
        let m = members(&[&alice]);
        let known = Known { epoch: 0, members: &m, sealing_key: Some(&[7; 32]) };
        assert!(matches!(judge_rekey(Some(&mallory), &known, 1, &[9; 32], None), Rekey::Ignore(_)));
        assert_eq!(judge_rekey(Some(&alice), &known, 1, &[9; 32], None), Rekey::Advance);
    }

    #[test]
    fn rekey_failing_its_check_is_ignored() {
        let alice = wallet(1);
        let m = members(&[&alice]);
        let known = Known { epoch: 0, members: &m, sealing_key: Some(&[7; 32]) };
        assert!(matches!(judge_rekey(Some(&alice), &known, 1, &[9; 32], Some(false)), Rekey::Ignore(_)));
        assert_eq!(judge_rekey(Some(&alice), &known, 1, &[9; 32], Some(true)), Rekey::Advance);
    }

    #[test]
    fn rekey_epoch_bounds() {
        let alice = wallet(1);
        let m = members(&[&alice]);
        let known = Known { epoch: 5, members: &m, sealing_key: Some(&[7; 32]) };
        let judge = |epoch| judge_rekey(Some(&alice), &known, epoch, &[9; 32], None);
        assert_eq!(judge(5 + MAX_EPOCH_JUMP), Rekey::Advance);
        assert!(matches!(judge(5 + MAX_EPOCH_JUMP + 1), Rekey::Ignore(_)));
        assert!(matches!(judge(u32::MAX), Rekey::Ignore(_)));
        assert!(matches!(judge(4), Rekey::Ignore(_)));
        let top = Known { epoch: u32::MAX, members: &m, sealing_key: Some(&[7; 32]) };
        assert!(matches!(judge_rekey(Some(&alice), &top, 0, &[9; 32], None), Rekey::Ignore(_)));
    }

    #[test]
    fn concurrent_rekeys_resolve_alike_whatever_the_order() {
        let (alice, bob) = (wallet(1), wallet(2));
        let m = members(&[&alice, &bob]);
        let (winner, loser) = ordered_keys();
        // Reader took the loser first: the winner replaces it.
        let known = Known { epoch: 3, members: &m, sealing_key: Some(&loser) };
        assert_eq!(judge_rekey(Some(&bob), &known, 3, &winner, None), Rekey::Replace);
        // Reader took the winner first: the loser is kept to open only.
        let known = Known { epoch: 3, members: &m, sealing_key: Some(&winner) };
        assert_eq!(judge_rekey(Some(&alice), &known, 3, &loser, None), Rekey::OpenOnly);
        assert!(matches!(judge_rekey(Some(&alice), &known, 3, &winner, None), Rekey::Ignore(_)));
    }

    #[test]
    fn invite_never_replaces_a_held_room() {
        let alice = wallet(1);
        let room = "ab".repeat(32);
        assert_eq!(judge_invite(Some(&alice), &room, false), Invite::Offer);
        assert!(matches!(judge_invite(Some(&alice), &room, true), Invite::Ignore(_)));
        assert!(matches!(judge_invite(None, &room, false), Invite::Ignore(_)));
    }

    #[test]
    fn an_invite_naming_a_wallet_is_no_room() {
        let alice = wallet(1);
        assert!(matches!(judge_invite(Some(&alice), alice.as_str(), false), Invite::Ignore(_)));
        assert!(matches!(judge_invite(Some(&alice), &"AB".repeat(32), false), Invite::Ignore(_)));
    }

    #[test]
    fn join_under_an_old_epoch_does_not_re_add() {
        assert!(join_counts(2, 2));
        assert!(!join_counts(2, 1));
        assert!(!join_counts(2, 3));
    }

    #[test]
    fn one_leave_makes_one_rekey() {
        let (alice, bob, carol) = (wallet(1), wallet(2), wallet(3));
        // Alice reads Carol's leave first: she rotates.
        let before = members(&[&alice, &bob, &carol]);
        assert_eq!(judge_leave(&alice, &carol, &before, 0, 0, false), Leave::RemoveAndRekey);
        // Bob took Alice's rekey (members: alice, bob) before reading the leave: no second rotation.
        let after = members(&[&alice, &bob]);
        assert_eq!(judge_leave(&bob, &carol, &after, 0, 0, false), Leave::Ignore);
        // A reader who left itself removes but does not rotate; one's own leave is nothing.
        assert_eq!(judge_leave(&bob, &carol, &before, 0, 0, true), Leave::Remove);
        assert_eq!(judge_leave(&carol, &carol, &before, 0, 0, false), Leave::Ignore);
    }

    #[test]
    fn an_old_leave_does_not_remove_a_member_who_came_back() {
        let (alice, bob) = (wallet(1), wallet(2));
        let m = members(&[&alice, &bob]);
        // Bob left under epoch 1 and re-joined under epoch 2: the old leave counts for nothing.
        assert_eq!(judge_leave(&alice, &bob, &m, 2, 1, false), Leave::Ignore);
        assert_eq!(judge_leave(&alice, &bob, &m, 2, 2, false), Leave::RemoveAndRekey);
        assert_eq!(judge_leave(&alice, &bob, &m, 2, 3, false), Leave::RemoveAndRekey);
    }

    #[test]
    fn epochs_never_wrap() {
        assert_eq!(next_epoch(0), Some(1));
        assert_eq!(next_epoch(u32::MAX), None);
    }
}
