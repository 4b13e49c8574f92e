//! Cost per run and per month, from list prices (us-east-1, on-demand). The
//! prices are constants with their date: this machine cannot fetch AWS's price
//! list, so re-check them at <https://aws.amazon.com/pricing/> before quoting.

use std::time::Duration;

use crate::median;

/// When the prices below were read off AWS's public price pages.
pub const PRICES_AS_OF: &str = "2025-06 (AWS public price pages, us-east-1; not re-checked since)";

/// Step Functions Standard: per state transition.
const SFN_TRANSITION: f64 = 0.000_025;
/// Lambda arm64: per GB-second, and per request.
const LAMBDA_ARM_GB_S: f64 = 0.000_013_333_4;
const LAMBDA_REQUEST: f64 = 0.000_000_2;
/// What one AWS API call takes from a Lambda in the same region (the emulator
/// answers in about a millisecond): a conservative 150 ms for the estimate.
const REAL_CALL_SECONDS: f64 = 0.150;

/// Hourly and monthly list prices of the default stack's resources.
const HOURS_PER_MONTH: f64 = 730.0;
const NAT_HOUR: f64 = 0.045;
const PUBLIC_IPV4_HOUR: f64 = 0.005;
const ALB_HOUR: f64 = 0.0225;
const ALB_LCU_HOUR: f64 = 0.008;
const RDS_T4G_MICRO_HOUR: f64 = 0.016;
const GP3_GB_MONTH: f64 = 0.115;
const FARGATE_VCPU_HOUR: f64 = 0.040_48;
const FARGATE_GB_HOUR: f64 = 0.004_445;
/// Fargate on Graviton (`app.cpuArchitecture: ARM64`): about 20 % less.
const FARGATE_ARM_VCPU_HOUR: f64 = 0.032_38;
const FARGATE_ARM_GB_HOUR: f64 = 0.003_56;
/// The NAT instance (`network.nat: instance`): t4g.nano on demand, and its
/// 8 GiB gp3 root volume (EBS's price, not RDS's).
const T4G_NANO_HOUR: f64 = 0.004_2;
const EBS_GP3_GB_MONTH: f64 = 0.08;
const SECRET_MONTH: f64 = 0.40;

pub fn today() -> String {
    let stamp = mbstack_core::work::utc_stamp_now();
    let day = stamp.split('-').next().unwrap_or("");
    match (day.get(0..4), day.get(4..6), day.get(6..8)) {
        (Some(y), Some(m), Some(d)) => format!("{y}-{m}-{d}"),
        _ => stamp,
    }
}

fn memory_mb(function: &str) -> f64 {
    mbstack_core::naming::TIERS
        .iter()
        .find(|t| t.binary == function)
        .map(|t| f64::from(t.memory_mib))
        .unwrap_or(256.0)
}

/// Per step: (state transitions, invocations, AWS calls), one list per round.
pub type Measured = (usize, Vec<(String, Duration)>, u64);

struct StepCost {
    transitions: f64,
    invocations: f64,
    gb_s: f64,
    sfn: f64,
    lambda: f64,
    lambda_real: f64,
}

fn step_cost(m: &Measured) -> StepCost {
    let (transitions, invocations, calls) = m;
    // Lambda bills each invocation rounded up to the millisecond.
    let gb_s: f64 = invocations
        .iter()
        .map(|(f, d)| memory_mb(f) / 1024.0 * (d.as_millis() as f64 + 1.0) / 1000.0)
        .sum();
    let requests = invocations.len() as f64;
    let lambda = gb_s * LAMBDA_ARM_GB_S + requests * LAMBDA_REQUEST;
    // Every AWS call taking REAL_CALL_SECONDS in a 256 MB function.
    let real_gb_s = gb_s + *calls as f64 * REAL_CALL_SECONDS * 0.25;
    StepCost {
        transitions: *transitions as f64,
        invocations: requests,
        gb_s,
        sfn: *transitions as f64 * SFN_TRANSITION,
        lambda,
        lambda_real: real_gb_s * LAMBDA_ARM_GB_S + requests * LAMBDA_REQUEST,
    }
}

/// Prints the cost tables; `rounds[r][i]` is step `steps[i]` of round `r`.
pub fn print(rounds: &[Vec<Measured>], steps: &[&str]) {
    println!("\n## Cost per run (Step Functions Standard + Lambda arm64; prices {PRICES_AS_OF})\n");
    println!("| run | transitions | invocations | GB-s (local) | Step Functions | Lambda (local durations) | total | total, every AWS call 150 ms |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    let mut per_step = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        let costs: Vec<StepCost> = rounds
            .iter()
            .filter_map(|r| r.get(i))
            .map(step_cost)
            .collect();
        let med = |f: fn(&StepCost) -> f64| median(costs.iter().map(f).collect());
        let total = med(|c| c.sfn + c.lambda);
        let real = med(|c| c.sfn + c.lambda_real);
        per_step.push((step.to_string(), total, real));
        println!(
            "| {step} | {:.0} | {:.0} | {:.3} | ${:.5} | ${:.6} | ${:.5} | ${:.5} |",
            med(|c| c.transitions),
            med(|c| c.invocations),
            med(|c| c.gb_s),
            med(|c| c.sfn),
            med(|c| c.lambda),
            total,
            real
        );
    }
    let of = |name: &str| {
        per_step
            .iter()
            .find(|(s, _, _)| s == name)
            .map(|(_, _, real)| *real)
            .unwrap_or(0.0)
    };

    let items = items(Config::default());
    // Business hours: Mon–Fri 08:00–20:00 → 12 h × 22 days.
    let running_share = RUNNING_SHARE;
    println!("\n## Monthly cost of the default stack (list prices {PRICES_AS_OF})\n");
    println!("| item | always on | paused outside Mon–Fri 08–20 | … and `network.pauseNat` |");
    println!("|---|---:|---:|---:|");
    let (mut a, mut p, mut pn) = (0.0, 0.0, 0.0);
    for Item {
        name: item,
        monthly,
        pauses,
        nat,
    } in &items
    {
        let paused = if *pauses {
            monthly * running_share
        } else {
            *monthly
        };
        let paused_nat = if *pauses || *nat {
            monthly * running_share
        } else {
            *monthly
        };
        a += monthly;
        p += paused;
        pn += paused_nat;
        println!("| {item} | ${monthly:.2} | ${paused:.2} | ${paused_nat:.2} |");
    }
    // The runs themselves: a nightly repair (no-op apply) every day; pause and
    // resume on 22 working days.
    let runs_always = 30.0 * of("no-op apply");
    let runs_paused = runs_always + 22.0 * (of("pause") + of("resume"));
    println!(
        "| mbstack runs (nightly repair; + pause/resume on 22 days) | ${runs_always:.2} | ${runs_paused:.2} | ${runs_paused:.2} |"
    );
    a += runs_always;
    p += runs_paused;
    pn += runs_paused;
    println!("| **total** | **${a:.2}** | **${p:.2}** | **${pn:.2}** |");
    println!(
        "\nRunning share under the schedule: {:.0} % of the month's {HOURS_PER_MONTH} h. Usage-based charges (NAT data processing, log ingestion, ALB LCUs beyond one) are not included.",
        running_share * 100.0
    );
}

/// Business hours: Mon–Fri 08:00–20:00 → 12 h × 22 days of the month.
const RUNNING_SHARE: f64 = 12.0 * 22.0 / HOURS_PER_MONTH;

/// What a stack is made of, for its monthly cost.
#[derive(Debug, Clone, Copy, Default)]
pub struct Config {
    /// `network.nat: instance` (else one NAT gateway).
    pub nat_instance: bool,
    /// `app.cpuArchitecture: ARM64` (else X86_64).
    pub arm64: bool,
}

/// One line of a monthly bill.
#[derive(Debug, Clone)]
pub struct Item {
    pub name: &'static str,
    /// Monthly, always on.
    pub monthly: f64,
    /// Charged only while running (paused: stopped).
    pub pauses: bool,
    /// Charged only while running with `network.pauseNat` too.
    pub nat: bool,
}

fn item(name: &'static str, monthly: f64, pauses: bool, nat: bool) -> Item {
    Item {
        name,
        monthly,
        pauses,
        nat,
    }
}

/// The monthly bill of a stack: 2 AZs, one NAT (one public IPv4), an ALB in 2
/// AZs (two public IPv4s, one LCU assumed), db.t4g.micro with 20 GiB gp3, one
/// Fargate task of 1 vCPU / 2 GiB, two secrets (the key, RDS's password).
pub fn items(c: Config) -> Vec<Item> {
    let always = |h: f64| h * HOURS_PER_MONTH;
    let fargate_hour = if c.arm64 {
        FARGATE_ARM_VCPU_HOUR + 2.0 * FARGATE_ARM_GB_HOUR
    } else {
        FARGATE_VCPU_HOUR + 2.0 * FARGATE_GB_HOUR
    };
    let mut out = Vec::new();
    if c.nat_instance {
        // Stopped while paused (whatever pauseNat says); its volume stays.
        out.push(item(
            "NAT instance t4g.nano (hours)",
            always(T4G_NANO_HOUR),
            true,
            false,
        ));
        out.push(item(
            "NAT instance gp3 root 8 GiB",
            8.0 * EBS_GP3_GB_MONTH,
            false,
            false,
        ));
    } else {
        out.push(item(
            "NAT gateway (hours; data processing extra)",
            always(NAT_HOUR),
            false,
            true,
        ));
    }
    out.extend([
        item(
            "public IPv4 ×3 (NAT EIP, ALB in 2 AZs)",
            always(3.0 * PUBLIC_IPV4_HOUR),
            false,
            false,
        ),
        item(
            "ALB (hours + 1 LCU)",
            always(ALB_HOUR + ALB_LCU_HOUR),
            false,
            false,
        ),
        item(
            "RDS db.t4g.micro PostgreSQL, single-AZ",
            always(RDS_T4G_MICRO_HOUR),
            true,
            false,
        ),
        item("RDS gp3 storage 20 GiB", 20.0 * GP3_GB_MONTH, false, false),
        item(
            if c.arm64 {
                "Fargate ARM64 1 vCPU / 2 GiB, 1 task"
            } else {
                "Fargate 1 vCPU / 2 GiB, 1 task"
            },
            always(fargate_hour),
            true,
            false,
        ),
        item("Secrets Manager ×2", 2.0 * SECRET_MONTH, false, false),
    ]);
    out
}

/// A bill's monthly total: always on, and paused outside business hours.
pub fn totals(items: &[Item]) -> (f64, f64) {
    items.iter().fold((0.0, 0.0), |(a, p), i| {
        let paused = if i.pauses {
            i.monthly * RUNNING_SHARE
        } else {
            i.monthly
        };
        (a + i.monthly, p + paused)
    })
}

/// The four configurations side by side (list prices only, no measurement;
/// the runs' own cost, cents a month, is in the default stack's table).
pub fn print_configurations() {
    let configs = [
        ("NAT gateway, X86_64 (the default)", Config::default()),
        (
            "NAT gateway, ARM64",
            Config {
                nat_instance: false,
                arm64: true,
            },
        ),
        (
            "NAT instance, X86_64",
            Config {
                nat_instance: true,
                arm64: false,
            },
        ),
        (
            "NAT instance, ARM64 (the cheapest)",
            Config {
                nat_instance: true,
                arm64: true,
            },
        ),
    ];
    println!("\n## Monthly cost by configuration (list prices {PRICES_AS_OF})\n");
    println!("| `network.nat`, `app.cpuArchitecture` | always on | paused outside Mon–Fri 08–20 |");
    println!("|---|---:|---:|");
    for (name, c) in configs {
        let (a, p) = totals(&items(c));
        println!("| {name} | ${a:.2} | ${p:.2} |");
    }
    println!("\nPaused, a NAT instance is stopped (its volume and address still charged); a NAT gateway stays unless `network.pauseNat`. Usage-based charges (NAT gateway data processing at $0.045/GB, which a NAT instance does not have; EC2 data transfer out, the same for both) and mbstack's own runs (cents a month: the table above) are not included.");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 34's target: the cheapest secure configuration (NAT instance,
    /// ARM64) at most $85 a month always on, at list prices; and each choice
    /// cheaper than the default on its own.
    #[test]
    fn a_nat_instance_on_arm64_costs_at_most_85_a_month_always_on() {
        let total = |nat_instance, arm64| {
            totals(&items(Config {
                nat_instance,
                arm64,
            }))
            .0
        };
        let default = total(false, false);
        let cheapest = total(true, true);
        assert!(cheapest <= 85.0, "{cheapest:.2}");
        assert!(total(true, false) < default && total(false, true) < default);
        // What the NAT instance saves is the gateway's hours less its own.
        let saved = default - total(true, false);
        let expected = (NAT_HOUR - T4G_NANO_HOUR) * HOURS_PER_MONTH - 8.0 * EBS_GP3_GB_MONTH;
        assert!((saved - expected).abs() < 1e-9, "{saved} vs {expected}");
    }
}
