//! The fuzz properties as bounded loops on stable Rust: random and mutated inputs for
//! `FUZZ_SECONDS` seconds per target (default 5), from `FUZZ_SEED` (default: the clock, printed
//! so a failure can be replayed). Weaker than coverage-guided libFuzzer (`scripts/fuzz.sh`),
//! but runs anywhere.

use std::time::{Duration, Instant};

/// xorshift64*: enough randomness for input generation, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Pieces inputs are built from: valid fragments mixed with hostile ones.
const TOKENS: &[&str] = &[
    "[",
    "]",
    "{",
    "}",
    ",",
    ":",
    "\"",
    "\"metric\"",
    "\"tags\"",
    "\"dps\"",
    "\"m\"",
    "\"1000\"",
    "\"1700000000\"",
    "\"1700000000123\"",
    "1",
    "-1",
    "2.5",
    "1e308",
    "1e999",
    "\"NaN\"",
    "null",
    "\"Infinity\"",
    "\"-Infinity\"",
    "true",
    "\"x\"",
    "[[1000,1]]",
    "\"host\"",
    "\"é🙂\"",
    "\\u0000",
    "0",
    "5m",
    "-avg",
    "-max",
    "-nan",
    "-zero",
    "-null",
    "c",
    "all",
    "0all",
    "ms",
    "s",
    "h",
    "d",
    "w",
    "n",
    "y",
    "p99",
    "count",
    "%",
    "%2F",
    "/",
    "=",
    "..",
    ".",
    " ",
    "\n",
    "\u{85}",
    "\u{7f}",
    "#",
    "*",
    "?",
    "\\",
    "{",
    "^",
    "'",
];

fn input(rng: &mut Rng, seeds: &[&[u8]]) -> Vec<u8> {
    match rng.below(3) {
        0 => (0..rng.below(64)).map(|_| rng.next() as u8).collect(),
        1 => (0..rng.below(24))
            .flat_map(|_| TOKENS[rng.below(TOKENS.len())].bytes())
            .collect(),
        _ => {
            let mut v = seeds[rng.below(seeds.len())].to_vec();
            for _ in 0..=rng.below(4) {
                if v.is_empty() {
                    break;
                }
                let i = rng.below(v.len());
                match rng.below(3) {
                    0 => v[i] = rng.next() as u8,
                    1 => {
                        v.remove(i);
                    }
                    _ => v
                        .splice(
                            i..i,
                            TOKENS[rng.below(TOKENS.len())].bytes().collect::<Vec<_>>(),
                        )
                        .for_each(drop),
                }
            }
            v
        }
    }
}

fn run(name: &str, seeds: &[&[u8]], check: fn(&[u8])) {
    let secs: u64 = std::env::var("FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let seed: u64 = std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("{name}: FUZZ_SEED={seed} FUZZ_SECONDS={secs}");
    let mut rng = Rng(seed | 1);
    for s in seeds {
        check(s);
    }
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut n = 0u64;
    while Instant::now() < deadline {
        for _ in 0..256 {
            let data = input(&mut rng, seeds);
            let r = std::panic::catch_unwind(|| check(&data));
            if r.is_err() {
                panic!(
                    "{name}: property violated for input {:?} (bytes {:?})",
                    String::from_utf8_lossy(&data),
                    data
                );
            }
            n += 1;
        }
    }
    eprintln!("{name}: {n} inputs");
}

#[test]
fn dps_decoder() {
    run(
        "dps_decoder",
        &[
            br#"[{"metric":"m","tags":{"host":"a"},"dps":{"1000":1,"2000":"NaN","3000":null}}]"#,
            br#"[{"metric":"m","tags":{},"dps":[[1000,1],[1000,2],[500,"Infinity"]]}]"#,
            br#"[{"metric":"m","tags":{},"dps":{"1700000000":1,"1700000000123":2,"-5":3}}]"#,
            br#"[]"#,
            b"",
        ],
        vscope_etl_fuzz::check_dps,
    );
}

#[test]
fn downsample_spec() {
    run(
        "downsample_spec",
        &[
            b"5m-avg",
            b"1h-max-nan",
            b"0all-sum",
            b"1dc-p99-zero",
            b"7d-count-null",
            b"100ms-dev",
        ],
        vscope_etl_fuzz::check_downsample,
    );
}

#[test]
fn partition_path() {
    run(
        "partition_path",
        &[
            b"vscope.vm.cpu.usage.perc",
            b"a/b=c%d",
            "été 🙂".as_bytes(),
            b"x\ny",
            b"..",
            b"%41",
        ],
        vscope_etl_fuzz::check_partition,
    );
}
