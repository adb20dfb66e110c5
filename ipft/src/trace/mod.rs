//! Trace: the events of the attached programs, followed per packet.
//!
//! Takes the perf rings and the attach stage's function index; gives
//! batches of events ([`stream`]), each named to its packet
//! ([`packets::PacketIds`], with the packet's [`summary`] line) and stored
//! grouped per packet for the table ([`group::Packets`]), with how each
//! packet ended ([`fate::Fates`]).
pub mod fate;
pub mod group;
pub mod packets;
pub mod stream;
pub mod summary;
