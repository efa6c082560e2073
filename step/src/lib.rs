//! ckpt-step: what the tasks of one Slurm step share to be checkpointed as one (issue 14).
//!
//! Every task of `srun ckpt-run ...` runs the same runtime; rank 0's is the step's coordinator
//! (no daemon to start). They find each other through the job's environment (`ident`) and the
//! shared image directory (`files`: the coordinator's address, the step's secret key, the
//! manifest of the last complete checkpoint), talk over TCP links authenticated with the key
//! (`auth`, `sha256`) in framed messages (`wire`). The runtime drives a checkpoint of the step
//! with them (runtime/src/step.rs), ckpt-restart the restart (restarter/src/step.rs), ckpt-run
//! picks the images of a resume from the manifest.

pub mod addrmap;
pub mod auth;
pub mod files;
pub mod holders;
pub mod ident;
pub mod join;
pub mod node;
pub mod sha256;
pub mod sys;
pub mod wire;

/// Name of the marker a task writes after its last bytes on connection `id` of checkpoint
/// `gen` (16 bytes its peer cannot guess without the key, so program data never matches it).
pub fn marker(key: &[u8], gen: u64, id: u64, from_rank: u32) -> [u8; 16] {
    let m = sha256::hmac(key, &[b"drain", &gen.to_le_bytes(), &id.to_le_bytes(), &from_rank.to_le_bytes()]);
    m[..16].try_into().expect("16 bytes")
}

/// What a rank sends first on a connection of the step it re-establishes at restart: the
/// connection's id and a proof that it knows the key.
pub fn conn_proof(key: &[u8], epoch: u64, id: u64) -> [u8; 40] {
    let mut out = [0u8; 40];
    out[..8].copy_from_slice(&id.to_le_bytes());
    out[8..].copy_from_slice(&sha256::hmac(key, &[b"conn", &epoch.to_le_bytes(), &id.to_le_bytes()]));
    out
}
