//! The body of the decoder fuzz target (`crates/entropy/fuzz`), shared with the test that replays its corpus.

use crate::{decode, encode, encode_with, encoded_len, EncodedStream, Histogram, MAX_CODE_LEN};

/// Reads `data` as an encoded stream, and also encodes it as a symbol stream. Panics only on a real bug (a failed
/// invariant), which is what the fuzzer looks for:
/// * whatever decodes re-encodes, with the stream's own code, to exactly its bytes (one stream, one encoding);
/// * a decoded stream has at most 8 symbols per input byte;
/// * `data` as symbols encodes to [`encoded_len`] bytes with codes of at most 15 bits, and decodes back to itself.
pub fn check_decode(data: &[u8]) {
    let whole = decode(data);
    if let Ok(symbols) = &whole {
        assert!(symbols.len() <= 8 * data.len().max(1), "at most 8 symbols a byte");
        let stream = EncodedStream::parse(data).expect("a stream that decodes parses");
        let mut again = Vec::new();
        encode_with(symbols, stream.code_lengths(), &mut again).expect("the stream's own code covers its symbols");
        assert!(again == data, "a decoded stream must re-encode to its own bytes");
    }
    if let Ok((stream, rest)) = EncodedStream::parse_prefix(data) {
        assert_eq!(stream.encoded_len() + rest.len(), data.len());
        let prefix = stream.decode();
        if rest.is_empty() {
            assert_eq!(prefix, whole, "parse and parse_prefix agree on a whole input");
        }
    }

    let encoded = encode(data);
    assert_eq!(encoded.len() as u64, encoded_len(data), "encoded_len predicts the size");
    assert!(Histogram::of(data).code_lengths().max_length() <= MAX_CODE_LEN);
    assert_eq!(decode(&encoded).as_deref(), Ok(data), "any symbols roundtrip");
}
