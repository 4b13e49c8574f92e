//! What the tier's unit tests share: a client that is never called (a
//! kind's `diff` is pure) and a run.

/// A client that is never called.
pub(crate) fn ecs() -> aws_sdk_ecs::Client {
    mbstack_core::offline_client!(aws_sdk_ecs)
}

pub(crate) fn run() -> mbstack_core::Run {
    mbstack_core::Run::new("run-1", mbstack_core::Scope::Stack)
}
