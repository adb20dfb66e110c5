//! ipft: which kernel functions did each marked packet go through?
//!
//! Data flows one way, one module per step:
//! [`cli`] options → [`discover`] targets → [`backend`] attach → [`stream`]
//! events → [`group`] per packet → [`render`] table or JSON.
mod discover;
mod group;
mod render;
mod stream;

fn main() {}
