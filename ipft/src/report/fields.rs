//! `--field`: the skb fields printed on every row, as text.
use ipft_common::Event;

use crate::{cli::Field, trace::summary::device};

/// The value as printed: numbers in decimal, protocol and mark in hex.
pub fn value(field: Field, event: &Event) -> String {
    match field {
        Field::Len => event.len.to_string(),
        Field::DataLen => event.data_len.to_string(),
        Field::Protocol => format!("{:#06x}", u16::from_be(event.protocol)),
        Field::Mark => format!("{:#x}", event.mark),
        Field::Dev => device(event).unwrap_or("").to_string(),
        Field::GsoSize => event.gso_size.to_string(),
        Field::GsoSegs => event.gso_segs.to_string(),
        Field::GsoType => format!("{:#x}", event.gso_type),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_print_like_extension_data() {
        let mut e = Event::zeroed();
        e.protocol = 0x0800u16.to_be();
        e.len = 33;
        e.dev[..5].copy_from_slice(b"veth1");
        e.mark = 0x55;
        e.gso_size = 1448;
        assert_eq!(value(Field::Len, &e), "33");
        assert_eq!(value(Field::Protocol, &e), "0x0800");
        assert_eq!(value(Field::Mark, &e), "0x55");
        assert_eq!(value(Field::Dev, &e), "veth1");
        assert_eq!(value(Field::GsoSize, &e), "1448");
    }
}
