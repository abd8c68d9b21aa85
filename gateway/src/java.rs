//! The few Java library behaviours MPUSH's HTTP proxy exposes to clients and upstreams:
//! `java.util.HashMap` iteration order (MPUSH carries headers in HashMaps), `URLDecoder`
//! (applied to redirect targets) and Guava's `Ints.tryParse` (the `readTimeout` header).

/// `java.lang.String.hashCode()`: over UTF-16 code units, wrapping.
pub(crate) fn string_hash(s: &str) -> i32 {
    s.encode_utf16().fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)))
}

/// The entries of a `java.util.HashMap<String, V>` after `put`ting `entries` in order (a
/// repeated key keeps its place and takes the later value), in the map's iteration order:
/// by bucket (`(h ^ h >>> 16) & (capacity - 1)`, capacity 16 doubled while the size exceeds
/// 3/4 of it), then by insertion within a bucket. Buckets that would turn into trees (8+
/// colliding keys) are not modelled.
pub(crate) fn hash_map<V>(entries: impl IntoIterator<Item = (String, V)>) -> Vec<(String, V)> {
    let mut map: Vec<(String, V)> = Vec::new();
    for (k, v) in entries {
        match map.iter_mut().find(|(n, _)| *n == k) {
            Some(e) => e.1 = v,
            None => map.push((k, v)),
        }
    }
    let mut capacity = 16usize;
    while map.len() > capacity / 4 * 3 {
        capacity *= 2;
    }
    let bucket = |k: &str| {
        let h = string_hash(k);
        ((h ^ ((h as u32) >> 16) as i32) as u32 as usize) & (capacity - 1)
    };
    // A stable sort keeps insertion order within a bucket.
    map.sort_by_key(|(k, _)| bucket(k));
    map
}

/// `java.net.URLDecoder.decode(s, "UTF-8")`: `+` is a space, `%XX` runs are UTF-8 bytes
/// (invalid sequences replaced); `None` where Java throws (a `%` without two hex digits).
pub(crate) fn url_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => {
                out.push(' ');
                i += 1;
            }
            b'%' => {
                let mut bytes = Vec::new();
                while i < b.len() && b[i] == b'%' {
                    let hex = s.get(i + 1..i + 3)?;
                    bytes
                        .push(u8::from_str_radix(hex, 16).ok().filter(|_| hex.bytes().all(|c| c.is_ascii_hexdigit()))?);
                    i += 3;
                }
                out.push_str(&String::from_utf8_lossy(&bytes));
            }
            _ => {
                // Copy the whole UTF-8 character.
                let ch = s[i..].chars().next()?;
                out.push(ch);
                i += ch.len_utf8();
            }
        }
    }
    Some(out)
}

/// Guava's `Ints.tryParse`: optional `-`, decimal digits only, within `i32`.
pub(crate) fn ints_try_parse(s: &str) -> Option<i32> {
    let digits = s.strip_prefix('-').unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(entries: &[&str]) -> Vec<String> {
        hash_map(entries.iter().map(|k| ((*k).to_owned(), ()))).into_iter().map(|(k, _)| k).collect()
    }

    #[test]
    fn java_string_hash() {
        assert_eq!(string_hash(""), 0);
        assert_eq!(string_hash("a"), 97);
        assert_eq!(string_hash("content-length"), -1_132_779_846);
        assert_eq!(string_hash("é"), 233);
    }

    #[test]
    fn hash_map_order_matches_what_mpush_sent() {
        // Printed by a java.util.HashMap MPUSH's proxy built from a Python upstream's headers
        // (insertion order: Server, Date, Content-Type, Content-Length, X-A, Connection, then
        // the content-length MPUSH adds).
        assert_eq!(
            keys(&["Server", "Date", "Content-Type", "Content-Length", "X-A", "Connection", "content-length"]),
            ["content-length", "Server", "Connection", "Content-Length", "X-A", "Date", "Content-Type"]
        );
        assert_eq!(
            keys(&["Server", "Date", "X-Mixed-Case", "content-length"]),
            ["content-length", "Server", "X-Mixed-Case", "Date"]
        );
        assert_eq!(
            keys(&["Server", "Content-Length", "Date", "Location"]),
            ["Server", "Content-Length", "Date", "Location"]
        );
        assert_eq!(
            keys(&["X-Dup", "x-dup", "Content-Length", "content-length"]),
            ["content-length", "X-Dup", "x-dup", "Content-Length"]
        );
        // Past 12 entries the table doubles (orders printed by java.util.HashMap on JDK 17).
        let many: Vec<String> = (0..13).map(|i| format!("h{i}")).collect();
        let refs: Vec<&str> = many.iter().map(String::as_str).collect();
        assert_eq!(keys(&refs), ["h10", "h0", "h12", "h1", "h11", "h2", "h3", "h4", "h5", "h6", "h7", "h8", "h9"]);
        assert_eq!(
            keys(&["readTimeout", "Content-Type", "Accept", "x-custom", "X-Custom", "Authorization"]),
            ["Authorization", "Accept", "readTimeout", "x-custom", "X-Custom", "Content-Type"]
        );
    }

    #[test]
    fn repeated_keys_keep_their_place_and_take_the_last_value() {
        let m = hash_map([("a".to_owned(), 1), ("b".to_owned(), 2), ("a".to_owned(), 3)]);
        assert!(m.contains(&("a".to_owned(), 3)) && m.len() == 2);
    }

    #[test]
    fn url_decoder() {
        assert_eq!(url_decode("/ok%3Fa%3D1+2").as_deref(), Some("/ok?a=1 2"));
        assert_eq!(url_decode("/caf%C3%A9").as_deref(), Some("/café"));
        assert_eq!(url_decode("plain/é").as_deref(), Some("plain/é"));
        assert_eq!(url_decode("%4"), None);
        assert_eq!(url_decode("%zz"), None);
    }

    #[test]
    fn guava_ints() {
        assert_eq!(ints_try_parse("5000"), Some(5000));
        assert_eq!(ints_try_parse("-5"), Some(-5));
        assert_eq!(ints_try_parse("05"), Some(5));
        assert_eq!(ints_try_parse("+5"), None);
        assert_eq!(ints_try_parse(" 5"), None);
        assert_eq!(ints_try_parse("99999999999"), None);
        assert_eq!(ints_try_parse(""), None);
    }
}
