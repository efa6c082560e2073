//! Speed of the image codecs on arrays of numbers (issue 15): plain zstd (level 1, 4 MiB window,
//! long-distance matching: `Codec::Zstd`), byte-shuffled (`Shuffle8`) and byte-shuffled
//! differences (`Shuffle8Delta`), each on the same data in 4 MiB chunks as the writer cuts them.
//! Write: (shuffle and) compress each chunk; read: decompress (and unshuffle) each chunk into
//! memory already touched (the restarter's first touch of fresh memory is measured apart).
//! One thread; the codecs alternate within each round so that a change of the machine's load
//! hits them alike; medians of the rounds.
//!
//!   cargo run --release -p ckpt-image --example codecspeed [MIB] [ROUNDS]
//!
//! Data (bench/memload.c's): quant, doubles floor(32767 sin(i 1e-4)); smooth, sin(i 1e-4).

use ckpt_image::{shuffle8, shuffle8_delta, unshuffle8, unshuffle8_delta, Compressor, Decompressor, CHUNK_SIZE};
use std::time::Instant;

#[derive(Clone, Copy, PartialEq)]
enum Codec {
    Zstd,
    Shuffle8,
    Shuffle8Delta,
}

fn data(kind: &str, mib: usize) -> Vec<u8> {
    let n = (mib << 20) / 8;
    (0..n)
        .flat_map(|i| {
            let s = (i as f64 * 1e-4).sin();
            if kind == "quant" { (32767.0 * s).floor() } else { s }.to_le_bytes()
        })
        .collect()
}

/// One pass of `codec` over `src`: (write s, read s, stored bytes).
fn pass(codec: Codec, src: &[u8], comp: &mut Compressor, plain: &mut Compressor, dec: &mut Decompressor) -> (f64, f64, usize) {
    let mut shuffled = vec![0u8; CHUNK_SIZE];
    let mut frames: Vec<Vec<u8>> = Vec::new();
    let t = Instant::now();
    for chunk in src.chunks(CHUNK_SIZE) {
        let mut out = vec![0u8; Compressor::bound(chunk.len())];
        let n = match codec {
            Codec::Zstd => comp.compress(chunk, &mut out).unwrap(),
            Codec::Shuffle8 | Codec::Shuffle8Delta => {
                let s = &mut shuffled[..chunk.len()];
                if codec == Codec::Shuffle8 {
                    shuffle8(chunk, s)
                } else {
                    shuffle8_delta(chunk, s)
                }
                plain.compress(s, &mut out).unwrap()
            }
        };
        out.truncate(n);
        frames.push(out);
    }
    let write = t.elapsed().as_secs_f64();
    let mut back = vec![1u8; src.len()];
    let t = Instant::now();
    for (frame, dst) in frames.iter().zip(back.chunks_mut(CHUNK_SIZE)) {
        match codec {
            Codec::Zstd => dec.decompress(frame, dst).unwrap(),
            Codec::Shuffle8 | Codec::Shuffle8Delta => {
                let s = &mut shuffled[..dst.len()];
                dec.decompress(frame, s).unwrap();
                if codec == Codec::Shuffle8 {
                    unshuffle8(s, dst)
                } else {
                    unshuffle8_delta(s, dst)
                }
            }
        }
    }
    let read = t.elapsed().as_secs_f64();
    assert!(back == src, "round trip");
    (write, read, frames.iter().map(Vec::len).sum())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mib: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(256);
    let rounds: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(5);
    let mut comp = Compressor::new(1).unwrap();
    let mut plain = Compressor::plain(1).unwrap();
    let mut dec = Decompressor::new().unwrap();
    println!("{mib} MiB, one thread, medians of {rounds} rounds (MB/s of memory)");
    println!("| data | codec | ratio | write MB/s | read MB/s |");
    println!("|---|---|---:|---:|---:|");
    for kind in ["quant", "smooth"] {
        let src = data(kind, mib);
        let codecs = [(Codec::Zstd, "Zstd (LDM)"), (Codec::Shuffle8, "Shuffle8"), (Codec::Shuffle8Delta, "Shuffle8Delta")];
        let mut res: Vec<(Vec<f64>, Vec<f64>, usize)> = codecs.iter().map(|_| (Vec::new(), Vec::new(), 0)).collect();
        for _ in 0..rounds {
            for (k, &(c, _)) in codecs.iter().enumerate() {
                let (w, r, n) = pass(c, &src, &mut comp, &mut plain, &mut dec);
                res[k].0.push(w);
                res[k].1.push(r);
                res[k].2 = n;
            }
        }
        for ((_, name), (w, r, n)) in codecs.iter().zip(res) {
            let mb = src.len() as f64 / 1e6;
            println!("| {kind} | {name} | {:.1}x | {:.0} | {:.0} |", src.len() as f64 / n as f64, mb / median(w), mb / median(r));
        }
    }
}
