//! `docs/operations.md` kept true where a tool can tell: its Prometheus
//! alert rules load in `promtool` (where it is installed), and the
//! commands it shows exist.

use std::process::Command;

use crate::support::{describe, repo_root};

/// The fenced blocks of `lang` in the operations guide.
fn blocks(lang: &str) -> Vec<String> {
    let text = std::fs::read_to_string(repo_root().join("docs/operations.md")).unwrap();
    let fence = format!("```{lang}\n");
    text.split(&fence).skip(1).map(|rest| rest.split("```").next().unwrap().to_owned()).collect()
}

#[test]
fn the_alert_rules_load_in_promtool() {
    let rules = blocks("yaml").into_iter().find(|block| block.starts_with("groups:")).expect("an alert rules block");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("wasmcron.rules.yml");
    std::fs::write(&file, rules).unwrap();
    let output = match Command::new("promtool").arg("check").arg("rules").arg(&file).output() {
        Ok(output) => output,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("note: promtool is not installed here; the alert rules were not checked");
            return;
        }
        Err(error) => panic!("running promtool: {error}"),
    };
    assert!(output.status.success(), "promtool check rules: {}", describe(&output));
    assert!(crate::support::text(&output.stdout).contains("SUCCESS: 3 rules found"), "{}", describe(&output));
}

#[test]
fn the_commands_it_shows_exist() {
    let help = crate::support::wasmcron().arg("--help").output().unwrap();
    let help = crate::support::text(&help.stdout);
    // Shell lines, a console's prompts, a unit's ExecStart=.
    let sh = blocks("sh").into_iter().flat_map(|b| b.lines().map(str::to_owned).collect::<Vec<_>>());
    let console = blocks("console")
        .into_iter()
        .flat_map(|b| b.lines().filter_map(|line| line.strip_prefix("$ ").map(str::to_owned)).collect::<Vec<_>>());
    let ini = blocks("ini")
        .into_iter()
        .flat_map(|b| b.lines().filter(|line| line.starts_with("ExecStart=")).map(str::to_owned).collect::<Vec<_>>());
    let mut shown = Vec::new();
    for line in sh.chain(console).chain(ini) {
        let words: Vec<&str> = line.split('#').next().unwrap().split_whitespace().collect();
        for pair in words.windows(2) {
            let is_wasmcron = pair[0].rsplit(['/', '=']).next() == Some("wasmcron");
            if is_wasmcron && pair[1].chars().all(|c| c.is_ascii_lowercase()) {
                shown.push(pair[1].to_owned());
            }
        }
    }
    assert!(shown.iter().any(|command| command == "backup"), "{shown:?}");
    for command in &shown {
        assert!(
            help.contains(&format!("  {command} ")),
            "the guide shows `wasmcron {command}`, which is no command:\n{help}"
        );
    }
}

/// Retention as the guide describes it, on a short `--prune-every`: a job
/// firing every second keeps its newest `--keep-runs` runs, the newest
/// among them.
#[test]
fn history_is_pruned_to_keep_runs_every_prune_interval() {
    use wasmcron::record::RunStatus;

    let sandbox = crate::support::Sandbox::new();
    sandbox.add_fixture("hello.wat");
    sandbox.declare("hello", "schedule = \"@every 1s\"");
    let host = crate::daemon::Host::start(&sandbox, &["--keep-runs", "3", "--prune-every", "2s"]);
    let runs = || crate::support::all_runs(&sandbox);
    crate::support::wait_for("ten runs made", std::time::Duration::from_secs(60), || {
        runs().last().is_some_and(|run| run.id >= 10)
    });
    crate::support::wait_for("a prune", std::time::Duration::from_secs(10), || runs().len() <= 6);
    host.stop();
    let kept = runs();
    // Pruned down to 3; the fires since the last prune are kept as well.
    assert!(kept.len() <= 6, "{} runs kept", kept.len());
    let newest = kept.last().unwrap().id;
    assert!(newest >= 10);
    assert!(
        kept.iter().all(|run| run.id > newest - 7 && run.status == RunStatus::Succeeded),
        "the newest are kept: {kept:?}"
    );

    let refused = sandbox.wasmcron(&["run", "--prune-every", "10ms"]).output().unwrap();
    assert_eq!(refused.status.code(), Some(2));
    let stderr = crate::support::text(&refused.stderr);
    assert!(stderr.contains("too often to prune history; give 1s or more"), "{stderr}");
}
