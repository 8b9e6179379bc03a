//! How many repair symbols a block gets, and how many a loss report asks for.
//!
//! A small block gets more repair than `repair-percent` alone gives it: enough to fail no
//! more often than a full block at the loss rate the full block is designed for.

use crate::Codec;

/// Most source symbols a block may have (RaptorQ allows 56403; we keep plans small).
pub const MAX_SOURCE_SYMBOLS: u16 = 8192;

/// ln(P(X < need)) for X ~ Binomial(n, 1 - loss): the chance a block of n symbols arrives
/// with fewer than `need` of them.
fn ln_fail(n: u32, need: u32, loss: f64) -> f64 {
    if need == 0 {
        return f64::NEG_INFINITY;
    }
    if need > n {
        return 0.0;
    }
    let (ln_p, ln_q) = ((1.0 - loss).ln(), loss.ln());
    // Sum the terms x = 0..need-1 in log space, starting from the largest.
    let mut ln_choose = 0.0;
    let mut terms = Vec::with_capacity(need as usize);
    for x in 0..need {
        if x > 0 {
            ln_choose += ((n - x + 1) as f64).ln() - (x as f64).ln();
        }
        terms.push(ln_choose + f64::from(x) * ln_p + f64::from(n - x) * ln_q);
    }
    let max = terms.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    max + terms.iter().map(|t| (t - max).exp()).sum::<f64>().ln()
}

/// Repair symbols for a block of `k` source symbols when a full block of `max_k` gets
/// `repair_percent` %. The design loss rate is half the full block's repair share.
pub fn repair_count(codec: Codec, k: u16, max_k: u16, repair_percent: u32) -> u32 {
    if codec == Codec::None || repair_percent == 0 {
        return 0;
    }
    let full_r = (u32::from(max_k) * repair_percent).div_ceil(100);
    let r = (u32::from(k) * repair_percent).div_ceil(100);
    if k >= max_k {
        return full_r;
    }
    let loss = f64::from(full_r) / f64::from(u32::from(max_k) + full_r) / 2.0;
    let need = |k: u16| u32::from(k) + codec.overhead();
    let target = ln_fail(u32::from(max_k) + full_r, need(max_k), loss);
    let mut r = r.max(1);
    // Bounded: a block never gets more repair than a full block's worth of symbols.
    while r < u32::from(max_k) + full_r && ln_fail(u32::from(k) + r, need(k), loss) > target {
        r += 1;
    }
    r
}

/// How often an ask may bring too few symbols.
const SHORT_ASK: f64 = 1e-2;

/// How many symbols to ask for when `needed` more would rebuild a block and `loss` of
/// what is sent is lost on the way: enough that fewer than `needed` arrive at most once in a
/// hundred asks, and the second ask fills the rest (two short rounds in a row: once in ten
/// thousand). `needed` itself with no loss; never more than four times `needed` and 16; `needed` as it is past 65535.
pub fn to_ask(needed: u32, loss: f64) -> u32 {
    ask(needed, loss, SHORT_ASK)
}

/// [`to_ask`] with another chance of enough: `confidence` percent of asks bring at least
/// `needed` (taken within 50 … 99.99; lower asks for fewer and leaves more to a next round).
pub fn to_ask_with(needed: u32, loss: f64, confidence: f64) -> u32 {
    let short = match confidence.is_nan() {
        true => SHORT_ASK,
        false => 1.0 - confidence.clamp(50.0, 99.99) / 100.0,
    };
    ask(needed, loss, short)
}

/// The least n of which fewer than `needed` arrive at `loss` with a chance of `short` at most.
fn ask(needed: u32, loss: f64, short: f64) -> u32 {
    // Past what a loss report can carry (and any real block), not worth the arithmetic.
    if needed == 0 || needed > u32::from(u16::MAX) || loss.is_nan() || loss <= 0.0 {
        return needed;
    }
    let loss = loss.min(0.5);
    let most = needed.saturating_mul(4).saturating_add(16);
    let target = short.ln();
    // The chance falls as n grows: the least n that makes it, by bisection (a whole block
    // of 8192 is asked for in about 15 evaluations).
    let (mut lo, mut hi) = (needed, most);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if ln_fail(mid, needed, loss) > target {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lower_confidence_asks_for_fewer_never_below_what_is_needed() {
        assert_eq!(to_ask_with(12, 0.1, 99.0), to_ask(12, 0.1));
        let mut last = 0;
        for confidence in [50.0, 75.0, 90.0, 99.0, 99.99] {
            let n = to_ask_with(102, 0.1, confidence);
            assert!(n >= last && n >= 102, "{confidence}: {n}");
            last = n;
        }
        // About the mean at 50 %: 102 / 0.9 = 113.3.
        assert!((113..=115).contains(&to_ask_with(102, 0.1, 50.0)));
        assert!(to_ask_with(102, 0.1, 50.0) < to_ask_with(102, 0.1, 99.0));
        // Out of range or not a number: clamped, or the default.
        assert_eq!(to_ask_with(102, 0.1, 0.0), to_ask_with(102, 0.1, 50.0));
        assert_eq!(to_ask_with(102, 0.1, 100.0), to_ask_with(102, 0.1, 99.99));
        assert_eq!(to_ask_with(102, 0.1, f64::NAN), to_ask(102, 0.1));
    }

    #[test]
    fn binomial_tail() {
        // P(X < 1) for n = 1, loss 0.1 is 0.1.
        assert!((ln_fail(1, 1, 0.1).exp() - 0.1).abs() < 1e-9);
        // P(X < 2) for n = 2: 1 - 0.81.
        assert!((ln_fail(2, 2, 0.1).exp() - 0.19).abs() < 1e-9);
    }

    #[test]
    fn asks_allow_for_the_loss_on_the_way_back() {
        assert_eq!(to_ask(10, 0.0), 10);
        assert_eq!(to_ask(0, 0.1), 0);
        assert_eq!(to_ask(10, f64::NAN), 10);
        for (needed, loss) in [(1, 0.02), (3, 0.1), (12, 0.1), (102, 0.1), (50, 0.3)] {
            let n = to_ask(needed, loss);
            assert!(n > needed, "{needed} at {loss}: {n}");
            assert!(ln_fail(n, needed, loss) <= SHORT_ASK.ln());
            // The least that does: one fewer would fall short more often.
            assert!(
                ln_fail(n - 1, needed, loss) > SHORT_ASK.ln(),
                "{needed} at {loss}: {n}"
            );
        }
        // 10 % loss, a block short of 12: 17 asked.
        assert_eq!(to_ask(12, 0.1), 17);
        assert_eq!(to_ask(u32::MAX, 0.5), u32::MAX);
        assert_eq!(to_ask(5, 0.9), to_ask(5, 0.5));
        // A whole block of the largest K, cheaply.
        let n = to_ask(8194, 0.1);
        assert!((9000..9300).contains(&n), "{n}");
    }

    #[test]
    fn small_blocks_get_extra_repair() {
        assert_eq!(repair_count(Codec::RaptorQ, 100, 100, 25), 25);
        let r = repair_count(Codec::RaptorQ, 10, 100, 25);
        assert!(r > 3, "{r}");
        let loss = 25.0 / 125.0 / 2.0;
        assert!(ln_fail(10 + r, 12, loss) <= ln_fail(125, 102, loss));
        assert_eq!(repair_count(Codec::None, 10, 100, 25), 0);
        assert!(repair_count(Codec::ReedSolomon, 1, 100, 20) >= 1);
    }
}
