//! `--field`: the skb fields printed on every row, as text.
use std::fmt;

/// An skb field `--field` can show.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    Len,
    DataLen,
    Protocol,
    Mark,
    Dev,
    GsoSize,
    GsoSegs,
    GsoType,
}

impl Field {
    /// The name shown in rows and used as the JSON key.
    pub fn name(self) -> &'static str {
        match self {
            Field::Len => "len",
            Field::DataLen => "data_len",
            Field::Protocol => "protocol",
            Field::Mark => "mark",
            Field::Dev => "dev",
            Field::GsoSize => "gso_size",
            Field::GsoSegs => "gso_segs",
            Field::GsoType => "gso_type",
        }
    }
}

/// The skb's fields as a row saw them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Skb<'a> {
    pub len: u32,
    pub data_len: u32,
    /// `skb->protocol` in host order (`0x0800` for IPv4).
    pub protocol: u16,
    pub mark: u32,
    /// The device's name, empty without one.
    pub dev: &'a str,
    pub gso_size: u16,
    pub gso_segs: u16,
    pub gso_type: u32,
}

/// A field's value as printed: numbers in decimal, protocol and mark in hex.
pub struct Value<'a>(pub Field, pub &'a Skb<'a>);

impl fmt::Display for Value<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let skb = self.1;
        match self.0 {
            Field::Len => write!(f, "{}", skb.len),
            Field::DataLen => write!(f, "{}", skb.data_len),
            Field::Protocol => write!(f, "{:#06x}", skb.protocol),
            Field::Mark => write!(f, "{:#x}", skb.mark),
            Field::Dev => f.write_str(skb.dev),
            Field::GsoSize => write!(f, "{}", skb.gso_size),
            Field::GsoSegs => write!(f, "{}", skb.gso_segs),
            Field::GsoType => write!(f, "{:#x}", skb.gso_type),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_print_like_extension_data() {
        let skb = Skb {
            protocol: 0x0800,
            len: 33,
            dev: "veth1",
            mark: 0x55,
            gso_size: 1448,
            gso_type: 0x11,
            ..Skb::default()
        };
        let shown = |field| Value(field, &skb).to_string();
        assert_eq!(shown(Field::Len), "33");
        assert_eq!(shown(Field::DataLen), "0");
        assert_eq!(shown(Field::Protocol), "0x0800");
        assert_eq!(shown(Field::Mark), "0x55");
        assert_eq!(shown(Field::Dev), "veth1");
        assert_eq!(shown(Field::GsoSize), "1448");
        assert_eq!(shown(Field::GsoType), "0x11");
        assert_eq!(Value(Field::Dev, &Skb::default()).to_string(), "");
    }
}
