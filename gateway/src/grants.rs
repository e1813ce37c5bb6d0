//! Room permissions a token carries: the backend decides who may join and
//! publish to which rooms by putting a `rooms` claim in the JWTs it mints.
//!
//! The claim is either a list of patterns (joining and publishing both
//! allowed), or an object `{"join": [...], "publish": [...]}` (a missing
//! list allows nothing). A pattern is a room name, a prefix followed by `*`
//! (`team-*`), or `*` (every room). A token without the claim is allowed
//! everything unless `auth.rooms_claim = "require"`; with
//! `auth.rooms_claim = "ignore"` the claim is not enforced at all.
use serde_json::Value;

/// Most patterns one claim may list (a bigger claim is refused).
pub(crate) const MAX_PATTERNS: usize = 256;

/// One pattern of a `rooms` claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Pattern {
    /// Exactly this room.
    Exact(String),
    /// Every room starting with this (the pattern ended with `*`).
    Prefix(String),
}

impl Pattern {
    fn parse(s: &str) -> Pattern {
        match s.strip_suffix('*') {
            Some(prefix) => Pattern::Prefix(prefix.to_owned()),
            None => Pattern::Exact(s.to_owned()),
        }
    }

    fn matches(&self, room: &str) -> bool {
        match self {
            Pattern::Exact(r) => r == room,
            Pattern::Prefix(p) => room.starts_with(p.as_str()),
        }
    }
}

/// What a token allows.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Grants {
    join: Vec<Pattern>,
    publish: Vec<Pattern>,
}

/// Why a `rooms` claim was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid rooms claim")]
pub struct InvalidGrants;

impl Grants {
    /// Parses a `rooms` claim.
    pub fn from_claim(v: &Value) -> Result<Grants, InvalidGrants> {
        fn list(v: Option<&Value>) -> Result<Vec<Pattern>, InvalidGrants> {
            let Some(v) = v else { return Ok(Vec::new()) };
            let items = v.as_array().ok_or(InvalidGrants)?;
            if items.len() > MAX_PATTERNS {
                return Err(InvalidGrants);
            }
            items
                .iter()
                .map(|i| {
                    i.as_str()
                        .filter(|s| !s.is_empty())
                        .map(Pattern::parse)
                        .ok_or(InvalidGrants)
                })
                .collect()
        }
        match v {
            Value::Array(_) => {
                let both = list(Some(v))?;
                Ok(Grants {
                    join: both.clone(),
                    publish: both,
                })
            }
            Value::Object(o) => {
                if o.keys().any(|k| k != "join" && k != "publish") {
                    return Err(InvalidGrants);
                }
                Ok(Grants {
                    join: list(o.get("join"))?,
                    publish: list(o.get("publish"))?,
                })
            }
            _ => Err(InvalidGrants),
        }
    }

    /// The claim these grants were parsed from, as an object
    /// (`from_claim` reads it back to the same grants).
    pub fn to_claim(&self) -> Value {
        let list = |ps: &[Pattern]| -> Vec<Value> {
            ps.iter()
                .map(|p| match p {
                    Pattern::Exact(r) => Value::from(r.as_str()),
                    Pattern::Prefix(r) => Value::from(format!("{r}*")),
                })
                .collect()
        };
        serde_json::json!({ "join": list(&self.join), "publish": list(&self.publish) })
    }

    /// May the holder join `room`?
    pub fn may_join(&self, room: &str) -> bool {
        self.join.iter().any(|p| p.matches(room))
    }

    /// May the holder send to `room`?
    pub fn may_publish(&self, room: &str) -> bool {
        self.publish.iter().any(|p| p.matches(room))
    }
}

/// How `rooms` claims are enforced (`auth.rooms_claim`).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    serde::Deserialize,
    serde::Serialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum RoomsClaim {
    /// Enforced when a token carries one; a token without it may use any room.
    #[default]
    Enforce,
    /// A token without the claim may join and publish to no room.
    Require,
    /// Not enforced.
    Ignore,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lists_objects_and_patterns() {
        let g = Grants::from_claim(&json!(["lobby", "team-*"])).unwrap();
        assert!(g.may_join("lobby") && g.may_publish("team-a") && g.may_join("team-"));
        assert!(!g.may_join("lobby2") && !g.may_publish("tea"));
        let g = Grants::from_claim(&json!({"join": ["*"], "publish": ["news"]})).unwrap();
        assert!(g.may_join("anything") && g.may_publish("news") && !g.may_publish("other"));
        let g = Grants::from_claim(&json!({"join": ["a"]})).unwrap();
        assert!(
            g.may_join("a") && !g.may_publish("a"),
            "a missing list allows nothing"
        );
    }

    #[test]
    fn malformed_claims_are_refused() {
        for bad in [
            json!("lobby"),
            json!([1]),
            json!([""]),
            json!({"join": "a"}),
            json!({"read": ["a"]}),
            json!(vec!["r"; MAX_PATTERNS + 1]),
        ] {
            assert_eq!(Grants::from_claim(&bad), Err(InvalidGrants), "{bad}");
        }
    }
}
