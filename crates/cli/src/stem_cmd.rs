//! `convlens stem`: first-layer perturbation analysis (placeholder, being written).

/// Arguments of `convlens stem`.
#[derive(clap::Args, Clone, Debug)]
pub struct StemArgs {
    /// Model files.
    pub models: Vec<std::path::PathBuf>,
}

/// Runs `convlens stem`; returns the number of failed models.
pub fn run(_args: StemArgs) -> anyhow::Result<usize> {
    anyhow::bail!("convlens stem is not implemented yet")
}
