//! What a user agreed to be told, and how: each message has a [`Category`] and goes out over a
//! [`Channel`]; a user opts out of pairs of them. Transactional categories (billing receipts,
//! security notices) go out whatever the preferences say.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// How a message reaches a user.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// An email (`notification.email`).
    Email,
    /// A notification in the dashboard's inbox (`notification.in_app`).
    InApp,
}

/// What a message is about.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// Receipts, failed payments, cancellations: transactional, always sent.
    Billing,
    /// Sign-ins, keys, account changes: transactional, always sent.
    Security,
    /// Operational alerts (an endpoint disabled, a queue stuck).
    Alerts,
    /// Welcome messages, news, tips.
    Product,
}

impl Category {
    /// Every category.
    pub const ALL: [Category; 4] = [
        Category::Billing,
        Category::Security,
        Category::Alerts,
        Category::Product,
    ];

    /// Whether messages of this category are sent whatever the preferences say.
    pub fn transactional(self) -> bool {
        matches!(self, Category::Billing | Category::Security)
    }

    /// Its name (`billing`).
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Billing => "billing",
            Category::Security => "security",
            Category::Alerts => "alerts",
            Category::Product => "product",
        }
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Category {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Category::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| format!("unknown category `{s}` (billing, security, alerts, product)"))
    }
}

/// One opt-out: no messages of `category` over `channel`.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(deny_unknown_fields)]
pub struct OptOut {
    /// The channel.
    pub channel: Channel,
    /// The category.
    pub category: Category,
}

/// A user's notification preferences: what they opted out of (nothing, by default).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Preferences {
    /// Channel and category pairs not to send.
    #[serde(default)]
    pub opt_outs: BTreeSet<OptOut>,
}

impl Preferences {
    /// Whether a message of `category` may go to this user over `channel`.
    pub fn allows(&self, channel: Channel, category: Category) -> bool {
        category.transactional() || !self.opt_outs.contains(&OptOut { channel, category })
    }

    /// The first opt-out that would silence a transactional category (not allowed).
    pub fn transactional_opt_out(&self) -> Option<OptOut> {
        self.opt_outs
            .iter()
            .copied()
            .find(|o| o.category.transactional())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transactional_categories_cannot_be_silenced() {
        let prefs = Preferences {
            opt_outs: [
                OptOut {
                    channel: Channel::Email,
                    category: Category::Billing,
                },
                OptOut {
                    channel: Channel::Email,
                    category: Category::Product,
                },
            ]
            .into(),
        };
        assert!(prefs.allows(Channel::Email, Category::Billing));
        assert!(!prefs.allows(Channel::Email, Category::Product));
        assert!(prefs.allows(Channel::InApp, Category::Product));
        assert_eq!(
            prefs.transactional_opt_out().map(|o| o.category),
            Some(Category::Billing)
        );
        assert!(Preferences::default().allows(Channel::InApp, Category::Alerts));
        assert_eq!("alerts".parse::<Category>(), Ok(Category::Alerts));
        assert!("x".parse::<Category>().is_err());
    }
}
