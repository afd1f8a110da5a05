use std::time::Duration;

use super::*;

fn small(lines: usize, bytes: usize) -> LogBuffer {
    LogBuffer::new(
        "test",
        Limits {
            lines,
            bytes,
            line: 8,
        },
    )
}

fn texts(entries: &[Arc<Entry>]) -> Vec<&str> {
    entries.iter().map(|e| e.text.as_str()).collect()
}

#[test]
fn tail_counts_from_the_end() {
    let buffer = small(10, 1000);
    for text in ["a", "b", "c"] {
        buffer.push(Stream::Stdout, text);
    }
    assert!(buffer.tail(Some(0)).is_empty());
    assert_eq!(texts(&buffer.tail(Some(1))), ["c"]);
    assert_eq!(texts(&buffer.tail(Some(10))), ["a", "b", "c"]);
    assert_eq!(texts(&buffer.tail(None)), ["a", "b", "c"]);
}

#[test]
fn lines_and_bytes_both_bound_the_buffer_and_seqs_are_never_reused() {
    let buffer = small(3, 1000);
    for text in ["1", "2", "3", "4", "5"] {
        buffer.push(Stream::Stderr, text);
    }
    let tail = buffer.tail(None);
    assert_eq!(texts(&tail), ["3", "4", "5"]);
    assert_eq!(tail.iter().map(|e| e.seq).collect::<Vec<_>>(), [2, 3, 4]);

    let buffer = small(100, 10);
    for text in ["aaaa", "bbbb", "cccc"] {
        buffer.push(Stream::Stdout, text);
    }
    assert_eq!(texts(&buffer.tail(None)), ["bbbb", "cccc"]);
    let stats = buffer.stats();
    assert_eq!((stats.lines, stats.bytes), (2, 8));
    assert_eq!((stats.first_seq, stats.next_seq), (1, 3));
}

#[test]
fn long_lines_are_cut_with_a_marker() {
    let buffer = small(10, 1000);
    buffer.push(Stream::Stdout, "0123456789");
    // "é" is two bytes: the cut falls back to a character boundary.
    buffer.push(Stream::Stdout, "0123456é9");
    assert_eq!(texts(&buffer.tail(None)), ["01234567...", "0123456..."]);
}

#[test]
fn entries_keep_stream_and_increasing_time() {
    let buffer = small(10, 1000);
    buffer.push(Stream::Stdout, "out");
    buffer.push(Stream::Agent, "note");
    let tail = buffer.tail(None);
    assert_eq!(tail[0].stream, Stream::Stdout);
    assert_eq!(tail[1].stream, Stream::Agent);
    assert!(tail[0].time <= tail[1].time);
    assert!(tail[1].time > Duration::ZERO);
}

#[tokio::test]
async fn follow_continues_after_the_tail_without_gaps_or_duplicates() {
    let buffer = small(100, 1000);
    buffer.push(Stream::Stdout, "old");
    buffer.push(Stream::Stdout, "last");
    let (tail, mut follower) = buffer.follow(Some(1));
    assert_eq!(texts(&tail), ["last"]);
    let writer = buffer.clone();
    let task = tokio::spawn(async move {
        for i in 0..600 {
            writer.push(Stream::Stdout, &i.to_string());
            if i % 100 == 0 {
                tokio::task::yield_now().await;
            }
        }
    });
    for i in 0..600u64 {
        let entry = follower.recv().await.unwrap();
        assert_eq!(entry.seq, i + 2);
        assert_eq!(entry.text, i.to_string());
    }
    task.await.unwrap();
}

#[tokio::test]
async fn a_lagging_follower_is_told_what_it_missed() {
    let buffer = small(2, 1000);
    let mut follower = buffer.follow_from(0);
    for text in ["a", "b", "c", "d", "e"] {
        buffer.push(Stream::Stdout, text);
    }
    assert_eq!(follower.recv().await, Err(Lagged { missed: 3 }));
    assert_eq!(follower.recv().await.unwrap().text, "d");
    assert_eq!(follower.recv().await.unwrap().text, "e");
    assert_eq!(follower.next_seq(), 5);
}

#[test]
fn registry_creates_buffers_on_first_use() {
    let logs = Logs::default();
    assert!(logs.get("etcd").is_none());
    logs.buffer("etcd").push(Stream::Stdout, "hello");
    logs.buffer("agent");
    assert_eq!(logs.names(), ["agent", "etcd"]);
    assert_eq!(texts(&logs.get("etcd").unwrap().tail(None)), ["hello"]);
}

#[test]
fn splitter_yields_lines_and_bounds_unfinished_ones() {
    let mut lines = Vec::new();
    let mut splitter = LineSplitter::new(4);
    splitter.feed(b"ab\ncd", |l| lines.push(l));
    splitter.feed(b"e\n\nabcdefgh", |l| lines.push(l));
    splitter.feed(b"ij\nxy", |l| lines.push(l));
    lines.extend(splitter.finish());
    assert_eq!(lines, ["ab", "cde", "", "abcd...", "xy"]);
    assert_eq!(splitter.finish(), None);
}
