//! The ckpt image format, the one thing the runtime (writer) and the restarter (reader) share.
//!
//! An image is one file:
//! ```text
//! header (64 bytes)  magic, version, where the index is, its length and checksum
//! chunks             page data of memory regions, each zstd-compressed or raw, each checksummed
//! index              postcard-encoded `Index`: metadata, regions (with their chunk lists), threads,
//!                    fds, signal state, process state
//! ```
//! An increment names its parent image in the header and reads through it where its regions
//! inherit (`Chain`).
//! The header is written last (after the index), so a file whose header does not verify was
//! never completed. Writers create images under a temporary name and rename them into place.

mod attrs;
mod chain;
#[cfg(test)]
mod chain_tests;
mod codec;
#[cfg(test)]
mod deleted_tests;
mod edit;
mod endpoints;
mod fanotify;
mod fddesc;
pub mod filerefs;
mod flatten;
pub mod fuzz;
mod generations;
mod header;
pub mod inetaddr;
mod launch;
mod leftout;
mod model;
mod origin;
pub mod pagetable;
pub mod progress;
pub mod rerun;
mod reader;
mod shuffle;
mod mqueue;
mod sysv;
pub mod trust;
pub mod tree;
pub mod treesockets;
pub mod unshared;
#[cfg(test)]
mod unshared_tests;
mod writer;

pub use attrs::{vm, ProcAttrs, RegionAttrs, ThreadAttrs, ThreadCreds, RSEQ_GLIBC, RSEQ_NONE, RSEQ_OWN, THREAD_GROUPS_MAX, THREAD_GROUPS_NONE};
pub use chain::{Chain, Layer, LayerBuf, MAX_CHAIN};
pub use codec::{Compressor, Decompressor};
pub use edit::{reseal, rewrite_index};
pub use endpoints::*;
pub use fanotify::{FanotifyMark, MarkObject};
pub use fddesc::describe_addr;
pub use flatten::{flatten, Flattened};
pub use generations::{generation_file_name, generations_of, images_in, parse_image_name};
pub use header::{Header, HEADER_LEN, MAGIC, VERSION};
pub use launch::{Launch, DEFAULT_KEEP, LAUNCH_VAR};
pub use leftout::{ChildProcess, LeftOut, OutsidePipe};
pub use model::*;
pub use origin::{boot_id, FileId, Origin};
pub use reader::Reader;
pub use shuffle::{shuffle8, shuffle8_delta, unshuffle8, unshuffle8_delta};
pub use mqueue::{MqMessage, MqNotify, Mqueue};
pub use sysv::{IpcMessage, IpcPerm, MsgQueue, SemSet, ShmSegment, Sysv};
pub use writer::{ChunkEncoder, Writer, CHUNK_SIZE};

/// Everything that can go wrong reading or writing an image. Messages are full sentences for users.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("not a ckpt image (bad magic)")]
    BadMagic,
    #[error("image format version {found} is not supported (this build reads version {supported})")]
    UnsupportedVersion { found: u32, supported: u32 },
    #[error("image is truncated or incomplete: {0}")]
    Truncated(String),
    #[error("image is corrupt: {0}")]
    Corrupt(String),
    /// An image this user must not restart (another user's, writable by others, a symlink...).
    #[error("{0}")]
    Untrusted(String),
    #[error("compression failed: {0}")]
    Compress(String),
    /// An increment whose parent is not among the image files of its directory.
    #[error("{image} is an increment over an image that is not in {dir} (an earlier checkpoint of {program}, generation {before} or before; copy the whole directory)")]
    MissingParent { image: String, dir: String, program: String, before: u64 },
    /// Something wrong with an image that the one being read builds on.
    #[error("{path} (an image it builds on): {source}")]
    Ancestor { path: String, source: Box<ImageError> },
}

pub type Result<T> = std::result::Result<T, ImageError>;

/// xxh3-64 of a byte slice: the checksum used for chunks, the index and the header.
pub fn checksum(bytes: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(bytes)
}
