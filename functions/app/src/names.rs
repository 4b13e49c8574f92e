//! The app tier's deterministic names (public: the tests look for leftovers by them).

pub fn log_group(stack: &str) -> String {
    format!("/mbstack/{stack}/metabase")
}

pub fn cluster(stack: &str) -> String {
    format!("{stack}-cluster")
}

pub const SERVICE: &str = "metabase";
pub const CONTAINER: &str = "metabase";

pub fn family(stack: &str) -> String {
    format!("{stack}-metabase")
}

pub fn execution_role(stack: &str) -> String {
    format!("{stack}-metabase-execution")
}

pub fn task_role(stack: &str) -> String {
    format!("{stack}-metabase-task")
}

pub use mbstack_core::naming::encryption_key_secret;

/// Application Auto Scaling's id of the service.
pub fn scalable_resource(stack: &str) -> String {
    format!("service/{}/{SERVICE}", cluster(stack))
}
