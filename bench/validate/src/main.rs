//! Validation benchmark: the validators protoc-gen-svc generates against
//! prost-protovalidate (the reflection- and CEL-based runtime validator for
//! prost) on the same messages and rules, and against prost decoding the
//! same message's bytes, all measured in one run.
//!
//! Each case is timed in rounds that alternate between the three, so that
//! a noisy machine slows them alike; the table gives the median of the
//! rounds and the ratios of medians. Both validators must agree on every
//! message (valid or not) before anything is timed.
//!
//!   bash bench/validate.sh [rounds]

use std::hint::black_box;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use prost::Message;
use prost_reflect::{DescriptorPool, MessageDescriptor, ReflectMessage};
use svc_runtime::validate::Validate;

#[allow(clippy::all, missing_docs)]
mod pb {
    include!(concat!(env!("OUT_DIR"), "/mod.rs"));
}

use pb::vbench::v1::{Address, Complex, Kind, Ranged, Small, complex};

/// The messages' descriptors, for prost-protovalidate (what
/// prost-reflect-build's derive would give the structs).
static POOL: LazyLock<DescriptorPool> = LazyLock::new(|| {
    DescriptorPool::decode(&include_bytes!(concat!(env!("OUT_DIR"), "/vbench.binpb"))[..]).expect("the descriptors")
});

macro_rules! reflect {
    ($($t:ty => $name:literal),* $(,)?) => {$(
        impl ReflectMessage for $t {
            fn descriptor(&self) -> MessageDescriptor {
                POOL.get_message_by_name($name).expect($name)
            }
        }
    )*};
}

reflect!(Small => "vbench.v1.Small", Complex => "vbench.v1.Complex", Ranged => "vbench.v1.Ranged");

fn small(valid: bool) -> Small {
    if valid {
        Small { name: "Ada Lovelace".into(), age: 36, email: "ada@example.com".into() }
    } else {
        Small { name: String::new(), age: 12, email: "ada@".into() }
    }
}

fn complex(valid: bool) -> Complex {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs() as i64;
    let address =
        |line: &str, country: &str| Address { line: line.into(), country: country.into(), postcode: "SW1A 1AA".into() };
    let mut m = Complex {
        id: "6f1b8a4e-3c2d-4e5f-8a9b-0c1d2e3f4a5b".into(),
        handle: "ada_lovelace".into(),
        email: "ada@example.com".into(),
        host: "api.example.com".into(),
        ip: "192.0.2.10".into(),
        kind: Kind::Business as i32,
        quantity: 12,
        ratio: 0.25,
        balance: 1_000,
        currency: "GBP".into(),
        tags: vec!["alpha".into(), "beta".into(), "gamma".into(), "delta".into()],
        labels: [("team", "payments"), ("tier", "gold"), ("region", "eu_west")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        home: Some(address("1 Main Street", "GB")),
        others: vec![address("2 High Street", "GB"), address("3 Rue Lepic", "FR")],
        created: Some(prost_types::Timestamp { seconds: now - 3600, nanos: 0 }),
        ttl: Some(prost_types::Duration { seconds: 600, nanos: 0 }),
        token: vec![7; 16],
        note: "call before noon".into(),
        payment: Some(complex::Payment::Card("4111111111111111".into())),
    };
    if !valid {
        m.id = "not-a-uuid".into();
        m.handle = "Ada!".into();
        m.email = "ada@@example.com".into();
        m.kind = 0;
        m.quantity = 0;
        m.ratio = 1.5;
        m.tags.push("alpha".into());
        m.labels.insert("Bad-Key".into(), String::new());
        m.others[1].country = "fr".into();
        m.created = Some(prost_types::Timestamp { seconds: now + 3600, nanos: 0 });
        m.token = vec![1, 2, 3];
        m.payment = None;
    }
    m
}

fn ranged(valid: bool) -> Ranged {
    if valid { Ranged { low: 10, high: 20 } } else { Ranged { low: 20, high: 10 } }
}

/// Nanoseconds per call of `f`, over a batch long enough to time.
fn time_batch(f: &mut dyn FnMut(), iterations: u64) -> f64 {
    let start = Instant::now();
    for _ in 0..iterations {
        f();
    }
    start.elapsed().as_nanos() as f64 / iterations as f64
}

/// Iterations that take about `target`.
fn calibrate(f: &mut dyn FnMut(), target: Duration) -> u64 {
    let mut n = 16u64;
    loop {
        let start = Instant::now();
        for _ in 0..n {
            f();
        }
        if start.elapsed() >= target / 4 || n > 1 << 30 {
            return (n * 4).max(1);
        }
        n *= 2;
    }
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    let mid = xs.len() / 2;
    if xs.len().is_multiple_of(2) { (xs[mid - 1] + xs[mid]) / 2.0 } else { xs[mid] }
}

struct Row {
    case: String,
    ours: Vec<f64>,
    peer: Vec<f64>,
    decode: Vec<f64>,
    violations: usize,
}

fn run_case<M>(name: &str, message: M, rounds: usize, validator: &prost_protovalidate::Validator) -> Row
where
    M: Validate + ReflectMessage + Message + Default,
{
    // Both validators must say the same before they are compared.
    let ours_result = message.validate();
    let peer_result = validator.validate(&message);
    assert_eq!(
        ours_result.is_ok(),
        peer_result.is_ok(),
        "{name}: protoc-gen-svc says {ours_result:?}, prost-protovalidate says {peer_result:?}"
    );
    let violations = ours_result.err().map_or(0, |v| v.0.len());
    let bytes = message.encode_to_vec();
    let mut ours = || {
        black_box(black_box(&message).validate().is_ok());
    };
    let mut peer = || {
        black_box(validator.validate(black_box(&message)).is_ok());
    };
    let mut decode = || {
        black_box(M::decode(black_box(&bytes[..])).is_ok());
    };
    let target = Duration::from_millis(40);
    let n = [calibrate(&mut ours, target), calibrate(&mut peer, target), calibrate(&mut decode, target)];
    let mut row = Row { case: name.to_owned(), ours: Vec::new(), peer: Vec::new(), decode: Vec::new(), violations };
    for round in 0..rounds {
        // Alternate the order, so that no one always runs first.
        let order: [usize; 3] = if round.is_multiple_of(2) { [0, 1, 2] } else { [2, 1, 0] };
        for which in order {
            match which {
                0 => row.ours.push(time_batch(&mut ours, n[0])),
                1 => row.peer.push(time_batch(&mut peer, n[1])),
                _ => row.decode.push(time_batch(&mut decode, n[2])),
            }
        }
    }
    row
}

fn spread(xs: &[f64]) -> String {
    let lo = xs.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = xs.iter().copied().fold(0.0, f64::max);
    format!("{lo:.0}–{hi:.0}")
}

fn main() {
    let rounds: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(11);
    // An optional second argument keeps the cases whose name contains it.
    let only = std::env::args().nth(2).unwrap_or_default();
    let validator = prost_protovalidate::Validator::new();
    let wanted = |name: &str| name.contains(only.as_str());
    let mut rows = Vec::new();
    for valid in [true, false] {
        let state = if valid { "valid" } else { "invalid" };
        let name = format!("small, {state}");
        if wanted(&name) {
            rows.push(run_case(&name, small(valid), rounds, &validator));
        }
        let name = format!("complex, {state}");
        if wanted(&name) {
            rows.push(run_case(&name, complex(valid), rounds, &validator));
        }
        let name = format!("CEL rule, {state}");
        if wanted(&name) {
            rows.push(run_case(&name, ranged(valid), rounds, &validator));
        }
    }
    println!("validation benchmark: {rounds} alternating rounds; ns per message, median (min–max)");
    println!(
        "{:<18} {:>5} {:>20} {:>24} {:>20} {:>14} {:>14}",
        "case", "viol.", "protoc-gen-svc", "prost-protovalidate", "prost decode", "peer / ours", "ours / decode"
    );
    for r in &rows {
        let (o, p, d) = (median(r.ours.clone()), median(r.peer.clone()), median(r.decode.clone()));
        println!(
            "{:<18} {:>5} {:>20} {:>24} {:>20} {:>13.1}× {:>13.2}×",
            r.case,
            r.violations,
            format!("{o:.0} ({})", spread(&r.ours)),
            format!("{p:.0} ({})", spread(&r.peer)),
            format!("{d:.0} ({})", spread(&r.decode)),
            p / o,
            o / d
        );
    }
}
