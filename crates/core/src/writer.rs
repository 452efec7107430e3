//! The single writer of one address, as a sans-IO state machine (quinn-proto's
//! shape): posts go in with [`Writer::post`], [`Writer::flush`] starts a group
//! commit, [`Writer::poll`] hands out what to do next as [`Effect`] values, and
//! [`Writer::handle`] takes the outcome of each. The Durable Object only carries
//! the effects out ([`drive`]); the decisions are all here, tested with a virtual
//! clock and the in-memory store.
//!
//! **Dedup stays exact with one stored row per message.** The store keeps no index
//! by id. A first copy of an envelope cannot have been received before
//! `ts - skew` (every relay refuses a `ts` further ahead of its clock than the
//! skew), and `received_at` never decreases along seq, so a copy can only sit in
//! the messages received since then. The writer's bloom filter holds every id it
//! committed since it woke and every id received in the `2 × skew` before that
//! (read once on waking); when that covers `ts - skew` and the filter says
//! "certainly new", nothing is looked up. Otherwise (a possible duplicate, or an
//! old `ts` from a peer) the store is asked for that id among the messages
//! received since `ts - skew`: the store is the truth, a false positive costs one
//! bounded read and never a message.

use crate::dedup::{RecentIds, Seen};
use crate::store::{MessageRow, Store, StoreError, Stored, Tail};
use crate::{Address, encoding};
use std::cell::RefCell;
use std::collections::VecDeque;

/// Ids per bloom generation, and its target false-positive rate.
pub const RECENT_IDS: usize = 20_000;
const RECENT_FP_RATE: f64 = 0.01;

/// Where a post stands once committed: its seq and received_at, and whether an
/// earlier copy was already there (then those of the first copy).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Committed {
    pub seq: u64,
    pub received_at: u64,
    pub duplicate: bool,
}

/// One post: its row (seq and received_at still 0) and what the caller needs
/// back with it (`P`: for the relay, the envelope, its socket and its forward).
pub struct Post<P> {
    /// The caller's handle for the answer.
    pub token: u64,
    pub row: MessageRow,
    pub payload: P,
}

/// A new message of a batch: its row with seq and received_at, and every post
/// that carried it (the first, then copies posted in the same batch).
pub struct Entry<P> {
    pub row: MessageRow,
    pub tokens: Vec<u64>,
    pub payload: P,
}

/// What the writer needs done.
pub enum Effect<P> {
    /// Read the address's [`Tail`] with the ids received at or after `from`.
    Load { from: u64, limit: usize },
    /// Look for `id` among the messages received at or after `from`.
    Check { token: u64, id: String, from: u64 },
    /// Queue these for the peers durably (before the commit: §7).
    Forward(Vec<Entry<P>>),
    /// Write these rows atomically.
    Commit(Vec<Entry<P>>),
    /// Send a committed message to the address's sockets.
    Deliver(Entry<P>),
    /// Wake the long-polls waiting at the address.
    Wake,
    /// Answer one post.
    Answer { token: u64, result: Result<Committed, StoreError> },
}

/// The outcome of an effect.
pub enum Input<P> {
    Loaded(Result<Tail, StoreError>),
    Checked { token: u64, result: Result<Option<Stored>, StoreError> },
    Forwarded { entries: Vec<Entry<P>>, result: Result<(), String> },
    Committed { entries: Vec<Entry<P>>, result: Result<(), StoreError> },
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    /// Nothing read yet (or a commit failed and the store must be read again).
    Unloaded,
    Loading,
    Ready,
}

/// What the writer knows of one post of the batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    Undecided,
    Checking,
    New,
    Duplicate(Stored),
    /// The same id as the batch's post at this index.
    SameAs(usize),
    Failed,
}

struct Batch<P> {
    posts: Vec<Post<P>>,
    verdicts: Vec<Verdict>,
    failure: Option<StoreError>,
    now: u64,
}

/// The writer of one address.
pub struct Writer<P> {
    skew_ms: u64,
    capacity: usize,
    seed: [u8; 32],
    phase: Phase,
    last: Stored,
    recent: RecentIds,
    /// Every id committed here with `received_at >= covered_from` is in `recent`.
    covered_from: u64,
    /// The `from` of the last [`Effect::Load`].
    load_from: u64,
    /// The received_at of the first id of `recent`'s current generation.
    generation_from: Option<u64>,
    queue: Vec<Post<P>>,
    /// The batch being decided (loads and lookups under way).
    batch: Option<Batch<P>>,
    /// Whether a decided batch is being forwarded and committed.
    committing: bool,
    effects: VecDeque<Effect<P>>,
}

impl<P> Writer<P> {
    /// The writer of `address`, whose clock window for `ts` is `skew_ms`.
    pub fn new(address: &Address, skew_ms: u64) -> Writer<P> {
        Writer::with_capacity(address, skew_ms, RECENT_IDS)
    }

    /// A writer whose bloom generations hold `capacity` ids (small in tests).
    pub fn with_capacity(address: &Address, skew_ms: u64, capacity: usize) -> Writer<P> {
        let mut seed = [0u8; 32];
        seed.copy_from_slice(&encoding::sha256_hex(address.as_str().as_bytes()).as_bytes()[..32]);
        Writer {
            skew_ms,
            capacity,
            seed,
            phase: Phase::Unloaded,
            last: Stored { seq: 0, received_at: 0 },
            recent: RecentIds::new(capacity, RECENT_FP_RATE, seed),
            covered_from: u64::MAX,
            load_from: 0,
            generation_from: None,
            queue: Vec::new(),
            batch: None,
            committing: false,
            effects: VecDeque::new(),
        }
    }

    /// Queues a post for the next [`Writer::flush`].
    pub fn post(&mut self, post: Post<P>) {
        self.queue.push(post);
    }

    /// Whether a batch is being committed (then `flush` waits for it to end).
    pub fn busy(&self) -> bool {
        self.batch.is_some() || self.committing
    }

    /// The last seq committed at the address, once the writer has read it.
    pub fn last_seq(&self) -> Option<u64> {
        (self.phase == Phase::Ready).then_some(self.last.seq)
    }

    /// Where a copy of an envelope with `id` and `ts` could be stored: `None` when
    /// it certainly is not (no lookup needed), else the earliest received_at to
    /// look from.
    pub fn lookup_from(&self, id: &str, ts: u64) -> Option<u64> {
        let from = ts.saturating_sub(self.skew_ms);
        let covered = self.phase == Phase::Ready && from >= self.covered_from;
        if covered && self.recent.check(id) == Seen::CertainlyNew { None } else { Some(from) }
    }

    /// Starts a group commit of everything queued, at relay time `now`.
    pub fn flush(&mut self, now: u64) {
        if self.busy() || self.queue.is_empty() {
            return;
        }
        let posts = std::mem::take(&mut self.queue);
        let verdicts = vec![Verdict::Undecided; posts.len()];
        self.batch = Some(Batch { posts, verdicts, failure: None, now });
        match self.phase {
            Phase::Ready => self.decide(),
            Phase::Loading => {}
            Phase::Unloaded => {
                self.phase = Phase::Loading;
                let from = now.saturating_sub(2 * self.skew_ms);
                self.load_from = from;
                self.effects.push_back(Effect::Load { from, limit: self.capacity });
            }
        }
    }

    /// The next thing to do, if any.
    pub fn poll(&mut self) -> Option<Effect<P>> {
        self.effects.pop_front()
    }

    /// The outcome of an effect.
    pub fn handle(&mut self, input: Input<P>) {
        match input {
            Input::Loaded(Ok(tail)) => self.loaded(tail),
            Input::Loaded(Err(e)) => {
                self.phase = Phase::Unloaded;
                self.fail_batch(e);
            }
            Input::Checked { token, result } => self.checked(token, result),
            Input::Forwarded { entries, result: Ok(()) } => self.effects.push_back(Effect::Commit(entries)),
            Input::Forwarded { entries, result: Err(e) } => self.fail_entries(entries, StoreError::Failed(e)),
            Input::Committed { entries, result: Ok(()) } => self.committed(entries),
            Input::Committed { entries, result: Err(e) } => {
                // The outcome may be unknown (a lost answer): read the truth again.
                self.phase = Phase::Unloaded;
                self.fail_entries(entries, e);
            }
        }
    }

    fn loaded(&mut self, tail: Tail) {
        let from = self.load_from;
        self.last = tail.last;
        self.recent = RecentIds::new(self.capacity, RECENT_FP_RATE, self.seed);
        self.generation_from = None;
        // Oldest first, so that the generations hold them in commit order.
        for (id, stored) in tail.recent.iter().rev() {
            self.remember(id, stored.received_at);
        }
        let oldest = tail.recent.last().map(|(_, s)| s.received_at);
        self.covered_from = match (tail.complete, oldest) {
            (true, _) => from,
            // Cut at the limit: only what is newer than the oldest id read is complete.
            (false, Some(oldest)) => oldest + 1,
            (false, None) => u64::MAX,
        };
        self.phase = Phase::Ready;
        if self.batch.is_some() {
            self.decide();
        }
    }

    /// Records a committed id; a rotation forgets the oldest generation.
    fn remember(&mut self, id: &str, received_at: u64) {
        if self.recent.insert(id) {
            if let Some(first) = self.generation_from {
                self.covered_from = self.covered_from.max(first + 1);
            }
            self.generation_from = Some(received_at);
        } else if self.generation_from.is_none() {
            self.generation_from = Some(received_at);
        }
    }

    fn decide(&mut self) {
        let Some(mut batch) = self.batch.take() else { return };
        for i in 0..batch.posts.len() {
            let id = &batch.posts[i].row.id;
            if let Some(j) = batch.posts[..i].iter().position(|p| &p.row.id == id) {
                batch.verdicts[i] = Verdict::SameAs(j);
                continue;
            }
            match self.lookup_from(id, batch.posts[i].row.ts) {
                None => batch.verdicts[i] = Verdict::New,
                Some(from) => {
                    batch.verdicts[i] = Verdict::Checking;
                    let token = batch.posts[i].token;
                    self.effects.push_back(Effect::Check { token, id: id.clone(), from });
                }
            }
        }
        self.batch = Some(batch);
        self.build_if_decided();
    }

    fn checked(&mut self, token: u64, result: Result<Option<Stored>, StoreError>) {
        let Some(batch) = self.batch.as_mut() else { return };
        let Some(i) = batch.posts.iter().position(|p| p.token == token) else { return };
        batch.verdicts[i] = match result {
            Ok(Some(stored)) => Verdict::Duplicate(stored),
            Ok(None) => Verdict::New,
            Err(e) => {
                batch.failure = Some(e);
                Verdict::Failed
            }
        };
        self.build_if_decided();
    }

    /// Once every post is decided: answers the duplicates, gives the new ones
    /// their seq and received_at, and asks for the forward.
    fn build_if_decided(&mut self) {
        let decided = self.batch.as_ref().is_some_and(|b| !b.verdicts.contains(&Verdict::Checking));
        if !decided {
            return;
        }
        let Some(batch) = self.batch.take() else { return };
        let received_at = batch.now.max(self.last.received_at);
        let mut seq = self.last.seq;
        let mut entries: Vec<Entry<P>> = Vec::new();
        // Index in the batch → index in `entries`, for later copies of a new id.
        let mut entry_of: Vec<Option<usize>> = vec![None; batch.posts.len()];
        let failure = batch.failure.unwrap_or_else(|| StoreError::Failed("store lookup failed".into()));
        for (i, (post, verdict)) in batch.posts.into_iter().zip(batch.verdicts.clone()).enumerate() {
            let answer = |result| Effect::Answer { token: post.token, result };
            match verdict {
                Verdict::New => {
                    seq += 1;
                    let row = MessageRow { seq, received_at, ..post.row };
                    entry_of[i] = Some(entries.len());
                    entries.push(Entry { row, tokens: vec![post.token], payload: post.payload });
                }
                Verdict::Duplicate(s) => self.effects.push_back(answer(Ok(duplicate(s)))),
                Verdict::SameAs(j) => match (batch.verdicts[j], entry_of[j]) {
                    (_, Some(e)) => entries[e].tokens.push(post.token),
                    (Verdict::Duplicate(s), _) => self.effects.push_back(answer(Ok(duplicate(s)))),
                    _ => self.effects.push_back(answer(Err(failure.clone()))),
                },
                _ => self.effects.push_back(answer(Err(failure.clone()))),
            }
        }
        if entries.is_empty() {
            return;
        }
        // Busy until the commit's outcome comes back.
        self.committing = true;
        self.effects.push_back(Effect::Forward(entries));
    }

    fn committed(&mut self, entries: Vec<Entry<P>>) {
        self.committing = false;
        let any = !entries.is_empty();
        for entry in entries {
            self.remember(&entry.row.id, entry.row.received_at);
            self.last = Stored { seq: entry.row.seq, received_at: entry.row.received_at };
            let first = Committed { seq: entry.row.seq, received_at: entry.row.received_at, duplicate: false };
            for (k, token) in entry.tokens.iter().enumerate() {
                let result = Ok(Committed { duplicate: k > 0, ..first });
                self.effects.push_back(Effect::Answer { token: *token, result });
            }
            self.effects.push_back(Effect::Deliver(entry));
        }
        if any {
            self.effects.push_back(Effect::Wake);
        }
    }

    fn fail_entries(&mut self, entries: Vec<Entry<P>>, cause: StoreError) {
        self.committing = false;
        for token in entries.iter().flat_map(|e| e.tokens.iter()) {
            self.effects.push_back(Effect::Answer { token: *token, result: Err(cause.clone()) });
        }
    }

    fn fail_batch(&mut self, cause: StoreError) {
        if let Some(batch) = self.batch.take() {
            for post in batch.posts {
                self.effects.push_back(Effect::Answer { token: post.token, result: Err(cause.clone()) });
            }
        }
    }
}

fn duplicate(s: Stored) -> Committed {
    Committed { seq: s.seq, received_at: s.received_at, duplicate: true }
}

/// What the writer's owner does besides storing: the relay sends to sockets,
/// wakes long-polls and queues for peers; a test records.
#[allow(async_fn_in_trait)]
pub trait Sink<P> {
    async fn forward(&self, entries: &[Entry<P>]) -> Result<(), String>;
    async fn deliver(&self, entry: Entry<P>);
    fn wake(&self);
    fn answer(&self, token: u64, result: Result<Committed, StoreError>);
}

/// Carries out the writer's effects against `store` and `sink` until it has
/// nothing left to do. The writer is borrowed only between awaits, so posts may
/// be queued while a commit is under way.
pub async fn drive<P, S: Store, K: Sink<P>>(writer: &RefCell<Writer<P>>, address: &Address, store: &S, sink: &K) {
    loop {
        let Some(effect) = writer.borrow_mut().poll() else { return };
        let input = match effect {
            Effect::Load { from, limit } => Input::Loaded(store.tail(address, from, limit).await),
            Effect::Check { token, id, from } => Input::Checked { token, result: store.find(address, &id, from).await },
            Effect::Forward(entries) => {
                let result = sink.forward(&entries).await;
                Input::Forwarded { entries, result }
            }
            Effect::Commit(entries) => {
                let rows: Vec<MessageRow> = entries.iter().map(|e| e.row.clone()).collect();
                let result = store.insert(address, &rows).await;
                Input::Committed { entries, result }
            }
            Effect::Deliver(entry) => {
                sink.deliver(entry).await;
                continue;
            }
            Effect::Wake => {
                sink.wake();
                continue;
            }
            Effect::Answer { token, result } => {
                sink.answer(token, result);
                continue;
            }
        };
        writer.borrow_mut().handle(input);
    }
}
