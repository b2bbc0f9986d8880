//! Skills as an agent or a rule step names them: a list of skill ids (level 1 each), or an
//! object of skill ids to levels from 1 to 10.
//!
//! The store gets the skills re-serialized from this type, so it writes back the form the
//! platform sent: a list stays a list, an object stays an object.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::de::{MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{json, Value};

use super::parse::at;
use super::parse::MAX_IDS;
use super::{Id, Rejection};

/// The levels a skill may have.
pub const LEVELS: std::ops::RangeInclusive<u8> = 1..=10;

/// What a level outside [`LEVELS`] is told.
const LEVEL_RANGE: &str = "levels are whole numbers from 1 to 10";

/// Skills: a list of ids, each at level 1, or ids with their levels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Skills {
    /// `["spanish", "billing"]`: each at level 1.
    List(Vec<Id>),
    /// `{"spanish": 7, "billing": 3}`: levels from 1 to 10.
    Levels(BTreeMap<Id, u8>),
}

impl Skills {
    /// How many skills are named.
    pub fn len(&self) -> usize {
        match self {
            Skills::List(ids) => ids.len(),
            Skills::Levels(levels) => levels.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Each skill with its level (1 for a list).
    pub fn levels(&self) -> BTreeMap<&Id, u8> {
        match self {
            Skills::List(ids) => ids.iter().map(|id| (id, 1)).collect(),
            Skills::Levels(levels) => levels.iter().map(|(id, level)| (id, *level)).collect(),
        }
    }

    /// What serde cannot check; `field` names the skills in errors (`agents[3].skills`).
    pub fn check(&self, field: &str) -> Result<(), Rejection> {
        if self.len() > MAX_IDS {
            return Err(Rejection::invalid(field, "at most 256 entries"));
        }
        if let Skills::Levels(levels) = self {
            for (skill, level) in levels {
                if !LEVELS.contains(level) {
                    return Err(Rejection::invalid(at(field, skill.as_str()), LEVEL_RANGE));
                }
            }
        }
        Ok(())
    }
}

/// A list or an object, told apart by the JSON itself; written by hand rather than with
/// `#[serde(untagged)]` so that a bad id or level is named by its own path
/// (`agents[0].skills.spanish`) with its own reason, not as "did not match any variant".
impl<'de> Deserialize<'de> for Skills {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Skills, D::Error> {
        deserializer.deserialize_any(SkillsVisitor)
    }
}

struct SkillsVisitor;

impl<'de> Visitor<'de> for SkillsVisitor {
    type Value = Skills;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of skill ids or an object of skill ids to levels from 1 to 10")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Skills, A::Error> {
        let mut ids = Vec::new();
        while let Some(id) = seq.next_element::<Id>()? {
            ids.push(id);
        }
        Ok(Skills::List(ids))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Skills, A::Error> {
        let mut levels = BTreeMap::new();
        while let Some(skill) = map.next_key::<Id>()? {
            let Level(level) = map.next_value()?;
            levels.insert(skill, level);
        }
        Ok(Skills::Levels(levels))
    }
}

/// One level in an object of skills: a whole number from 1 to 10.
struct Level(u8);

impl<'de> Deserialize<'de> for Level {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Level, D::Error> {
        Value::deserialize(deserializer)?
            .as_u64()
            .and_then(|n| u8::try_from(n).ok())
            .filter(|n| LEVELS.contains(n))
            .map(Level)
            .ok_or_else(|| serde::de::Error::custom(LEVEL_RANGE))
    }
}

impl JsonSchema for Skills {
    fn schema_name() -> Cow<'static, str> {
        "Skills".into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        json_schema!({ "anyOf": forms(generator) })
    }
}

/// `#[schemars(schema_with)]` for an optional `skills` field: a list, an object of levels, or
/// `null`, side by side (schemars would nest the two forms in an `anyOf` of their own).
pub fn schema_or_null(generator: &mut SchemaGenerator) -> Schema {
    let mut forms = forms(generator);
    forms.push(json!({"type": "null"}));
    json_schema!({ "anyOf": forms })
}

/// The two forms skills may take.
fn forms(generator: &mut SchemaGenerator) -> Vec<Value> {
    let id = Id::json_schema(generator).to_value();
    let name = json!({
        "pattern": id["pattern"],
        "minLength": id["minLength"],
        "maxLength": id["maxLength"],
    });
    vec![
        json!({
            "description": "Skill ids, each at level 1.",
            "type": "array",
            "items": id,
            "maxItems": MAX_IDS,
        }),
        json!({
            "description": "Skill ids to levels from 1 to 10.",
            "type": "object",
            "propertyNames": name,
            "additionalProperties": {
                "type": "integer",
                "minimum": LEVELS.start(),
                "maximum": LEVELS.end(),
            },
            "maxProperties": MAX_IDS,
        }),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_and_an_object_write_back_as_they_came() {
        for given in [
            json!(["es", "billing"]),
            json!({"es": 7, "billing": 1}),
            json!([]),
        ] {
            let skills: Skills = serde_json::from_value(given.clone()).unwrap();
            assert_eq!(serde_json::to_value(&skills).unwrap(), given);
        }
        let list: Skills = serde_json::from_value(json!(["es"])).unwrap();
        let object: Skills = serde_json::from_value(json!({"es": 1})).unwrap();
        assert!(matches!(list, Skills::List(_)));
        assert!(matches!(object, Skills::Levels(_)));
        assert_eq!(list.levels(), object.levels());
    }

    #[test]
    fn levels_are_whole_numbers_from_1_to_10() {
        for bad in [
            json!(0),
            json!(11),
            json!(300),
            json!(-1),
            json!(2.5),
            json!("7"),
        ] {
            let error = serde_json::from_value::<Skills>(json!({ "es": bad })).unwrap_err();
            assert!(error.to_string().contains(LEVEL_RANGE), "{error}");
        }
        let mut levels = BTreeMap::new();
        levels.insert(Id::parse("es").unwrap(), 0);
        let error = Skills::Levels(levels).check("skills").unwrap_err();
        assert_eq!(
            error.to_string(),
            format!("invalid field `skills.es`: {LEVEL_RANGE}")
        );
    }
}
