//! Property tests: the plugin never panics, whatever bytes arrive, and
//! always answers with either files or an error.

mod common;

use common::*;
use proptest::prelude::*;
use prost::Message;

/// Runs the plugin (a panic fails the test) and checks the response shape:
/// an error comes alone, with a message.
fn check(bytes: &[u8]) {
    let response = protoc_gen_svc::plugin::respond(bytes);
    if let Some(e) = &response.error {
        assert!(!e.trim().is_empty(), "errors carry a message");
        assert!(response.file.is_empty(), "no files alongside an error");
    }
}

fn valid_request() -> Vec<u8> {
    static REQUEST: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    REQUEST
        .get_or_init(|| {
            let (dir, file) = example();
            request_for(&[file], &[dir], "").encode_to_vec()
        })
        .clone()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        check(&bytes);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, failure_persistence: None, ..ProptestConfig::default() })]

    /// Flips, truncates and splices a valid request so the mutations reach
    /// descriptor decoding and the generator, not just framing.
    #[test]
    fn mutated_requests(
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let mut bytes = valid_request();
        for (at, value) in flips {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        if truncate {
            let n = cut.index(bytes.len());
            bytes.truncate(n);
        }
        check(&bytes);
    }
}
