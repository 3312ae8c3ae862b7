use std::fmt;

use serde::{Deserialize, Serialize};

/// Roles are ordered: a higher role passes every guard of a lower one.
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
    sqlx::Type,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
#[sqlx(type_name = "text", rename_all = "lowercase")]
pub enum Role {
    Member,
    Editor,
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Member, Role::Editor, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Member => "member",
            Role::Editor => "editor",
            Role::Admin => "admin",
        }
    }

    /// Whether this role may open a page guarded by `required`.
    pub fn satisfies(self, required: Role) -> bool {
        self >= required
    }

    pub fn parse(value: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|role| role.as_str() == value)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn higher_roles_pass_lower_guards() {
        assert!(Role::Admin.satisfies(Role::Member));
        assert!(Role::Editor.satisfies(Role::Editor));
        assert!(!Role::Member.satisfies(Role::Editor));
        assert!(!Role::Editor.satisfies(Role::Admin));
    }

    #[test]
    fn names_round_trip() {
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        assert_eq!(Role::parse("root"), None);
    }
}
