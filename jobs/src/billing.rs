//! Billing's rules that need no I/O: currencies, billing intervals, period arithmetic and
//! proration, all in integer minor units (cents for EUR, yen for JPY). Stores and handlers build
//! on these; nothing here rounds through floating point.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Days, Months, Utc};
use serde::{Deserialize, Serialize};

/// An ISO 4217 currency code (`EUR`, `JPY`), upper case, with its minor-unit exponent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Currency(iso_currency::Currency);

impl Currency {
    /// The three-letter code.
    pub fn code(self) -> &'static str {
        self.0.code()
    }

    /// Digits after the decimal point (2 for EUR, 0 for JPY, 3 for KWD).
    pub fn exponent(self) -> u32 {
        self.0.exponent().map_or(0, u32::from)
    }
}

impl FromStr for Currency {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let currency = iso_currency::Currency::from_code(s).ok_or_else(|| {
            format!("`{s}` is not an ISO 4217 currency code (e.g. EUR, USD, JPY)")
        })?;
        if currency.exponent().is_none() {
            // Precious metals, test and fund codes (XAU, XTS, XDR): nothing to charge in.
            return Err(format!(
                "`{s}` has no minor unit: not a currency to charge in"
            ));
        }
        Ok(Currency(currency))
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// Every code [`Currency`] accepts, sorted.
pub fn currency_codes() -> impl Iterator<Item = &'static str> {
    use iso_currency::IntoEnumIterator;
    let mut codes: Vec<_> = iso_currency::Currency::iter()
        .filter(|c| c.exponent().is_some())
        .map(|c| c.code())
        .collect();
    codes.sort_unstable();
    codes.into_iter()
}

/// An amount in minor units with its currency, for display (`12.50 EUR`, `1200 JPY`).
pub fn format_amount(amount_minor: i64, currency: Currency) -> String {
    let exp = currency.exponent();
    if exp == 0 {
        return format!("{amount_minor} {currency}");
    }
    let scale = 10i64.pow(exp);
    let sign = if amount_minor < 0 { "-" } else { "" };
    let abs = amount_minor.unsigned_abs();
    let scale = scale.unsigned_abs();
    format!(
        "{sign}{}.{:0width$} {currency}",
        abs / scale,
        abs % scale,
        width = exp as usize
    )
}

/// How often a plan bills.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Interval {
    /// Every day.
    Day,
    /// Every week.
    Week,
    /// Every calendar month (the 31st bills on the last day of shorter months).
    Month,
    /// Every calendar year.
    Year,
}

impl Interval {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Interval::Day => "day",
            Interval::Week => "week",
            Interval::Month => "month",
            Interval::Year => "year",
        }
    }
}

impl FromStr for Interval {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "day" => Ok(Interval::Day),
            "week" => Ok(Interval::Week),
            "month" => Ok(Interval::Month),
            "year" => Ok(Interval::Year),
            _ => Err(format!(
                "`{s}` is not an interval (one of day, week, month, year)"
            )),
        }
    }
}

/// A plan's billing cadence: every `count` intervals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cadence {
    /// The unit.
    pub interval: Interval,
    /// How many units one period spans (at least 1).
    pub count: u32,
}

impl Cadence {
    /// The end of period `n` (0-based) of a subscription anchored at `anchor`: periods are
    /// counted from the anchor, never chained, so a subscription anchored on 31 January bills
    /// on 28/29 February and again on 31 March. `None` past chrono's range.
    pub fn period_end(self, anchor: DateTime<Utc>, n: u32) -> Option<DateTime<Utc>> {
        let units = n.checked_add(1)?.checked_mul(self.count)?;
        match self.interval {
            Interval::Day => anchor.checked_add_days(Days::new(u64::from(units))),
            Interval::Week => anchor.checked_add_days(Days::new(u64::from(units) * 7)),
            Interval::Month => anchor.checked_add_months(Months::new(units)),
            Interval::Year => anchor.checked_add_months(Months::new(units.checked_mul(12)?)),
        }
    }

    /// The start of period `n` (0-based): the anchor, or the end of period `n - 1`.
    pub fn period_start(self, anchor: DateTime<Utc>, n: u32) -> Option<DateTime<Utc>> {
        match n.checked_sub(1) {
            None => Some(anchor),
            Some(prev) => self.period_end(anchor, prev),
        }
    }
}

/// The share of `amount_minor` that the `remaining` part of a `total`-long period is worth,
/// rounded half away from zero to a whole minor unit, computed in 128-bit integers (exact for
/// any amount and any period in microseconds). `remaining` is clamped to `0 ..= total`; a period
/// of no length is worth nothing.
pub fn prorate(amount_minor: i64, remaining_us: i64, total_us: i64) -> i64 {
    if total_us <= 0 {
        return 0;
    }
    let remaining = i128::from(remaining_us.clamp(0, total_us));
    let total = i128::from(total_us);
    let scaled = i128::from(amount_minor) * remaining;
    let (q, r) = (scaled / total, scaled % total);
    let rounded = if 2 * r.abs() >= total {
        q + scaled.signum()
    } else {
        q
    };
    // |rounded| <= |amount_minor|: the conversion cannot fail.
    i64::try_from(rounded).unwrap_or(amount_minor)
}

/// What changing plans mid-period costs: a credit for the unused part of the old plan and a
/// charge for the rest of the period on the new one (Stripe's `create_prorations`). Both use
/// the same remaining time, so changing back and forth nets to the rounding of each line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Proration {
    /// The unused time on the old plan, as a negative amount.
    pub credit_minor: i64,
    /// The rest of the period on the new plan.
    pub charge_minor: i64,
}

impl Proration {
    /// The proration of moving from `old_minor` to `new_minor` per period with `remaining_us` of
    /// a `total_us` period left.
    pub fn of(old_minor: i64, new_minor: i64, remaining_us: i64, total_us: i64) -> Self {
        Proration {
            credit_minor: -prorate(old_minor, remaining_us, total_us),
            charge_minor: prorate(new_minor, remaining_us, total_us),
        }
    }

    /// What the two lines come to (negative: the customer is owed money, carried as credit).
    pub fn net_minor(self) -> i64 {
        self.credit_minor + self.charge_minor
    }
}

/// Days between failed charges before the next attempt (Stripe's smart-retry default is
/// similar); after the last, the invoice is uncollectible and the subscription cancelled.
pub const DEFAULT_DUNNING_DAYS: [u64; 3] = [1, 3, 7];

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use chrono::TimeZone;

    use super::*;

    #[test]
    fn currencies_are_checked_and_carry_their_exponent() {
        assert_eq!("EUR".parse::<Currency>().unwrap().exponent(), 2);
        assert_eq!("JPY".parse::<Currency>().unwrap().exponent(), 0);
        assert_eq!("KWD".parse::<Currency>().unwrap().exponent(), 3);
        assert!("eur".parse::<Currency>().is_err());
        assert!("ABC".parse::<Currency>().is_err());
        assert!("XAU".parse::<Currency>().is_err());
        let codes: Vec<_> = currency_codes().collect();
        assert!(codes.contains(&"EUR") && codes.contains(&"JPY") && !codes.contains(&"XAU"));
        assert!(codes.iter().all(|c| c.parse::<Currency>().is_ok()));
    }

    #[test]
    fn amounts_format_in_their_currency() {
        let eur: Currency = "EUR".parse().unwrap();
        assert_eq!(format_amount(1250, eur), "12.50 EUR");
        assert_eq!(format_amount(-5, eur), "-0.05 EUR");
        assert_eq!(format_amount(1200, "JPY".parse().unwrap()), "1200 JPY");
        assert_eq!(format_amount(1001, "KWD".parse().unwrap()), "1.001 KWD");
    }

    #[test]
    fn monthly_periods_count_from_the_anchor() {
        let anchor = Utc.with_ymd_and_hms(2026, 1, 31, 12, 0, 0).unwrap();
        let monthly = Cadence {
            interval: Interval::Month,
            count: 1,
        };
        let ends: Vec<_> = (0..3)
            .map(|n| {
                monthly
                    .period_end(anchor, n)
                    .unwrap()
                    .date_naive()
                    .to_string()
            })
            .collect();
        assert_eq!(ends, ["2026-02-28", "2026-03-31", "2026-04-30"]);
        assert_eq!(monthly.period_start(anchor, 0), Some(anchor));
        assert_eq!(
            monthly.period_start(anchor, 2),
            monthly.period_end(anchor, 1)
        );
        let fortnight = Cadence {
            interval: Interval::Week,
            count: 2,
        };
        assert_eq!(
            fortnight.period_end(anchor, 0).unwrap() - anchor,
            chrono::Duration::days(14)
        );
        let yearly = Cadence {
            interval: Interval::Year,
            count: 1,
        };
        let leap = Utc.with_ymd_and_hms(2028, 2, 29, 0, 0, 0).unwrap();
        assert_eq!(
            yearly.period_end(leap, 0).unwrap().date_naive().to_string(),
            "2029-02-28"
        );
        assert_eq!(monthly.period_end(anchor, u32::MAX), None);
    }

    #[test]
    fn proration_is_exact_in_minor_units() {
        // A third of 10.00 is 3.33; two thirds 6.67 (half away from zero).
        assert_eq!(prorate(1000, 1, 3), 333);
        assert_eq!(prorate(1000, 2, 3), 667);
        assert_eq!(prorate(1000, 1, 2), 500);
        assert_eq!(prorate(1, 1, 2), 1);
        assert_eq!(prorate(-1, 1, 2), -1);
        assert_eq!(prorate(1000, 5, 3), 1000);
        assert_eq!(prorate(1000, -5, 3), 0);
        assert_eq!(prorate(1000, 1, 0), 0);
        // Large amounts and microsecond periods do not overflow.
        let year_us = 366 * 86_400 * 1_000_000_i64;
        assert_eq!(prorate(i64::MAX, year_us, year_us), i64::MAX);
        assert_eq!(prorate(9_999_999_999, year_us / 2, year_us), 5_000_000_000);
        // Upgrading 10.00 → 30.00 with half the period left: credit 5.00, charge 15.00.
        let p = Proration::of(1000, 3000, 50, 100);
        assert_eq!(
            (p.credit_minor, p.charge_minor, p.net_minor()),
            (-500, 1500, 1000)
        );
        // Downgrading nets negative: a credit for the next invoice.
        assert_eq!(Proration::of(3000, 1000, 50, 100).net_minor(), -1000);
    }
}
