//! The writer driven by hand, effect by effect, with a virtual clock and the
//! in-memory store.

use denet_core::encoding;
use denet_core::memstore::MemStore;
use denet_core::store::*;
use denet_core::writer::*;
use denet_core::{Address, RoomId};
use futures::executor::block_on;

const T0: u64 = 1_764_000_000_000;
const SKEW: u64 = 300_000;

fn room() -> Address {
    Address::Room(RoomId::parse(&"ab".repeat(32)).unwrap())
}

fn row(n: u64, ts: u64) -> MessageRow {
    MessageRow {
        address: room().as_str().to_owned(),
        seq: 0,
        id: encoding::sha256_hex(format!("m{n}").as_bytes()),
        received_at: 0,
        ts,
        sender: None,
        key: "k".into(),
        body: format!("b{n}"),
        sig: "s".into(),
    }
}

type Answers = Vec<(u64, Result<Committed, StoreError>)>;

/// Runs effects against `store` until the writer is idle; returns the answers
/// and how many lookups (Check effects) it asked for.
fn run(w: &mut Writer<()>, store: &MemStore) -> (Answers, usize) {
    run_with(w, store, |_| Ok(()), |rows| block_on(store.insert(&room(), rows)))
}

/// [`run`] with the outcome of each forward and each commit chosen by the test.
fn run_with(
    w: &mut Writer<()>,
    store: &MemStore,
    forward: impl Fn(&[Entry<()>]) -> Result<(), String>,
    mut commit: impl FnMut(&[MessageRow]) -> Result<(), StoreError>,
) -> (Answers, usize) {
    let (mut answers, mut checks) = (Vec::new(), 0);
    while let Some(effect) = w.poll() {
        let input = match effect {
            Effect::Load { from, limit } => Input::Loaded(block_on(store.tail(&room(), from, limit))),
            Effect::Check { token, id, from } => {
                checks += 1;
                Input::Checked { token, result: block_on(store.find(&room(), &id, from)) }
            }
            Effect::Forward(entries) => {
                let result = forward(&entries);
                Input::Forwarded { entries, result }
            }
            Effect::Commit(entries) => {
                let rows: Vec<MessageRow> = entries.iter().map(|e| e.row.clone()).collect();
                Input::Committed { entries, result: commit(&rows) }
            }
            Effect::Answer { token, result } => {
                answers.push((token, result));
                continue;
            }
            Effect::Deliver(_) | Effect::Wake => continue,
        };
        w.handle(input);
    }
    answers.sort_by_key(|(t, _)| *t);
    (answers, checks)
}

fn post(w: &mut Writer<()>, token: u64, row: MessageRow) {
    w.post(Post { token, row, payload: () });
}

#[test]
fn fresh_posts_after_waking_need_no_lookup() {
    let store = MemStore::new();
    let mut w = Writer::new(&room(), SKEW);
    for n in 0..50 {
        post(&mut w, n, row(n, T0 + n));
    }
    w.flush(T0);
    let (answers, checks) = run(&mut w, &store);
    assert_eq!(checks, 0, "the load covers the skew window: no lookups");
    assert_eq!(answers.len(), 50);
    let seqs: Vec<u64> = answers.iter().map(|(_, a)| a.as_ref().unwrap().seq).collect();
    assert_eq!(seqs, (1..=50).collect::<Vec<_>>());
}

#[test]
fn a_bloom_false_positive_is_confirmed_in_the_store_and_never_drops_a_message() {
    let store = MemStore::new();
    // A tiny filter saturates: almost every new id is a "maybe".
    let mut w = Writer::with_capacity(&room(), SKEW, 4);
    for n in 0..4 {
        post(&mut w, n, row(n, T0));
    }
    w.flush(T0);
    run(&mut w, &store);
    let fresh = (100..10_000).find(|n| w.lookup_from(&row(*n, T0).id, T0).is_some()).expect("a false positive");
    post(&mut w, 99, row(fresh, T0));
    w.flush(T0 + 1);
    let (answers, checks) = run(&mut w, &store);
    assert_eq!(checks, 1, "a maybe is looked up");
    assert_eq!(answers[0].1, Ok(Committed { seq: 5, received_at: T0 + 1, duplicate: false }));
    assert_eq!(store.rows(&room()).len(), 5);
}

#[test]
fn a_repost_is_a_duplicate_found_in_a_bounded_window() {
    let store = MemStore::new();
    let mut w = Writer::new(&room(), SKEW);
    // An hour of older traffic, then the message, then its repost.
    for n in 0..60 {
        post(&mut w, n, row(n, T0 + n * 60_000));
        w.flush(T0 + n * 60_000);
        run(&mut w, &store);
    }
    let late = T0 + 3_600_000;
    post(&mut w, 100, row(100, late));
    w.flush(late);
    run(&mut w, &store);
    post(&mut w, 101, row(100, late));
    w.flush(late + 1_000);
    let (answers, checks) = run(&mut w, &store);
    assert_eq!(checks, 1);
    assert_eq!(answers[0].1, Ok(Committed { seq: 61, received_at: late, duplicate: true }));
    assert!(store.last_find_rows.get() <= 6, "looked at {} rows, not the hour", store.last_find_rows.get());
}

#[test]
fn posts_queued_during_a_commit_go_in_the_next_batch() {
    let store = MemStore::new();
    let mut w = Writer::new(&room(), SKEW);
    post(&mut w, 1, row(1, T0));
    w.flush(T0);
    // Carry out effects up to the commit, then post while it is "in flight".
    let mut effect = w.poll();
    while let Some(Effect::Load { from, limit }) = effect {
        w.handle(Input::Loaded(block_on(store.tail(&room(), from, limit))));
        effect = w.poll();
    }
    let Some(Effect::Forward(entries)) = effect else { panic!("a forward") };
    post(&mut w, 2, row(2, T0));
    w.flush(T0);
    assert!(w.busy(), "a flush during a commit waits");
    w.handle(Input::Forwarded { entries, result: Ok(()) });
    let (first, _) = run(&mut w, &store);
    assert_eq!(first.len(), 1, "only the first batch is answered");
    w.flush(T0 + 5);
    let (second, _) = run(&mut w, &store);
    assert_eq!(second[0].1.as_ref().unwrap().seq, 2);
}

#[test]
fn a_failed_forward_commits_nothing() {
    let store = MemStore::new();
    let mut w = Writer::new(&room(), SKEW);
    post(&mut w, 1, row(1, T0));
    w.flush(T0);
    let (answers, _) = run_with(
        &mut w,
        &store,
        |_| Err("outbox down".into()),
        |_| panic!("nothing is committed when the forward fails"),
    );
    let answers: Vec<_> = answers.into_iter().map(|(_, a)| a).collect();
    assert_eq!(answers, vec![Err(StoreError::Failed("outbox down".into()))]);
    assert!(store.rows(&room()).is_empty());
}

#[test]
fn a_commit_whose_answer_was_lost_does_not_reuse_its_seq() {
    let store = MemStore::new();
    let mut w = Writer::new(&room(), SKEW);
    post(&mut w, 1, row(1, T0));
    w.flush(T0);
    // Written, but the answer is lost on the way back.
    let (answers, _) = run_with(
        &mut w,
        &store,
        |_| Ok(()),
        |rows| {
            block_on(store.insert(&room(), rows)).unwrap();
            Err(StoreError::Failed("connection reset".into()))
        },
    );
    let answers: Vec<_> = answers.into_iter().map(|(_, a)| a).collect();
    assert!(answers[0].is_err(), "the post is not acknowledged");
    // The client retries, and someone else posts: the store is read again.
    post(&mut w, 2, row(1, T0));
    post(&mut w, 3, row(2, T0));
    w.flush(T0 + 10);
    let (answers, _) = run(&mut w, &store);
    assert_eq!(answers[0].1, Ok(Committed { seq: 1, received_at: T0, duplicate: true }));
    assert_eq!(answers[1].1.as_ref().unwrap().seq, 2, "seq 1 is not given out twice");
}

#[test]
fn an_unavailable_store_answers_errors_and_loses_nothing_acknowledged() {
    let store = MemStore::new();
    let mut w = Writer::new(&room(), SKEW);
    store.unavailable.set(true);
    post(&mut w, 1, row(1, T0));
    w.flush(T0);
    let (answers, _) = run(&mut w, &store);
    assert!(matches!(&answers[0].1, Err(StoreError::Unavailable(_))), "{answers:?}");
    store.unavailable.set(false);
    post(&mut w, 2, row(1, T0));
    w.flush(T0 + 1);
    let (answers, _) = run(&mut w, &store);
    assert_eq!(answers[0].1.as_ref().unwrap().seq, 1);
}

#[test]
fn a_rotation_forgets_old_ids_and_they_are_looked_up_again() {
    let store = MemStore::new();
    let mut w = Writer::with_capacity(&room(), SKEW, 8);
    for n in 0..30 {
        post(&mut w, n, row(n, T0 + n));
        w.flush(T0 + n);
        run(&mut w, &store);
    }
    // Id 0 fell out of the filter's generations: its repost must be looked up, and is a duplicate.
    assert!(w.lookup_from(&row(0, T0).id, T0).is_some());
    post(&mut w, 100, row(0, T0));
    w.flush(T0 + 100);
    let (answers, checks) = run(&mut w, &store);
    assert_eq!(checks, 1);
    assert_eq!(answers[0].1, Ok(Committed { seq: 1, received_at: T0, duplicate: true }));
}

#[test]
fn the_in_memory_store_passes_the_conformance_suite() {
    let store = MemStore::new();
    let results = block_on(denet_core::conformance::run(&store, "native"));
    let failed: Vec<_> = results.iter().filter(|(_, r)| r.is_err()).collect();
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(results.len(), 13);
}
