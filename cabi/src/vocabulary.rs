//! The library's own closed sets of numbers, each declared once: run
//! statuses and admission modes. `#[vocabulary]` gives each its Rust
//! conversions; the header's `BLAZEN_RUN_STATUS_*`/`BLAZEN_ADMISSION_*`
//! constants and the gem's tables are written from these declarations.
//! (Error kinds are declared with the error value, in `rt`; event types and
//! subkinds with the embedded control plane, which sends them.)

use blazen_cabi_macros::vocabulary;
use blazen_core::distributed::RunStatus;

/// A run's status (`blazen_run_state_snapshot_status`).
#[vocabulary(constants = "BLAZEN_RUN_STATUS_", ruby = "RUN_STATUSES")]
pub enum RunStatusCode {
    /// Waiting for a worker.
    Pending = 0,
    /// Assigned to a worker and running.
    Running = 1,
    /// Finished with an output.
    Completed = 2,
    /// Finished with an error.
    Failed = 3,
    /// Cancelled before it finished.
    Cancelled = 4,
}

impl From<RunStatus> for RunStatusCode {
    fn from(s: RunStatus) -> Self {
        match s {
            RunStatus::Pending => RunStatusCode::Pending,
            RunStatus::Running => RunStatusCode::Running,
            RunStatus::Completed => RunStatusCode::Completed,
            RunStatus::Failed => RunStatusCode::Failed,
            RunStatus::Cancelled => RunStatusCode::Cancelled,
        }
    }
}

/// How a worker admits runs: `admission_mode` of `worker_new`, and the
/// `mode` of the `admission` option.
#[vocabulary(constants = "BLAZEN_ADMISSION_", ruby = "ADMISSION_MODES")]
pub enum AdmissionModeCode {
    /// At most `admission_param` (`max_in_flight`) runs at once.
    Fixed = 0,
    /// Runs while their declared VRAM fits `admission_param` (`max_vram_mb`) MiB.
    VramBudget = 1,
    /// The worker takes what it is offered and refuses runs itself.
    Reactive = 2,
}
