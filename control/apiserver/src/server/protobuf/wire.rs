//! Protobuf's wire format: reading (number, value) pairs and writing them.

use super::ProtobufError;

pub(super) fn invalid(what: impl Into<String>) -> ProtobufError {
    ProtobufError::Invalid(what.into())
}

/// One field's value on the wire.
#[derive(Clone, Copy, Debug)]
pub enum Wire<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed32(u32),
    Fixed64(u64),
}

/// Reads (field number, value) pairs of one message.
pub struct Reader<'a> {
    pub buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    pub fn varint(&mut self) -> Result<u64, ProtobufError> {
        let mut v: u64 = 0;
        for i in 0..10 {
            let (&b, rest) = self
                .buf
                .split_first()
                .ok_or_else(|| invalid("truncated varint"))?;
            self.buf = rest;
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(invalid("varint longer than 10 bytes"))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], ProtobufError> {
        if self.buf.len() < n {
            return Err(invalid("truncated field"));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn fixed<const N: usize>(&mut self) -> Result<[u8; N], ProtobufError> {
        let b = self.take(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(b);
        Ok(out)
    }

    pub fn next_field(&mut self) -> Result<Option<(u64, Wire<'a>)>, ProtobufError> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        let key = self.varint()?;
        let wire = match key & 7 {
            0 => Wire::Varint(self.varint()?),
            1 => Wire::Fixed64(u64::from_le_bytes(self.fixed()?)),
            2 => {
                let n = usize::try_from(self.varint()?).map_err(|_| invalid("length"))?;
                Wire::Bytes(self.take(n)?)
            }
            5 => Wire::Fixed32(u32::from_le_bytes(self.fixed()?)),
            t => return Err(invalid(format!("wire type {t}"))),
        };
        Ok(Some((key >> 3, wire)))
    }
}

pub fn bytes_of<'a>(w: &Wire<'a>) -> Result<&'a [u8], ProtobufError> {
    match w {
        Wire::Bytes(b) => Ok(b),
        _ => Err(invalid("expected a length-delimited field")),
    }
}

pub fn varint_of(w: &Wire<'_>) -> Result<u64, ProtobufError> {
    match w {
        Wire::Varint(v) => Ok(*v),
        _ => Err(invalid("expected a varint field")),
    }
}

pub fn string(b: &[u8]) -> Result<String, ProtobufError> {
    String::from_utf8(b.to_vec()).map_err(|_| invalid("string is not UTF-8"))
}

pub fn put_varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub fn put_key(number: u32, wire_type: u8, out: &mut Vec<u8>) {
    put_varint((u64::from(number) << 3) | u64::from(wire_type), out);
}

pub fn put_bytes(number: u32, b: &[u8], out: &mut Vec<u8>) {
    put_key(number, 2, out);
    put_varint(b.len() as u64, out);
    out.extend_from_slice(b);
}

pub fn put_uint(number: u32, v: u64, out: &mut Vec<u8>) {
    put_key(number, 0, out);
    put_varint(v, out);
}
