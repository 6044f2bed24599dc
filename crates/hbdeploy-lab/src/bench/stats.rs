//! Summaries of repeated measurements: median and spread (minimum, maximum), kept with the
//! samples themselves so a reader can judge the noise.

use serde_json::{Value, json};

/// Several measurements of one quantity, in the order they were taken.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Samples(pub Vec<f64>);

impl Samples {
    /// Adds a measurement.
    pub fn push(&mut self, value: f64) {
        self.0.push(value);
    }

    fn sorted(&self) -> Vec<f64> {
        let mut values = self.0.clone();
        values.sort_by(f64::total_cmp);
        values
    }

    /// The median (the mean of the two middle values for an even count); `None` when empty.
    pub fn median(&self) -> Option<f64> {
        let values = self.sorted();
        let n = values.len();
        match n {
            0 => None,
            _ if n % 2 == 1 => Some(values[n / 2]),
            _ => Some((values[n / 2 - 1] + values[n / 2]) / 2.0),
        }
    }

    /// The smallest measurement.
    pub fn min(&self) -> Option<f64> {
        self.sorted().first().copied()
    }

    /// The largest measurement.
    pub fn max(&self) -> Option<f64> {
        self.sorted().last().copied()
    }

    /// `{median, min, max, samples}`, or `null` when nothing was measured.
    pub fn to_json(&self) -> Value {
        match (self.median(), self.min(), self.max()) {
            (Some(median), Some(min), Some(max)) => json!({
                "median": round(median),
                "min": round(min),
                "max": round(max),
                "samples": self.0.iter().map(|v| round(*v)).collect::<Vec<_>>(),
            }),
            _ => Value::Null,
        }
    }

    /// `median (min–max)` with `decimals`, or `–` when nothing was measured.
    pub fn cell(&self, decimals: usize) -> String {
        match (self.median(), self.min(), self.max()) {
            (Some(median), Some(min), Some(max)) if self.0.len() > 1 => {
                format!("{median:.decimals$} ({min:.decimals$}–{max:.decimals$})")
            }
            (Some(median), ..) => format!("{median:.decimals$}"),
            _ => "–".to_owned(),
        }
    }
}

/// Three decimals are plenty for seconds and MiB, and keep the JSON readable.
pub fn round(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_spread() {
        let odd = Samples(vec![3.0, 1.0, 2.0]);
        assert_eq!(
            (odd.median(), odd.min(), odd.max()),
            (Some(2.0), Some(1.0), Some(3.0))
        );
        assert_eq!(Samples(vec![4.0, 1.0, 2.0, 3.0]).median(), Some(2.5));
        assert_eq!(Samples::default().median(), None);
        assert_eq!(odd.cell(1), "2.0 (1.0–3.0)");
        assert_eq!(Samples(vec![1.25]).cell(2), "1.25");
        assert_eq!(Samples::default().cell(1), "–");
        assert_eq!(
            odd.to_json(),
            json!({"median": 2.0, "min": 1.0, "max": 3.0, "samples": [3.0, 1.0, 2.0]})
        );
        assert_eq!(Samples::default().to_json(), Value::Null);
    }
}
