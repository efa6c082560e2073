//! rust_channels: a Rust test program with std threads talking through mpsc channels.
//!
//! Usage: `rust_channels [STEPS=60] [DELAY_MS=30]`
//!
//! Four producer threads each keep a private running state. For every step the main thread sends
//! the step number to every producer over that producer's own channel; each producer advances its
//! state and sends it on a shared channel to a consumer thread, which accumulates the values
//! (order-independently) and, once all producers have answered, reports the running total to main
//! over a third channel. Main prints `step i total=<hex>` and sleeps DELAY_MS. At the end main
//! closes the channels, joins every thread and prints `result <hex>` combining the consumer's total
//! and every producer's final state. Prints `start rust_channels ...` first. Deterministic.

use std::sync::mpsc;
use std::thread;
use std::time::Duration;

const PRODUCERS: u64 = 4;

/// splitmix64 finalizer.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn arg(n: usize, default: u64) -> u64 {
    match std::env::args().nth(n) {
        Some(a) => a.parse().unwrap_or_else(|_| {
            eprintln!("rust_channels: bad argument {a:?}");
            std::process::exit(2)
        }),
        None => default,
    }
}

fn main() {
    let steps = arg(1, 60);
    let delay = Duration::from_millis(arg(2, 30));
    println!("start rust_channels steps={steps} producers={PRODUCERS}");

    // producer -> consumer: (producer, step, value)
    let (to_consumer, from_producers) = mpsc::channel::<(u64, u64, u64)>();
    // consumer -> main: (step, running total)
    let (to_main, from_consumer) = mpsc::channel::<(u64, u64)>();

    let consumer = thread::spawn(move || {
        let mut total = 0u64;
        let mut answers = 0u64;
        for (producer, step, value) in from_producers {
            total = total.wrapping_add(mix(value ^ (producer << 48)));
            answers += 1;
            if answers.is_multiple_of(PRODUCERS) {
                to_main.send((step, total)).expect("main hung up");
            }
        }
        total
    });

    let mut requests = Vec::new();
    let mut producers = Vec::new();
    for p in 0..PRODUCERS {
        let (tx, rx) = mpsc::channel::<u64>();
        let out = to_consumer.clone();
        requests.push(tx);
        producers.push(thread::spawn(move || {
            let mut state = mix(p + 1);
            for step in rx {
                state = mix(state ^ step);
                out.send((p, step, state)).expect("consumer hung up");
            }
            state
        }));
    }
    drop(to_consumer);

    for step in 1..=steps {
        for tx in &requests {
            tx.send(step).expect("producer hung up");
        }
        let (answered, total) = from_consumer.recv().expect("consumer died");
        assert_eq!(answered, step, "consumer answered for the wrong step");
        println!("step {step} total={total:016x}");
        thread::sleep(delay);
    }

    drop(requests);
    let states: Vec<u64> = producers
        .into_iter()
        .map(|h| h.join().expect("producer panicked"))
        .collect();
    let mut result = consumer.join().expect("consumer panicked");
    for s in states {
        result = mix(result ^ s);
    }
    println!("result {result:016x}");
}
