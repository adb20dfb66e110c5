//! Trace: the events of the attached programs, followed per packet.
//!
//! Takes the perf rings and the attach stage's function index; gives
//! batches of events ([`stream`]), which [`follow::Follower`] follows: each
//! named to its packet ([`packets::PacketIds`], with the packet's
//! [`summary`] line), with how each packet ended ([`fate::Fates`]), and
//! stored grouped per packet for the table ([`group::Packets`]).
pub mod fate;
pub mod follow;
pub mod group;
pub mod packets;
pub mod stream;
pub mod summary;
