//! What the engine tells its [`Reporter`] while building: steps starting,
//! cached or done, output lines of running steps, and messages.

/// The state of a step, for progress output.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum StepStatus {
    Running,
    Cached,
    Done { seconds: f64 },
}

/// Something worth telling the user while building.
#[derive(Debug, Clone, Copy)]
pub enum Event<'a> {
    Step {
        stage: &'a str,
        index: usize,
        total: usize,
        text: &'a str,
        status: StepStatus,
    },
    Message(&'a str),
    /// A line of output of a running step (stages run side by side, so the
    /// line names its step as [`Event::Step`] does).
    Output {
        stage: &'a str,
        index: usize,
        line: &'a str,
    },
}

/// Receives progress (the cli prints it).
pub trait Reporter: Sync {
    fn report(&self, event: Event<'_>);
}

/// Where a step is, for progress events: its stage's name and its number
/// (from 1) in the stage.
#[derive(Debug, Clone, Copy)]
pub struct At<'a> {
    pub stage: &'a str,
    pub index: usize,
}
