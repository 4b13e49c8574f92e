//! The app tier's deterministic names.

pub(crate) fn log_group(stack: &str) -> String {
    format!("/mbstack/{stack}/metabase")
}

pub(crate) fn cluster(stack: &str) -> String {
    format!("{stack}-cluster")
}

pub(crate) const SERVICE: &str = "metabase";
pub(crate) const CONTAINER: &str = "metabase";

pub(crate) fn family(stack: &str) -> String {
    format!("{stack}-metabase")
}

pub(crate) fn execution_role(stack: &str) -> String {
    format!("{stack}-metabase-execution")
}

pub(crate) fn task_role(stack: &str) -> String {
    format!("{stack}-metabase-task")
}

pub(crate) fn encryption_key_secret(stack: &str) -> String {
    format!("mbstack/{stack}/metabase-encryption-key")
}

/// Application Auto Scaling's id of the service.
pub(crate) fn scalable_resource(stack: &str) -> String {
    format!("service/{}/{SERVICE}", cluster(stack))
}
