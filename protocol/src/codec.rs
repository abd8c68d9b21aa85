//! The MPUSH body field codec: big-endian integers, and strings/bytes with an int16 length
//! that switches to `0x7FFF` + int32 for 32767 bytes or more.
//!
//! On the wire null and empty are the same (length 0); [`Reader::opt_str`] reads both as
//! `None`, [`Reader::str`] as `""`.

/// A body field could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The body ended in the middle of a field.
    #[error("body truncated while reading {0}")]
    Truncated(&'static str),
    /// Bytes were left after the last field.
    #[error("{0} unexpected bytes after the last field")]
    TrailingBytes(usize),
    /// A length prefix was negative.
    #[error("negative field length {0}")]
    NegativeLength(i64),
    /// A string field is not UTF-8.
    #[error("string field is not valid UTF-8")]
    InvalidUtf8,
    /// A field has a value the message does not allow.
    #[error("invalid {0}")]
    Invalid(&'static str),
}

/// Appends fields to a body.
#[derive(Debug, Default)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// An empty body.
    pub fn new() -> Writer {
        Writer::default()
    }
    /// A byte.
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.buf.push(v);
        self
    }
    /// An int32.
    pub fn i32(&mut self, v: i32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }
    /// An int64.
    pub fn i64(&mut self, v: i64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }
    /// A length-prefixed byte field; `None` and empty are both written as length 0.
    pub fn bytes(&mut self, v: Option<&[u8]>) -> &mut Self {
        let v = v.unwrap_or_default();
        if v.len() < 0x7FFF {
            self.buf.extend_from_slice(&(v.len() as u16).to_be_bytes());
        } else {
            self.buf.extend_from_slice(&0x7FFFu16.to_be_bytes());
            self.buf.extend_from_slice(&((v.len() - 0x7FFF) as u32).to_be_bytes());
        }
        self.buf.extend_from_slice(v);
        self
    }
    /// A UTF-8 string field.
    pub fn str(&mut self, v: &str) -> &mut Self {
        self.bytes(Some(v.as_bytes()))
    }
    /// An optional UTF-8 string field.
    pub fn opt_str(&mut self, v: Option<&str>) -> &mut Self {
        self.bytes(v.map(str::as_bytes))
    }
    /// Raw bytes with no length prefix.
    pub fn raw(&mut self, v: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(v);
        self
    }
    /// The finished body.
    pub fn finish(self) -> Vec<u8> {
        self.buf
    }
}

/// Reads fields from a body; [`Reader::finish`] rejects trailing bytes.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader over `buf`.
    pub fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf, pos: 0 }
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() - self.pos < n {
            return Err(DecodeError::Truncated(what));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// A byte.
    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1, "byte")?[0])
    }
    /// An int32.
    pub fn i32(&mut self) -> Result<i32, DecodeError> {
        let b = self.take(4, "int")?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    /// An int64.
    pub fn i64(&mut self) -> Result<i64, DecodeError> {
        let b = self.take(8, "long")?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(i64::from_be_bytes(a))
    }
    /// A length-prefixed byte field (empty for null).
    pub fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let b = self.take(2, "field length")?;
        let short = i16::from_be_bytes([b[0], b[1]]);
        let len: i64 = if short == 0x7FFF { 0x7FFF + i64::from(self.i32()?) } else { i64::from(short) };
        if len < 0 {
            return Err(DecodeError::NegativeLength(len));
        }
        self.take(len as usize, "field")
    }
    /// A byte field as an owned vector.
    pub fn byte_vec(&mut self) -> Result<Vec<u8>, DecodeError> {
        self.bytes().map(<[u8]>::to_vec)
    }
    /// A string field; null reads as `""`.
    pub fn str(&mut self) -> Result<String, DecodeError> {
        let b = self.bytes()?;
        std::str::from_utf8(b).map(str::to_owned).map_err(|_| DecodeError::InvalidUtf8)
    }
    /// A string field; null and empty read as `None`.
    pub fn opt_str(&mut self) -> Result<Option<String>, DecodeError> {
        let s = self.str()?;
        Ok(if s.is_empty() { None } else { Some(s) })
    }
    /// All remaining bytes.
    pub fn rest(&mut self) -> &'a [u8] {
        let s = &self.buf[self.pos..];
        self.pos = self.buf.len();
        s
    }
    /// Fails if any bytes are left.
    pub fn finish(&self) -> Result<(), DecodeError> {
        match self.buf.len() - self.pos {
            0 => Ok(()),
            n => Err(DecodeError::TrailingBytes(n)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_short_long_null_empty() {
        let long = "x".repeat(40_000);
        let mut w = Writer::new();
        w.str("ab").opt_str(None).str("").str(&long).bytes(Some(&[0u8; 0x7FFF]));
        let body = w.finish();
        assert_eq!(&body[..4], &[0, 2, b'a', b'b']);
        let mut r = Reader::new(&body);
        assert_eq!(r.str().unwrap(), "ab");
        assert_eq!(r.opt_str().unwrap(), None);
        assert_eq!(r.str().unwrap(), "");
        assert_eq!(r.str().unwrap(), long);
        // Exactly 32767 bytes takes the long form with an int32 of 0.
        assert_eq!(r.bytes().unwrap().len(), 0x7FFF);
        r.finish().unwrap();
    }

    #[test]
    fn truncated_trailing_negative_utf8() {
        assert_eq!(Reader::new(&[0, 5, 1]).bytes(), Err(DecodeError::Truncated("field")));
        assert_eq!(Reader::new(&[0]).bytes(), Err(DecodeError::Truncated("field length")));
        assert_eq!(Reader::new(&[0x80, 0]).bytes(), Err(DecodeError::NegativeLength(-32768)));
        assert_eq!(
            Reader::new(&[0x7F, 0xFF, 0xFF, 0xFF, 0, 0]).bytes(),
            Err(DecodeError::NegativeLength(0x7FFF - 65536))
        );
        assert_eq!(Reader::new(&[0, 1, 0xFF]).str(), Err(DecodeError::InvalidUtf8));
        let mut r = Reader::new(&[0, 0, 0, 1, 9]);
        r.i32().unwrap();
        assert_eq!(r.finish(), Err(DecodeError::TrailingBytes(1)));
        assert_eq!(Reader::new(&[1, 2, 3]).i64(), Err(DecodeError::Truncated("long")));
    }
}
