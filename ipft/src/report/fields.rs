//! `--field`: a traced event's skb fields as ipft-output prints them
//! (`ipft_output::fields`), from the option's `cli::Field`, whose value
//! names are the names rows show (a test holds them equal).
use ipft_common::Event;
pub use ipft_output::fields::{Field, Skb, Value};

use crate::{cli, trace::summary::device};

/// The option's field as ipft-output names it.
pub fn field(field: cli::Field) -> Field {
    match field {
        cli::Field::Len => Field::Len,
        cli::Field::DataLen => Field::DataLen,
        cli::Field::Protocol => Field::Protocol,
        cli::Field::Mark => Field::Mark,
        cli::Field::Dev => Field::Dev,
        cli::Field::GsoSize => Field::GsoSize,
        cli::Field::GsoSegs => Field::GsoSegs,
        cli::Field::GsoType => Field::GsoType,
    }
}

/// The event's skb fields.
pub fn skb(event: &Event) -> Skb<'_> {
    Skb {
        len: event.len,
        data_len: event.data_len,
        protocol: u16::from_be(event.protocol),
        mark: event.mark,
        dev: device(event).unwrap_or(""),
        gso_size: event.gso_size,
        gso_segs: event.gso_segs,
        gso_type: event.gso_type,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_give_their_fields() {
        let mut e = Event::zeroed();
        e.protocol = 0x0800u16.to_be();
        e.len = 33;
        e.dev[..5].copy_from_slice(b"veth1");
        e.mark = 0x55;
        e.gso_size = 1448;
        let skb = skb(&e);
        let shown = |f| Value(field(f), &skb).to_string();
        assert_eq!(shown(cli::Field::Len), "33");
        assert_eq!(shown(cli::Field::Protocol), "0x0800");
        assert_eq!(shown(cli::Field::Mark), "0x55");
        assert_eq!(shown(cli::Field::Dev), "veth1");
        assert_eq!(shown(cli::Field::GsoSize), "1448");
    }

    #[test]
    fn every_option_keeps_its_name() {
        use clap::ValueEnum;
        for f in cli::Field::value_variants() {
            let option = f.to_possible_value().unwrap();
            assert_eq!(field(*f).name(), option.get_name());
        }
    }
}
