//! The pricing table: integer micro-dollars per million tokens (and per minute of audio), a bundled default
//! for well-known models, overridable from `gateway.pricing`. An unknown model has no price: callers fail closed.

use std::collections::HashMap;

use aura_config::PriceConfig;

use crate::protocol::Usage;

/// The price of one model. Micro-dollars per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Price {
    /// Input tokens.
    pub input: i64,
    /// Output tokens.
    pub output: i64,
    /// Input tokens read from the prompt cache.
    pub cached_input: i64,
    /// Input tokens written to the prompt cache.
    pub cache_write: i64,
    /// Audio, per minute.
    pub audio_per_minute: i64,
}

impl Price {
    const fn new(input: i64, output: i64, cached_input: i64, cache_write: i64) -> Price {
        Price {
            input,
            output,
            cached_input,
            cache_write,
            audio_per_minute: 0,
        }
    }

    /// The cost of `usage` in micro-dollars, rounded up.
    pub fn cost(&self, usage: &Usage) -> i64 {
        let uncached = usage
            .input_tokens
            .saturating_sub(usage.cached_input_tokens)
            .saturating_sub(usage.cache_write_tokens);
        let total = i128::from(uncached) * i128::from(self.input)
            + i128::from(usage.cached_input_tokens) * i128::from(self.cached_input)
            + i128::from(usage.cache_write_tokens) * i128::from(self.cache_write)
            + i128::from(usage.output_tokens) * i128::from(self.output);
        ceil_millionths(total)
    }

    /// The most a call can cost: every prompt token at the input price plus `max_output` tokens at the output
    /// price, rounded up. This is what the gateway reserves.
    pub fn estimate(&self, prompt_tokens: u64, max_output: u64) -> i64 {
        let total = i128::from(prompt_tokens) * i128::from(self.input.max(self.cache_write))
            + i128::from(max_output) * i128::from(self.output);
        ceil_millionths(total)
    }
}

fn ceil_millionths(total: i128) -> i64 {
    let micros = (total + 999_999) / 1_000_000;
    i64::try_from(micros).unwrap_or(i64::MAX)
}

/// Bundled default prices (USD list prices, micro-dollars per million tokens).
const BUNDLED: &[(&str, Price)] = &[
    (
        "gpt-4o",
        Price::new(2_500_000, 10_000_000, 1_250_000, 2_500_000),
    ),
    ("gpt-4o-mini", Price::new(150_000, 600_000, 75_000, 150_000)),
    (
        "gpt-4.1",
        Price::new(2_000_000, 8_000_000, 500_000, 2_000_000),
    ),
    (
        "gpt-4.1-mini",
        Price::new(400_000, 1_600_000, 100_000, 400_000),
    ),
    (
        "gpt-4.1-nano",
        Price::new(100_000, 400_000, 25_000, 100_000),
    ),
    (
        "o3-mini",
        Price::new(1_100_000, 4_400_000, 550_000, 1_100_000),
    ),
    (
        "text-embedding-3-small",
        Price::new(20_000, 0, 20_000, 20_000),
    ),
    (
        "text-embedding-3-large",
        Price::new(130_000, 0, 130_000, 130_000),
    ),
    (
        "claude-3-5-haiku-latest",
        Price::new(800_000, 4_000_000, 80_000, 1_000_000),
    ),
    (
        "claude-3-5-sonnet-latest",
        Price::new(3_000_000, 15_000_000, 300_000, 3_750_000),
    ),
    (
        "claude-sonnet-4-20250514",
        Price::new(3_000_000, 15_000_000, 300_000, 3_750_000),
    ),
    (
        "claude-opus-4-20250514",
        Price::new(15_000_000, 75_000_000, 1_500_000, 18_750_000),
    ),
    (
        "gemini-2.0-flash",
        Price::new(100_000, 400_000, 25_000, 100_000),
    ),
    (
        "gemini-2.5-flash",
        Price::new(300_000, 2_500_000, 75_000, 300_000),
    ),
    (
        "gemini-2.5-pro",
        Price::new(1_250_000, 10_000_000, 310_000, 1_250_000),
    ),
];

/// Prices by upstream model name.
#[derive(Debug, Clone)]
pub struct Pricing {
    prices: HashMap<String, Price>,
}

impl Pricing {
    /// The bundled table with `overrides` applied on top.
    pub fn new(overrides: &[PriceConfig]) -> Pricing {
        let mut prices: HashMap<String, Price> =
            BUNDLED.iter().map(|(m, p)| ((*m).to_owned(), *p)).collect();
        for o in overrides {
            prices.insert(
                o.model.clone(),
                Price {
                    input: o.input_per_mtok_micros,
                    output: o.output_per_mtok_micros,
                    cached_input: o
                        .cached_input_per_mtok_micros
                        .unwrap_or(o.input_per_mtok_micros),
                    cache_write: o
                        .cache_write_per_mtok_micros
                        .unwrap_or(o.input_per_mtok_micros),
                    audio_per_minute: o.audio_per_minute_micros.unwrap_or(0),
                },
            );
        }
        Pricing { prices }
    }

    /// The price of `model`; `None` when unknown (fail closed).
    pub fn get(&self, model: &str) -> Option<Price> {
        self.prices.get(model).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cost_is_integer_and_rounded_up() {
        let p = Pricing::new(&[]).get("gpt-4o-mini").unwrap();
        let usage = Usage {
            input_tokens: 1_000_000,
            output_tokens: 1_000_000,
            ..Usage::default()
        };
        assert_eq!(p.cost(&usage), 750_000);
        let one = Usage {
            input_tokens: 1,
            ..Usage::default()
        };
        assert_eq!(p.cost(&one), 1, "a fraction of a micro-dollar rounds up");
        let cached = Usage {
            input_tokens: 1_000_000,
            cached_input_tokens: 1_000_000,
            ..Usage::default()
        };
        assert_eq!(p.cost(&cached), 75_000);
        assert_eq!(p.estimate(1_000_000, 1_000_000), 750_000);
    }

    #[test]
    fn overrides_replace_and_unknown_models_have_no_price() {
        let pricing = Pricing::new(&[PriceConfig {
            model: "gpt-4o-mini".into(),
            input_per_mtok_micros: 1,
            output_per_mtok_micros: 2,
            cached_input_per_mtok_micros: None,
            cache_write_per_mtok_micros: None,
            audio_per_minute_micros: None,
        }]);
        assert_eq!(pricing.get("gpt-4o-mini").unwrap().output, 2);
        assert!(pricing.get("no-such-model").is_none());
    }
}
