//! The IAM permissions a resource module needs, declared next to the calls that
//! need them (`pub(crate) const PERMISSIONS` in each module). `mbstack deploy`
//! builds every function's policy from these declarations and nothing else, so
//! the code and its policy cannot drift; a test compares each module's calls
//! (the `service:Action` names its errors carry) with its declarations, and the
//! IAM evaluation test checks every call a run makes against the deployed policy.
//!
//! Patterns may use `${Partition}` (the region's partition), `${Tier}` (the
//! calling tier), `${Prefix}` (the deployment's name prefix) and
//! `${RoleBoundaryArn}` (the permissions boundary of the roles the app creates).

/// Which resources a permission names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resources {
    /// `*`, for one of the reasons AWS leaves: a read-only call that takes no
    /// resource ARN, or an action the Service Authorization Reference lists with
    /// no resource type (e.g. `ecs:DeregisterTaskDefinition`), or a create whose
    /// new resource has no ARN yet (then always with a condition).
    Any,
    /// These ARN patterns.
    Arns(&'static [&'static str]),
}

/// The condition of a permission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    None,
    /// The request tags the new resource `mbstack:tier=<tier>` (tag-on-create).
    RequestTier,
    /// The resource already carries `mbstack:tier=<tier>`.
    ResourceTier,
    /// A condition block as JSON text (placeholders allowed).
    Json(&'static str),
}

/// One statement of a function's policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Permission {
    pub sid: &'static str,
    pub actions: &'static [&'static str],
    pub resources: Resources,
    pub condition: Condition,
}

impl Permission {
    /// Read-only calls that take no resource ARN.
    pub const fn read(sid: &'static str, actions: &'static [&'static str]) -> Self {
        Self {
            sid,
            actions,
            resources: Resources::Any,
            condition: Condition::None,
        }
    }

    /// Creates, allowed only when the request tags the tier.
    pub const fn create_tagged(sid: &'static str, actions: &'static [&'static str]) -> Self {
        Self {
            sid,
            actions,
            resources: Resources::Any,
            condition: Condition::RequestTier,
        }
    }

    /// Changes and deletes of what carries the tier's tag.
    pub const fn own_tagged(sid: &'static str, actions: &'static [&'static str]) -> Self {
        Self {
            sid,
            actions,
            resources: Resources::Any,
            condition: Condition::ResourceTier,
        }
    }

    /// Named resources.
    pub const fn on(
        sid: &'static str,
        actions: &'static [&'static str],
        arns: &'static [&'static str],
    ) -> Self {
        Self {
            sid,
            actions,
            resources: Resources::Arns(arns),
            condition: Condition::None,
        }
    }

    /// The same with a condition block.
    pub const fn when(self, condition: &'static str) -> Self {
        Self {
            condition: Condition::Json(condition),
            ..self
        }
    }
}

/// Whether `action` is one a read-only permission may carry.
pub fn is_read_only(action: &str) -> bool {
    let op = action.split(':').nth(1).unwrap_or("");
    ["Describe", "List", "Get"]
        .iter()
        .any(|p| op.starts_with(p))
}

/// Every action of `permissions`.
pub fn actions(permissions: &[Permission]) -> Vec<&'static str> {
    let mut out: Vec<&'static str> = permissions
        .iter()
        .flat_map(|p| p.actions.iter().copied())
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// The `service:Action` names a source file's calls carry in their errors
/// (`aws_error("ec2:CreateVpc", e)`, `found("rds:DescribeDBInstances", …)`):
/// what the file calls.
pub fn called_actions(source: &str) -> Vec<String> {
    let mut out: Vec<String> = ["aws_error(\"", "found(\""]
        .iter()
        .flat_map(|marker| source.split(marker).skip(1))
        .filter_map(|rest| rest.split('"').next())
        .filter(|a| a.contains(':') && !a.contains(' '))
        .map(str::to_string)
        .collect();
    out.sort();
    out.dedup();
    out
}

/// A tier's permissions, from the files that make its calls. In the tier's
/// `lib.rs`, after its own `OWN_PERMISSIONS`:
/// `mbstack_core::tier_permissions!(instance, subnet_group);` defines
/// `pub fn permissions()` (what the deployed policy is built from) and a test
/// that every call of every listed file (and of `lib.rs`) is declared in that
/// file, and that no file of `src/` makes calls without being listed.
#[macro_export]
macro_rules! tier_permissions {
    ($($module:ident),* $(,)?) => {
        /// Every IAM permission this tier's calls need, as the files that make the
        /// calls declare them: the deployed policy is built from this and nothing else.
        pub fn permissions() -> Vec<$crate::iam::Permission> {
            [OWN_PERMISSIONS, $($module::PERMISSIONS),*].concat()
        }

        #[cfg(test)]
        mod declared_permissions {
            #[test]
            fn every_call_of_every_file_is_declared_in_that_file() {
                let files: &[(&str, &str, &[$crate::iam::Permission])] = &[
                    ("lib.rs", include_str!("lib.rs"), super::OWN_PERMISSIONS),
                    $((
                        concat!(stringify!($module), ".rs"),
                        include_str!(concat!(stringify!($module), ".rs")),
                        super::$module::PERMISSIONS,
                    )),*
                ];
                let undeclared = $crate::iam::undeclared_calls(files);
                assert!(undeclared.is_empty(), "calls not declared in their file: {undeclared:?}");
                let listed: Vec<&str> = files.iter().map(|f| f.0).collect();
                let root = $crate::source_dir(env!("CARGO_MANIFEST_DIR"));
                let unlisted = $crate::iam::unlisted_callers(&root.join("src"), &listed);
                assert!(
                    unlisted.is_empty(),
                    "files that make AWS calls but are not in tier_permissions!: {unlisted:?}"
                );
            }
        }
    };
}

/// The `.rs` files of `dir` that make AWS calls (see [`called_actions`]) but are
/// not among `listed`: their permissions would be missing from the policy.
pub fn unlisted_callers(dir: &std::path::Path, listed: &[&str]) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return vec![format!("{} cannot be read", dir.display())];
    };
    let mut out: Vec<String> = entries
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|name| name.ends_with(".rs") && !listed.contains(&name.as_str()))
        .filter(|name| {
            std::fs::read_to_string(dir.join(name))
                .map(|text| !called_actions(&text).is_empty())
                .unwrap_or(true)
        })
        .collect();
    out.sort();
    out
}

/// For each (file, its source, its declared permissions): the actions the file
/// calls but does not declare, as "file: action" (empty when code and policy agree).
pub fn undeclared_calls(files: &[(&str, &str, &[Permission])]) -> Vec<String> {
    let mut out = Vec::new();
    for (file, source, declared) in files {
        let declared = actions(declared);
        for a in called_actions(source) {
            if !declared.contains(&a.as_str()) {
                out.push(format!("{file}: {a}"));
            }
        }
    }
    out
}
