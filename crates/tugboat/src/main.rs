//! The `tugboat` binary: every component behind one subcommand each.

mod agent;
mod server;
mod sim;

use clap::{Parser, Subcommand};

// The control plane allocates many small, short-lived objects (JSON values, requests) on every
// thread; glibc's allocator spent a fifth of the server's time under load. Built without its
// transparent-huge-page advice (feature `no_thp`): purging and refaulting 2 MiB pages, each
// zeroed by the kernel, cost the server a quarter of its CPU during a scheduling burst.
// The `mimalloc` crate asks it for an aligned block every time, a slower path than plain malloc
// for the thousand-odd small allocations each pod costs the server; plain malloc's blocks are
// aligned enough for nearly every type.
#[global_allocator]
static ALLOCATOR: Allocator = Allocator;

struct Allocator;

/// What mimalloc's plain malloc aligns every block to: its size classes are whole machine words
/// (classes of 24 or 40 bytes are not 16-aligned).
const MALLOC_ALIGNMENT: usize = std::mem::size_of::<usize>();

fn plain_malloc_suffices(align: usize) -> bool {
    align <= MALLOC_ALIGNMENT
}

// SAFETY: every block comes from mimalloc, aligned as `plain_malloc_suffices` says plain malloc
// aligns (or from its aligned functions), and goes back to it through `mi_free`/`mi_realloc*`.
unsafe impl std::alloc::GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        use libmimalloc_sys::{mi_malloc, mi_malloc_aligned};
        if plain_malloc_suffices(layout.align()) {
            mi_malloc(layout.size()).cast()
        } else {
            mi_malloc_aligned(layout.size(), layout.align()).cast()
        }
    }

    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        use libmimalloc_sys::{mi_zalloc, mi_zalloc_aligned};
        if plain_malloc_suffices(layout.align()) {
            mi_zalloc(layout.size()).cast()
        } else {
            mi_zalloc_aligned(layout.size(), layout.align()).cast()
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, _layout: std::alloc::Layout) {
        libmimalloc_sys::mi_free(ptr.cast());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        use libmimalloc_sys::{mi_realloc, mi_realloc_aligned};
        if plain_malloc_suffices(layout.align()) {
            mi_realloc(ptr.cast(), new_size).cast()
        } else {
            mi_realloc_aligned(ptr.cast(), new_size, layout.align()).cast()
        }
    }
}

#[derive(Parser)]
#[command(name = "tugboat", version, about = "A Kubernetes-compatible container orchestrator in one binary")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the control plane: the API server and its store.
    Server(server::ServerArgs),
    /// Run a node agent: the pods bound to this node, in containers.
    Agent(agent::AgentArgs),
    /// Run the scheduler alone (`tugboat server` runs one too).
    Scheduler(ComponentArgs),
    /// Run the controllers alone (`tugboat server` runs them too).
    ControllerManager(ControllerManagerArgs),
    /// Simulate nodes (for scale tests): Nodes and Leases kept alive, bound pods made Running
    /// without containers.
    Sim(sim::SimArgs),
}

/// A control-plane component that reaches the API server with a kubeconfig.
#[derive(clap::Args)]
struct ComponentArgs {
    /// Credentials and address of the API server.
    #[arg(long)]
    kubeconfig: std::path::PathBuf,
}

#[derive(clap::Args)]
struct ControllerManagerArgs {
    #[command(flatten)]
    component: ComponentArgs,
    #[command(flatten)]
    controllers: server::ControllerArgs,
}

impl ComponentArgs {
    fn client(&self) -> anyhow::Result<tugboat_client::Client> {
        tugboat_client::Client::from_kubeconfig(&self.kubeconfig).map_err(|e| anyhow::anyhow!("cannot use the kubeconfig {}: {e}", self.kubeconfig.display()))
    }
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TUGBOAT_LOG").unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = match cli.command {
        // A fleet of simulated nodes shares the machine with the cluster it loads: one thread
        // does its work without waking a second one for every response.
        Command::Sim(_) => tokio::runtime::Builder::new_current_thread().enable_all().build()?,
        _ => tokio::runtime::Builder::new_multi_thread().enable_all().build()?,
    };
    match cli.command {
        Command::Server(args) => runtime.block_on(server::run(args)),
        Command::Agent(args) => runtime.block_on(agent::run(args)),
        Command::Scheduler(args) => runtime.block_on(async move {
            tugboat_scheduler::run(args.client()?, server::shutdown_signal()).await;
            Ok(())
        }),
        Command::Sim(args) => runtime.block_on(sim::run(args)),
        Command::ControllerManager(args) => runtime.block_on(async move {
            let client = args.component.client()?;
            tugboat_controllers::run_all(client, args.controllers.options(), server::shutdown_signal()).await;
            Ok(())
        }),
    }
}
