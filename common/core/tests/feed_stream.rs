//! The streaming feed parser against the parser it replaced (serde_json's
//! visitor over the whole document, kept here as the reference): the same
//! readings, rejections, counts and errors, on the shipped files and on
//! broken documents, whatever the size of the chunks the reader returns.

use airq_core::feed::{
    parse_entry_at, parse_feed_at, parse_feed_from, FeedError, FeedStats, Rejection,
    MAX_ENTRY_BYTES,
};
use airq_core::{Reading, Timestamp};
use proptest::prelude::*;
use serde::de::{Deserializer as _, SeqAccess, Visitor};
use serde_json::value::RawValue;
use std::fmt;
use std::io::Read;

/// What a parse did: every entry handed over, and how it ended. Errors are
/// compared by kind and by the entries read before them.
#[derive(Debug, PartialEq)]
struct Outcome {
    entries: Vec<Result<Reading, Rejection>>,
    end: End,
}

#[derive(Debug, PartialEq)]
enum End {
    Stats(FeedStats),
    NotAnArray,
    Syntax(u64),
    TooLarge(u64),
}

fn end_of(r: Result<FeedStats, FeedError>) -> End {
    match r {
        Ok(stats) => End::Stats(stats),
        Err(FeedError::NotAnArray(_)) => End::NotAnArray,
        Err(FeedError::Syntax { entries, .. }) => End::Syntax(entries),
        Err(FeedError::EntryTooLarge { entries, .. }) => End::TooLarge(entries),
        Err(e @ FeedError::Read { .. }) => panic!("no read error expected: {e}"),
    }
}

fn now() -> Timestamp {
    Timestamp::parse_feed("2024-03-02 00:00:00").expect("a time")
}

/// The parser before streaming, verbatim but for `parse_entry_at`.
fn reference(doc: &[u8]) -> Outcome {
    struct Entries<'a>(&'a mut Vec<Result<Reading, Rejection>>, &'a mut u64);
    impl<'de> Visitor<'de> for Entries<'_> {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JSON array of feed entries")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            while let Some(raw) = seq.next_element::<&'de RawValue>()? {
                *self.1 += 1;
                self.0.push(parse_entry_at(raw.get(), now()));
            }
            Ok(())
        }
    }
    let mut entries = Vec::new();
    let mut count = 0;
    let mut de = serde_json::Deserializer::from_slice(doc);
    let visited = de
        .deserialize_seq(Entries(&mut entries, &mut count))
        .and_then(|()| de.end());
    let end = match visited {
        Ok(()) => {
            let mut stats = FeedStats {
                entries: count,
                ..FeedStats::default()
            };
            for e in &entries {
                match e {
                    Ok(_) => stats.accepted += 1,
                    Err(why) => *stats.rejected.entry(*why).or_default() += 1,
                }
            }
            End::Stats(stats)
        }
        Err(e) if e.classify() == serde_json::error::Category::Data => End::NotAnArray,
        Err(_) => End::Syntax(count),
    };
    Outcome { entries, end }
}

fn from_slice(doc: &[u8]) -> Outcome {
    let mut entries = Vec::new();
    let end = end_of(parse_feed_at(doc, now(), |r| entries.push(r)));
    Outcome { entries, end }
}

/// A reader that returns at most `chunk` bytes a read.
struct Chunked<'a> {
    doc: &'a [u8],
    chunk: usize,
}

impl Read for Chunked<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.chunk.min(buf.len()).min(self.doc.len());
        buf[..n].copy_from_slice(&self.doc[..n]);
        self.doc = &self.doc[n..];
        Ok(n)
    }
}

fn streamed(doc: &[u8], chunk: usize) -> Outcome {
    let mut entries = Vec::new();
    let reader = Chunked { doc, chunk };
    let end = end_of(parse_feed_from(reader, now(), |r| entries.push(r)));
    Outcome { entries, end }
}

/// The slice parser and the reader, at each chunk size, agree with the
/// reference.
fn all_agree(doc: &[u8], chunks: &[usize]) {
    let want = reference(doc);
    let shown = || String::from_utf8_lossy(&doc[..doc.len().min(200)]).into_owned();
    assert_eq!(from_slice(doc), want, "slice: {}", shown());
    for &chunk in chunks {
        assert_eq!(streamed(doc, chunk), want, "chunks of {chunk}: {}", shown());
    }
}

fn file(path: &str) -> Vec<u8> {
    std::fs::read(format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))).expect("a shipped file")
}

fn sample() -> Vec<u8> {
    file("../../data/sample/201806032249_data.dust.min.json")
}

fn shipped() -> Vec<Vec<u8>> {
    let fragment =
        String::from_utf8(file("tests/fixtures/20190416_v1_data.json.fragment")).expect("utf-8");
    vec![
        sample(),
        file("tests/fixtures/hostile_text.json"),
        format!("[{}]", fragment.trim()).into_bytes(),
    ]
}

#[test]
fn shipped_files_read_alike_in_any_chunks() {
    for doc in shipped() {
        all_agree(&doc, &[1, 7, 4096, 1 << 20, usize::MAX]);
    }
}

#[test]
fn a_file_streams_as_its_bytes_parse() {
    let dir = std::env::temp_dir().join(format!("airq-feed-stream-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temp dir");
    let path = dir.join("feed.json");
    std::fs::write(&path, sample()).expect("written");
    let mut entries = Vec::new();
    let file = std::fs::File::open(&path).expect("opened");
    let end = end_of(parse_feed_from(file, now(), |r| entries.push(r)));
    std::fs::remove_dir_all(&dir).ok();
    assert_eq!(Outcome { entries, end }, reference(&sample()));
}

/// Small documents whose strings hold brackets, quotes, escapes and commas,
/// with odd spacing, scalars and nested arrays for entries.
fn tricky() -> Vec<String> {
    let good = r#"{"timestamp":"2024-03-01 10:00:00","location":{"latitude":"1","longitude":"2","country":"DE"},"sensor":{"id":1,"sensor_type":{"name":"SDS011","manufacturer":"a]}\"[{,\\"}},"sensordatavalues":[{"value":"5","value_type":"P2","id":"]"}]}"#;
    let odd = r#"{"timestamp":"2024-03-01 10:00:00","location":{"latitude":"1","longitude":"2","country":"D\u0045"},"sensor":{"id":2,"sensor_type":{"name":"SDS011"}},"sensordatavalues":[{"value":"5","value_type":"P2"}],"x":[[[{"y":"\\\\\""}]]]}"#;
    vec![
        format!("[{good},{odd}]"),
        format!(" \n[ {good} ,\r\n\t{odd} ]\n "),
        format!(r#"[{good},"a\"]",42,-1.5e3,true,null,[],{{}},[1,[2,"]"]],"\\",{odd}]"#),
        r#"["\u00e9\ud83d\ude00", "\ud800", "x\\"]"#.to_owned(),
        "[1x]".to_owned(),
        "[1-2]".to_owned(),
        "[01]".to_owned(),
        "[truex, 1]".to_owned(),
        "[tru]".to_owned(),
        "[1 2]".to_owned(),
        "[1,]".to_owned(),
        "[,1]".to_owned(),
        "[1]]".to_owned(),
        "[1] x".to_owned(),
        "[1]   ".to_owned(),
        "[{]".to_owned(),
        "[{\"a\" 1}]".to_owned(),
        "[{\"a\":1}{\"b\":2}]".to_owned(),
        "[\"a\nb\"]".to_owned(),
        format!("[{good},{{\"a\":\"\u{1}\"}}]"),
        format!("[{}1{}]", "[".repeat(200), "]".repeat(200)),
        format!("[{{\"id\":{}1{}}}]", "[".repeat(300), "]".repeat(300)),
        "{\"entries\":[]}".to_owned(),
        "{oops".to_owned(),
        "\"feed\"".to_owned(),
        "\"feed".to_owned(),
        " 42 ".to_owned(),
        "nul".to_owned(),
        "-".to_owned(),
        "<html>oops</html>".to_owned(),
        String::new(),
        "   ".to_owned(),
        "[".to_owned(),
        "[]".to_owned(),
        " [ ] ".to_owned(),
    ]
}

#[test]
fn tricky_documents_read_alike() {
    for doc in tricky() {
        all_agree(doc.as_bytes(), &[1, 2, 3, 5, 64]);
    }
    // Not UTF-8, in an entry and between entries.
    let mut bad = b"[{\"a\":\"".to_vec();
    bad.extend_from_slice(&[0xff, 0xfe]);
    bad.extend_from_slice(b"\"}]");
    all_agree(&bad, &[1, 4]);
    all_agree(b"[1,\xff]", &[1, 4]);
}

#[test]
fn every_truncation_reads_alike() {
    for doc in tricky().iter().take(3) {
        let doc = doc.as_bytes();
        for cut in 0..=doc.len() {
            all_agree(&doc[..cut], &[1, 3, 4096]);
        }
    }
    // The sample cut within and between entries.
    let sample = sample();
    for cut in (0..6000).chain([sample.len() / 2, sample.len() - 1]) {
        all_agree(&sample[..cut], &[4096]);
    }
}

#[test]
fn an_entry_over_the_limit_fails_in_any_chunks() {
    let long = format!(r#"[1,{{"x":"{}"}},2]"#, "a".repeat(MAX_ENTRY_BYTES));
    let at_limit = format!(
        r#"[1,{{"x":"{}"}},2]"#,
        "a".repeat(MAX_ENTRY_BYTES - r#"{"x":""}"#.len())
    );
    for chunk in [1000, 65536, 1 << 20, usize::MAX] {
        let r = streamed(long.as_bytes(), chunk);
        assert_eq!(r.end, End::TooLarge(1), "chunks of {chunk}");
        assert_eq!(r.entries.len(), 1);
        let r = streamed(at_limit.as_bytes(), chunk);
        assert!(
            matches!(r.end, End::Stats(ref s) if s.entries == 3),
            "{:?}",
            r.end
        );
    }
    assert_eq!(from_slice(long.as_bytes()).end, End::TooLarge(1));
    // An unclosed string reads as one long entry.
    let unclosed = format!(r#"[1,"{}"#, " ".repeat(3 * MAX_ENTRY_BYTES));
    assert_eq!(streamed(unclosed.as_bytes(), 1 << 16).end, End::TooLarge(1));
    // Whitespace is not an entry: any amount of it passes.
    let spaced = format!("[1,{}2]", " ".repeat(3 * MAX_ENTRY_BYTES));
    assert!(matches!(
        streamed(spaced.as_bytes(), 1 << 16).end,
        End::Stats(_)
    ));
}

#[test]
fn a_read_error_stops_after_the_entries_before_it() {
    struct Failing<'a>(&'a [u8]);
    impl Read for Failing<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.0.is_empty() {
                return Err(std::io::Error::other("disk on fire"));
            }
            let n = buf.len().min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }
    let sample = sample();
    let mut seen = 0u64;
    let err = parse_feed_from(Failing(&sample[..sample.len() / 2]), now(), |_| seen += 1)
        .expect_err("fails");
    match err {
        FeedError::Read {
            entries,
            ref source,
        } => {
            assert_eq!(entries, seen);
            assert!(entries > 2000, "{entries}");
            assert_eq!(source.to_string(), "disk on fire");
        }
        other => panic!("expected a read error, got {other}"),
    }
}

#[test]
fn errors_say_where() {
    let err = parse_feed_at(b"[1, 2 3]", now(), |_| {}).expect_err("fails");
    assert_eq!(
        err.to_string(),
        "feed is not valid JSON after 2 entries: expected `,` or `]` at byte 6"
    );
    let err = parse_feed_at(b"[1,\n {\"a\":\n x}]", now(), |_| {}).expect_err("fails");
    assert!(
        err.to_string().ends_with("expected value at byte 12"),
        "{err}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any cut of a random document of entries and junk, in any chunks.
    #[test]
    fn random_documents_read_alike(
        parts in proptest::collection::vec(
            prop_oneof![
                Just(r#"{"timestamp":"2024-03-01 10:00:00","location":{"latitude":"1","longitude":"2","country":"DE"},"sensor":{"id":1,"sensor_type":{"name":"SDS011"}},"sensordatavalues":[{"value":"5","value_type":"P2"}]}"#.to_owned()),
                Just(r#"{"timestamp":"2024-03-01 10:00:00","location":{"latitude":"1","longitude":"2","country":"DE"},"sensor":{"id":1,"sensor_type":{"name":"SDS011"}},"sensordatavalues":[{"value":"-5","value_type":"P1"}]}"#.to_owned()),
                "[ \\[\\]{}\",:\\\\0-9a-z\n]{0,12}",
                Just(r#""\"]""#.to_owned()),
            ],
            0..8,
        ),
        sep in "[ ,\n]{1,2}",
        cut in any::<prop::sample::Index>(),
        chunk in 1usize..40,
    ) {
        let doc = format!("[{}]", parts.join(&sep));
        let doc = doc.as_bytes();
        let cut = cut.index(doc.len() + 1);
        for d in [doc, &doc[..cut]] {
            let want = reference(d);
            prop_assert_eq!(from_slice(d), reference(d));
            prop_assert_eq!(streamed(d, chunk), want);
        }
    }
}
