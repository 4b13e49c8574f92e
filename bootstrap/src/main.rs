//! mbstack: the command-line interface.

use mbstack_cli::{audit, deploy, local, run};

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use mbstack_core::StackSpec;

#[derive(Parser)]
#[command(
    name = "mbstack",
    version,
    about = "Metabase on AWS, provisioned by small Rust Lambdas and a Step Functions state machine"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    target: run::Target,
}

#[derive(Subcommand)]
enum Command {
    /// Build the Lambdas (cargo-lambda, arm64) and create or update mbstack in an account
    #[command(
        after_help = "Examples:\n  mbstack deploy --region eu-west-1\n  mbstack deploy --zips target/lambda          # already built\n  mbstack deploy --skip-functions              # functions shipped with `cargo lambda deploy`"
    )]
    Deploy {
        /// Prefix of every name (functions, roles, state machine)
        #[arg(long, default_value = "mbstack")]
        prefix: String,
        /// Prebuilt zips (cargo-lambda's layout: DIR/<binary>/bootstrap.zip); else they are built
        #[arg(long)]
        zips: Option<PathBuf>,
        /// Only wire the state machine to functions that already exist
        #[arg(long)]
        skip_functions: bool,
        /// Print the IAM policy the person or pipeline running deploy needs, and stop
        #[arg(long)]
        print_deployer_policy: bool,
    },
    /// Remove mbstack from the account (refuses while stacks exist, unless --force)
    #[command(after_help = "Example:\n  mbstack undeploy --region eu-west-1")]
    Undeploy {
        /// The prefix the deployment was made with
        #[arg(long, default_value = "mbstack")]
        prefix: String,
        /// Remove it even while stacks exist (they stay, without their provisioner)
        #[arg(long)]
        force: bool,
    },
    /// Schedules: nightly repair, and pause / resume outside business hours
    #[command(subcommand)]
    Schedule(ScheduleCommand),
    /// Create or update a stack (apply), and follow the run
    #[command(
        after_help = "Examples:\n  mbstack up --stack analytics\n  mbstack up -f analytics.json --set app.image=metabase/metabase:v0.58.7\n  mbstack up --stack analytics --endpoint-url http://127.0.0.1:4566   # the local emulator"
    )]
    #[command(visible_alias = "apply")]
    Up(run::Input),
    /// Show what `up` would change, without changing anything
    #[command(after_help = "Example:\n  mbstack plan --stack analytics --set app.desiredCount=2")]
    Plan(run::Input),
    /// Destroy a stack (asks first; the database is kept as a final snapshot)
    #[command(after_help = "Example:\n  mbstack down --stack analytics --yes")]
    #[command(visible_alias = "destroy")]
    Down {
        #[command(flatten)]
        input: run::Input,
        /// Do not ask for confirmation
        #[arg(short = 'y', long)]
        yes: bool,
    },
    /// Pause a stack: the service at 0 tasks and the database stopped
    #[command(after_help = "Example:\n  mbstack pause --stack analytics")]
    Pause(run::Input),
    /// Resume a paused stack
    #[command(after_help = "Example:\n  mbstack resume --stack analytics")]
    Resume(run::Input),
    /// Check a stack's security promises against what exists
    #[command(after_help = "Example:\n  mbstack audit --stack analytics")]
    Audit {
        /// The stack to audit
        #[arg(long)]
        stack: String,
        /// Machine-readable output (the findings as JSON)
        #[arg(long)]
        json: bool,
    },
    /// Every stack's last run (or one stack's)
    #[command(
        after_help = "Example:\n  mbstack status\n  mbstack status --stack analytics --json"
    )]
    Status {
        /// One stack: its last run and its resources, read live
        #[arg(long)]
        stack: Option<String>,
        /// Machine-readable output
        #[arg(long)]
        json: bool,
    },
    /// Run mbstack against the local emulator (no AWS account needed)
    #[command(subcommand)]
    Local(LocalCommand),
    /// Check a stack spec and list every problem in it, without touching AWS
    #[command(
        after_help = "Example:\n  mbstack validate -f analytics.json\n  echo '{\"stack\": \"analytics\"}' | mbstack validate -f -"
    )]
    Validate {
        /// The spec file (JSON); `-` reads standard input
        #[arg(short, long)]
        file: PathBuf,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    #[command(
        after_help = "Example:\n  mbstack completions bash > ~/.local/share/bash-completion/completions/mbstack"
    )]
    Completions {
        /// The shell
        shell: clap_complete::Shell,
    },
}

#[derive(Subcommand)]
enum ScheduleCommand {
    /// Create or update a stack's schedules (EventBridge Scheduler cron expressions)
    #[command(
        after_help = "Example:\n  mbstack schedule set --stack analytics --repair 'cron(0 3 * * ? *)' \\\n    --pause 'cron(0 19 ? * MON-FRI *)' --resume 'cron(0 7 ? * MON-FRI *)' --timezone Europe/Berlin"
    )]
    Set {
        /// The stack the schedules run for
        #[arg(long)]
        stack: String,
        /// When to re-apply the stored spec (drift repair), e.g. 'cron(0 3 * * ? *)'
        #[arg(long)]
        repair: Option<String>,
        /// When to pause, e.g. 'cron(0 19 ? * MON-FRI *)'
        #[arg(long)]
        pause: Option<String>,
        /// When to resume, e.g. 'cron(0 7 ? * MON-FRI *)'
        #[arg(long)]
        resume: Option<String>,
        /// The IANA time zone of the expressions, e.g. Europe/Berlin
        #[arg(long, default_value = "UTC")]
        timezone: String,
        /// The deployment's prefix (the schedule group's name)
        #[arg(long, default_value = "mbstack")]
        prefix: String,
    },
    /// List the schedules
    #[command(after_help = "Example:\n  mbstack schedule list")]
    List {
        /// The deployment's prefix (the schedule group's name)
        #[arg(long, default_value = "mbstack")]
        prefix: String,
    },
    /// Remove a stack's schedules
    #[command(after_help = "Example:\n  mbstack schedule remove --stack analytics")]
    Remove {
        /// The stack whose schedules to remove
        #[arg(long)]
        stack: String,
        /// The deployment's prefix (the schedule group's name)
        #[arg(long, default_value = "mbstack")]
        prefix: String,
    },
}

#[derive(Subcommand)]
enum LocalCommand {
    /// Start the emulator, apply a stack, show it, plan (expect no change), destroy it and check nothing is left
    #[command(
        after_help = "Example:\n  mbstack local demo\n  mbstack local demo --stack analytics -f analytics.json"
    )]
    Demo {
        /// Stack name (overrides the file's)
        #[arg(long, default_value = "demo")]
        stack: String,
        /// A spec file (JSON) to start from instead of the defaults
        #[arg(short, long)]
        file: Option<PathBuf>,
    },
    /// Keep an emulator running on a fixed port until Ctrl-C, for other tools to use
    #[command(
        after_help = "Example:\n  mbstack local up --port 4566\n  AWS_ENDPOINT_URL=http://127.0.0.1:4566 aws ec2 describe-vpcs"
    )]
    Up {
        /// The port to listen on (127.0.0.1)
        #[arg(long, default_value_t = 4566)]
        port: u16,
    },
}

fn read_spec(file: &PathBuf) -> anyhow::Result<String> {
    use std::io::Read;
    let mut text = String::new();
    if file.as_os_str() == "-" {
        std::io::stdin().read_to_string(&mut text)?;
    } else {
        text = std::fs::read_to_string(file)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
    }
    Ok(text)
}

/// Parses a spec file, printing every problem with its field path.
fn load_spec(file: &PathBuf) -> anyhow::Result<StackSpec> {
    match StackSpec::from_json_str(&read_spec(file)?) {
        Ok(spec) => Ok(spec),
        Err(e) => {
            eprintln!("{}: {} problem(s):", file.display(), e.0.len());
            for p in &e.0 {
                eprintln!("  {p}");
            }
            anyhow::bail!("the spec is invalid; nothing was created")
        }
    }
}

async fn deploy_cmd(
    target: &run::Target,
    prefix: String,
    zips: Option<PathBuf>,
    skip_functions: bool,
) -> anyhow::Result<()> {
    let zips = match (zips, skip_functions) {
        (Some(z), _) => z,
        (None, true) => PathBuf::new(),
        (None, false) => {
            println!("Building the Lambdas (cargo lambda build --release --arm64; minutes on a small machine)…");
            deploy::build(&std::env::current_dir()?).map_err(anyhow::Error::msg)?
        }
    };
    let aws = mbstack_core::Aws::new(run::config(target).await?);
    let report = deploy::deploy(
        &aws,
        &deploy::Options {
            skip_functions,
            ..deploy::Options::new(prefix, zips)
        },
    )
    .await?;
    for w in &report.waits {
        println!("  waited: {w}");
    }
    for c in &report.changes {
        println!("  changed {c}");
    }
    if report.changes.is_empty() {
        println!(
            "Nothing to change ({} resources up to date).",
            report.unchanged.len()
        );
    }
    println!("State machine: {}", report.state_machine_arn);
    Ok(())
}

async fn schedule_cmd(target: &run::Target, cmd: ScheduleCommand) -> anyhow::Result<()> {
    let aws = mbstack_core::Aws::new(run::config(target).await?);
    match cmd {
        ScheduleCommand::Set {
            stack,
            repair,
            pause,
            resume,
            timezone,
            prefix,
        } => {
            let wanted: Vec<deploy::Schedule> =
                [("repair", repair), ("pause", pause), ("resume", resume)]
                    .into_iter()
                    .filter_map(|(k, e)| {
                        e.map(|expression| deploy::Schedule {
                            kind: k.into(),
                            expression,
                        })
                    })
                    .collect();
            if wanted.is_empty() {
                anyhow::bail!("give at least one of --repair, --pause, --resume (cron(...) or rate(...) expressions)");
            }
            let mut problems: Vec<String> = wanted
                .iter()
                .filter_map(|w| {
                    mbstack_cli::schedule::check_expression(&w.expression)
                        .err()
                        .map(|e| format!("--{}: {e}", w.kind))
                })
                .collect();
            if let Err(e) = mbstack_cli::schedule::check_timezone(&timezone) {
                problems.push(format!("--timezone: {e}"));
            }
            if !problems.is_empty() {
                anyhow::bail!("{}", problems.join("\n"));
            }
            run::require_stack(&aws.config, &stack).await?;
            for d in deploy::set_schedules(&aws, &prefix, &stack, &wanted, &timezone).await? {
                println!("  {d}");
            }
        }
        ScheduleCommand::List { prefix } => {
            for (n, e, tz, input) in deploy::list_schedules(&aws, &prefix).await? {
                println!("{n:<32} {e:<28} {tz:<16} {input}");
            }
        }
        ScheduleCommand::Remove { stack, prefix } => {
            let mut done = Vec::new();
            deploy::remove_schedules(&aws, &prefix, Some(&stack), &mut done).await?;
            println!("{} removed", done.len());
        }
    }
    Ok(())
}

/// A run that ended in failure is an error exit (its cause was printed).
fn finish_run(r: anyhow::Result<bool>) -> anyhow::Result<()> {
    match r {
        Ok(true) => Ok(()),
        Ok(false) => Err(anyhow::anyhow!("the run did not succeed")),
        Err(e) => Err(e),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let target = cli.target.clone();
    let result = match cli.command {
        Command::Up(i) => finish_run(run::run(&target, &i, "apply").await),
        Command::Plan(i) => finish_run(run::run(&target, &i, "plan").await),
        Command::Pause(i) => finish_run(run::run(&target, &i, "pause").await),
        Command::Resume(i) => finish_run(run::run(&target, &i, "resume").await),
        Command::Down { input, yes } => {
            let stack = input.stack_name().unwrap_or_default();
            let exists = match run::config(&target).await {
                Ok(cfg) => run::require_stack(&cfg, &stack).await,
                Err(e) => Err(e),
            };
            match exists.and_then(|()| run::confirm_down(&stack, yes)) {
                Ok(true) => finish_run(run::run(&target, &input, "destroy").await),
                Ok(false) => Err(anyhow::anyhow!("not confirmed: nothing was destroyed")),
                Err(e) => Err(e),
            }
        }
        Command::Status { stack, json } => run::status(&target, stack.as_deref(), json).await,
        Command::Audit { stack, json } => {
            let cfg = match run::config(&target).await {
                Ok(c) => c,
                Err(e) => return fail(e),
            };
            if let Err(e) = run::require_stack(&cfg, &stack).await {
                return fail(e);
            }
            let aws = mbstack_core::Aws::new(cfg);
            match audit::audit(&aws, &stack, Some(&target.state_machine)).await {
                Ok(findings) if json => {
                    println!("{}", serde_json::to_string(&findings).unwrap_or_default());
                    if findings.is_empty() {
                        Ok(())
                    } else {
                        Err(anyhow::anyhow!("{} finding(s)", findings.len()))
                    }
                }
                Ok(findings) if findings.is_empty() => {
                    println!("{stack}: clean (public IPs, database, ingress, private routes, IAM, state machine logs)");
                    Ok(())
                }
                Ok(findings) => {
                    for f in &findings {
                        println!("  {:<18} {:<60} {}", f.rule, f.resource, f.detail);
                    }
                    Err(anyhow::anyhow!("{} finding(s)", findings.len()))
                }
                Err(e) => Err(e.into()),
            }
        }
        Command::Deploy {
            prefix,
            print_deployer_policy: true,
            ..
        } => {
            let region = target.region.clone().unwrap_or_else(|| "us-east-1".into());
            let ctx = mbstack_cli::policies::Context {
                partition: mbstack_core::naming::partition_of_region(&region).to_string(),
                prefix,
                account: String::new(),
            };
            println!(
                "{}",
                serde_json::to_string_pretty(&mbstack_cli::policies::deployer_policy(&ctx))
                    .unwrap_or_default()
            );
            Ok(())
        }
        Command::Deploy {
            prefix,
            zips,
            skip_functions,
            ..
        } => deploy_cmd(&target, prefix, zips, skip_functions).await,
        Command::Undeploy { prefix, force } => {
            let aws = match run::config(&target).await {
                Ok(c) => mbstack_core::Aws::new(c),
                Err(e) => return fail(e),
            };
            deploy::undeploy(&aws, &prefix, force)
                .await
                .map_err(anyhow::Error::from)
                .map(|done| {
                    for d in &done {
                        println!("  removed {d}");
                    }
                    println!("{} removed", done.len());
                })
        }
        Command::Schedule(cmd) => schedule_cmd(&target, cmd).await,
        Command::Validate { file } => load_spec(&file).map(|spec| {
            println!("{}: valid; with defaults filled in:", file.display());
            println!(
                "{}",
                serde_json::to_string_pretty(&spec).unwrap_or_default()
            );
        }),
        Command::Local(LocalCommand::Demo { stack, file }) => {
            let spec = match &file {
                Some(f) => load_spec(f).map(|mut s| {
                    s.stack = stack.clone();
                    s
                }),
                None => Ok(StackSpec::new(stack)),
            };
            match spec {
                Ok(spec) => local::demo(spec).await,
                Err(e) => Err(e),
            }
        }
        Command::Local(LocalCommand::Up { port }) => local::up(port).await,
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "mbstack",
                &mut std::io::stdout(),
            );
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}

/// One line on standard error, and the failure exit code.
fn fail(e: anyhow::Error) -> ExitCode {
    eprintln!("mbstack: {e:#}");
    ExitCode::FAILURE
}
