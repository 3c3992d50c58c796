//! Range planner: any spans and merge rule give requests that cover every span exactly once,
//! contain their members, and stay within the request cap unless one span alone exceeds it.
#![no_main]

use std::ops::Range;

use estargz::range_plan::{MergeRule, plan_requests};
use libfuzzer_sys::fuzz_target;

/// Reads little-endian u64 values; the input is: max gap, max request, then (start, length) pairs.
fn words(data: &[u8]) -> impl Iterator<Item = u64> + '_ {
    data.chunks_exact(8).map(|word| u64::from_le_bytes(word.try_into().unwrap_or_default()))
}

fuzz_target!(|data: &[u8]| {
    let mut input = words(data);
    let (Some(max_gap), Some(max_request)) = (input.next(), input.next()) else { return };
    let rule = MergeRule { max_gap, max_request };
    let values: Vec<u64> = input.collect();
    // Small lengths and offsets reach the merge decisions more often than random 64-bit values.
    let spans: Vec<Range<u64>> = values
        .chunks_exact(2)
        .map(|pair| {
            let start = pair[0] >> (pair[1] & 63);
            start..start.saturating_add(pair[1] >> 40)
        })
        .collect();

    let plan = plan_requests(&spans, rule);

    let mut seen = vec![false; spans.len()];
    let mut previous_start = 0;
    for request in &plan {
        assert!(!request.members.is_empty());
        assert!(request.range.start <= request.range.end);
        assert!(request.range.start >= previous_start, "requests out of offset order");
        previous_start = request.range.start;
        let length = request.range.end - request.range.start;
        assert!(length <= rule.max_request || request.members.len() == 1);
        let mut last = (0, 0);
        for &member in &request.members {
            let span = &spans[member];
            assert!(!seen[member], "span {member} planned twice");
            seen[member] = true;
            assert!(request.range.start <= span.start && span.end <= request.range.end);
            assert!((span.start, span.end) >= last, "members out of offset order");
            last = (span.start, span.end);
        }
        assert_eq!(request.range.start, spans[request.members[0]].start);
        let end = request.members.iter().map(|&m| spans[m].end).max().unwrap_or_default();
        assert_eq!(request.range.end, end);
    }
    assert!(seen.iter().all(|&planned| planned), "a span was left out of every request");
});
