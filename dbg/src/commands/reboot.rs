//! `dbg reboot [--power-off]`: a clean reboot or power-off of the node (services
//! stopped, the data disk unmounted), the same path as ctrl-alt-delete.

use std::io::Write;

use cairn_api::v1::ShutdownRequest;

use super::Context;
use crate::DbgError;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Power the node off instead of rebooting it.
    #[arg(long)]
    pub power_off: bool,
}

pub async fn run(args: Args, ctx: Context, out: &mut dyn Write) -> Result<(), DbgError> {
    let mut client = ctx.client.clone();
    let request = ShutdownRequest {
        power_off: args.power_off,
    };
    ctx.call("Shutdown", ctx.call_timeout, client.shutdown(request))
        .await?;
    let what = if args.power_off {
        "power-off"
    } else {
        "reboot"
    };
    writeln!(out, "{what} requested from {}", ctx.endpoint).map_err(DbgError::Output)
}
