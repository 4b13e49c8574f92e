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
    /// text for people; json for scripts (one JSON document on standard output)
    #[arg(long, global = true, value_enum, default_value_t = run::Output::Text)]
    output: run::Output,
}

#[derive(Subcommand)]
enum Command {
    /// Build the Lambdas (cargo-lambda, arm64) and create or update mbstack in an account
    #[command(
        after_help = "Examples:\n  mbstack deploy --region eu-west-1 --notify ops@example.com\n  mbstack deploy --zips target/lambda          # already built\n  mbstack deploy --skip-functions              # functions shipped with `cargo lambda deploy`"
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
        /// Publish every failed run (scheduled ones too): an email address (subscribed to
        /// the deployment's own topic), an SNS topic ARN, or `off`; kept when not given
        #[arg(long, value_name = "EMAIL|TOPIC_ARN|off")]
        notify: Option<String>,
        /// Route 53 zones stacks' domains may be in (the only ones the load balancer function
        /// may write records in): IDs separated by commas, `any` or `none`; kept when not given
        #[arg(long, value_name = "IDS")]
        hosted_zones: Option<String>,
        /// Print the IAM policy the person or pipeline running deploy needs, and stop
        #[arg(long)]
        print_deployer_policy: bool,
        #[command(flatten)]
        target: run::Target,
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
        #[command(flatten)]
        target: run::Target,
    },
    /// Schedules: nightly repair, and pause / resume outside business hours
    #[command(subcommand)]
    Schedule(ScheduleCommand),
    /// Create or update a stack (apply), and follow the run
    #[command(
        after_help = "Examples:\n  mbstack up analytics\n  mbstack up -f analytics.json --set app.image=metabase/metabase:v0.58.7\n  mbstack up analytics --restore latest   # back after a down, with its data\n  mbstack up analytics --endpoint-url http://127.0.0.1:4566   # the local emulator\n\nCtrl-C stops following; the run goes on (`mbstack watch analytics` follows it again)."
    )]
    #[command(visible_alias = "apply")]
    Up {
        #[command(flatten)]
        input: run::Input,
        /// Restore the database of a stack that is down from a snapshot: `latest` (its newest final snapshot) or a snapshot's name
        #[arg(long, value_name = "latest|SNAPSHOT", conflicts_with = "fresh")]
        restore: Option<String>,
        /// Start with an empty database even though the stack left a final snapshot
        #[arg(long)]
        fresh: bool,
    },
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
    #[command(
        after_help = "Example:\n  mbstack audit analytics\n  mbstack audit analytics --output json"
    )]
    Audit(run::Named),
    /// Every stack's last run and run in progress (or one stack's, with its resources read live)
    #[command(after_help = "Example:\n  mbstack status\n  mbstack status analytics --output json")]
    Status(run::Named),
    /// Metabase's log lines (CloudWatch), each with its task; --follow keeps reading
    #[command(
        after_help = "Example:\n  mbstack logs analytics --since 1h\n  mbstack logs analytics --follow"
    )]
    Logs {
        #[command(flatten)]
        named: run::Named,
        /// Keep printing new lines until Ctrl-C
        #[arg(long)]
        follow: bool,
        /// How far back to start: a number and a unit (s, m, h, d, w), e.g. 30m, 2h
        #[arg(long, default_value = mbstack_cli::logs::DEFAULT_SINCE)]
        since: String,
    },
    /// Follow the run in progress on a stack (started here, elsewhere or by a schedule)
    #[command(after_help = "Example:\n  mbstack watch analytics")]
    Watch(run::Named),
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
        #[command(flatten)]
        target: run::Target,
    },
    /// List the schedules
    #[command(after_help = "Example:\n  mbstack schedule list")]
    List {
        /// The deployment's prefix (the schedule group's name)
        #[arg(long, default_value = "mbstack")]
        prefix: String,
        #[command(flatten)]
        target: run::Target,
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
        #[command(flatten)]
        target: run::Target,
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

/// What `mbstack deploy` was told.
struct DeployFlags {
    prefix: String,
    zips: Option<PathBuf>,
    skip_functions: bool,
    notify: deploy::Notify,
    zones: deploy::Zones,
}

async fn deploy_cmd(
    target: &run::Target,
    output: run::Output,
    flags: DeployFlags,
) -> anyhow::Result<()> {
    let DeployFlags {
        prefix,
        zips,
        skip_functions,
        notify,
        zones,
    } = flags;
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
            notify,
            hosted_zones: zones,
            ..deploy::Options::new(prefix, zips)
        },
    )
    .await?;
    if output == run::Output::Json {
        println!(
            "{}",
            serde_json::json!({"stateMachineArn": report.state_machine_arn, "changes": report.changes, "waits": report.waits, "unchanged": report.unchanged})
        );
        return Ok(());
    }
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

async fn schedule_cmd(cmd: ScheduleCommand, output: run::Output) -> anyhow::Result<()> {
    let json_out = output == run::Output::Json;
    match cmd {
        ScheduleCommand::Set {
            stack,
            repair,
            pause,
            resume,
            timezone,
            prefix,
            target,
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
            let aws = mbstack_core::Aws::new(run::config(&target).await?);
            run::require_stack(&aws.config, &stack).await?;
            let done = deploy::set_schedules(&aws, &prefix, &stack, &wanted, &timezone).await?;
            if json_out {
                println!("{}", serde_json::json!({"stack": stack, "changes": done}));
            } else {
                for d in done {
                    println!("  {d}");
                }
            }
        }
        ScheduleCommand::List { prefix, target } => {
            let aws = mbstack_core::Aws::new(run::config(&target).await?);
            let all = deploy::list_schedules(&aws, &prefix).await?;
            if json_out {
                let list: Vec<serde_json::Value> = all
                    .iter()
                    .map(|(n, e, tz, input)| serde_json::json!({"name": n, "expression": e, "timezone": tz, "input": input}))
                    .collect();
                println!("{}", serde_json::Value::Array(list));
            } else {
                for (n, e, tz, input) in all {
                    println!("{n:<32} {e:<28} {tz:<16} {input}");
                }
            }
        }
        ScheduleCommand::Remove {
            stack,
            prefix,
            target,
        } => {
            let aws = mbstack_core::Aws::new(run::config(&target).await?);
            let mut done = Vec::new();
            deploy::remove_schedules(&aws, &prefix, Some(&stack), &mut done).await?;
            if json_out {
                println!("{}", serde_json::json!({"stack": stack, "removed": done}));
            } else {
                println!("{} removed", done.len());
            }
        }
    }
    Ok(())
}

async fn audit_cmd(named: &run::Named, output: run::Output) -> anyhow::Result<()> {
    let stack = named.name("audit")?;
    let cfg = run::config(&named.target).await?;
    run::require_stack(&cfg, &stack).await?;
    let aws = mbstack_core::Aws::new(cfg);
    let findings = audit::audit(&aws, &stack, Some(&named.target.state_machine)).await?;
    if output == run::Output::Json {
        println!("{}", serde_json::to_string(&findings).unwrap_or_default());
    } else if findings.is_empty() {
        println!("{stack}: clean (public IPs, database, ingress, private routes, IAM, state machine logs)");
    } else {
        for f in &findings {
            println!("  {:<18} {:<60} {}", f.rule, f.resource, f.detail);
        }
    }
    if findings.is_empty() {
        Ok(())
    } else {
        Err(anyhow::anyhow!("{} finding(s)", findings.len()))
    }
}

async fn down_cmd(input: &run::Input, yes: bool, output: run::Output) -> anyhow::Result<()> {
    // The stack as the run will see it (argument, --stack, or the file's).
    let stack = run::build_input(input, "destroy")?["stack"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let cfg = run::config(&input.named.target).await?;
    run::require_stack(&cfg, &stack).await?;
    if !run::confirm_down(&stack, yes)? {
        anyhow::bail!("not confirmed: nothing was destroyed");
    }
    finish_run(run::run(input, "destroy", output).await)
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
    let output = cli.output;
    let result = match cli.command {
        Command::Up {
            input,
            restore,
            fresh,
        } => finish_run(run::up(&input, restore.as_deref(), fresh, output).await),
        Command::Plan(i) => finish_run(run::run(&i, "plan", output).await),
        Command::Pause(i) => finish_run(run::run(&i, "pause", output).await),
        Command::Resume(i) => finish_run(run::run(&i, "resume", output).await),
        Command::Down { input, yes } => down_cmd(&input, yes, output).await,
        Command::Watch(named) => match named.name("watch") {
            Ok(stack) => finish_run(run::watch(&named.target, &stack, output).await),
            Err(e) => Err(e),
        },
        Command::Logs {
            named,
            follow,
            since,
        } => match (named.name("logs"), mbstack_cli::logs::parse_since(&since)) {
            (Ok(stack), Ok(since)) => {
                mbstack_cli::logs::logs(&named.target, &stack, since, follow, output).await
            }
            (Err(e), _) => Err(e),
            (_, Err(e)) => Err(anyhow::anyhow!(e)),
        },
        Command::Status(named) => {
            run::status(&named.target, named.given().as_deref(), output).await
        }
        Command::Audit(named) => audit_cmd(&named, output).await,
        Command::Deploy {
            prefix,
            print_deployer_policy: true,
            target,
            ..
        } => {
            let region = target.region.clone().unwrap_or_else(|| "us-east-1".into());
            let ctx = mbstack_cli::policies::Context {
                partition: mbstack_core::naming::partition_of_region(&region).to_string(),
                prefix,
                account: String::new(),
                notify_topic_arn: None,
                hosted_zones: None,
                notify_kms_key: None,
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
            notify,
            hosted_zones,
            target,
            ..
        } => {
            let zones = match hosted_zones.as_deref() {
                None => Ok(deploy::Zones::Keep),
                Some(z) => deploy::Zones::parse(z),
            };
            match (deploy::Notify::parse(notify.as_deref()), zones) {
                (Ok(notify), Ok(zones)) => {
                    let opts = DeployFlags {
                        prefix,
                        zips,
                        skip_functions,
                        notify,
                        zones,
                    };
                    deploy_cmd(&target, output, opts).await
                }
                (Err(e), _) | (_, Err(e)) => Err(anyhow::anyhow!(e)),
            }
        }
        Command::Undeploy {
            prefix,
            force,
            target,
        } => match run::config(&target).await {
            Ok(c) => deploy::undeploy(&mbstack_core::Aws::new(c), &prefix, force)
                .await
                .map_err(anyhow::Error::from)
                .map(|done| {
                    if output == run::Output::Json {
                        println!("{}", serde_json::json!({"removed": done}));
                        return;
                    }
                    for d in &done {
                        println!("  removed {d}");
                    }
                    println!("{} removed", done.len());
                }),
            Err(e) => Err(e),
        },
        Command::Schedule(cmd) => schedule_cmd(cmd, output).await,
        Command::Validate { file } => load_spec(&file).map(|spec| {
            let full = serde_json::to_string_pretty(&spec).unwrap_or_default();
            if output == run::Output::Json {
                println!("{full}");
            } else {
                println!("{}: valid; with defaults filled in:", file.display());
                println!("{full}");
            }
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
        // Ctrl-C while following: said already; the shell's code for SIGINT.
        Err(e) if e.is::<run::StoppedFollowing>() => ExitCode::from(130),
        Err(e) => fail(e),
    }
}

/// One line on standard error, and the failure exit code.
fn fail(e: anyhow::Error) -> ExitCode {
    eprintln!("mbstack: {e:#}");
    ExitCode::FAILURE
}
