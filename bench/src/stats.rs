//! Summaries of repeated measurements. Quantiles are nearest-rank, so every figure
//! reported is one that was measured: for an even count the median is the upper of
//! the two middle values (the pessimistic one, for times).

use serde::{Deserialize, Serialize};

/// Median and spread of a sample, in the sample's unit.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub count: usize,
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub p95: f64,
}

impl Summary {
    /// `None` for an empty sample.
    pub fn of(values: &[f64]) -> Option<Self> {
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let at = |q: f64| sorted[((n - 1) as f64 * q).round() as usize];
        (n > 0).then(|| Summary {
            count: n,
            median: at(0.5),
            min: sorted[0],
            max: sorted[n - 1],
            p95: at(0.95),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_of_a_small_sample() {
        let s = Summary::of(&[3.0, 1.0, 2.0, 10.0, 4.0]).unwrap();
        assert_eq!(
            (s.count, s.median, s.min, s.max, s.p95),
            (5, 3.0, 1.0, 10.0, 10.0)
        );
        assert_eq!(Summary::of(&[]), None);
        assert_eq!(Summary::of(&[2.0, 1.0]).unwrap().median, 2.0);
    }
}
