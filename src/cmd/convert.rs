//! `lazypull convert SRC DST`.

/// Arguments of `lazypull convert`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Source image: a registry reference or `oci:DIR[:TAG]`.
    pub source: String,
    /// Destination image: a registry reference or `oci:DIR[:TAG]`.
    pub destination: String,
}

/// Runs the conversion.
pub fn run(args: Args) -> anyhow::Result<()> {
    anyhow::bail!("convert {} {} is not wired yet", args.source, args.destination)
}
