//! The dashboard in a real browser: headless Chromium (Debian's
//! `chromium`), driven over WebDriver by Debian's `chromedriver`, against
//! the real `wasmcron run` on loopback. Each step waits by polling the
//! DOM with a generous deadline, never by sleeping; each page it visits
//! is saved as a PNG in `target/dashboard/` for people to look at.

pub mod harness;

use fantoccini::Locator;
use serde_json::{Value, json};

use crate::daemon::Host;
use crate::support::{ECHO, Sandbox, fixture, repo_root};
use harness::{Browser, Driver, api_get, post_with_cookie, ready};

fn declare_jobs(sandbox: &Sandbox) {
    std::fs::write(sandbox.jobs().join("echo.wat"), ECHO).unwrap();
    sandbox.declare("echo", "schedule = \"0 30 2 * * Mon-Fri\"\ntimezone = \"Europe/London\"");
    std::fs::copy(fixture("sleep_hour.wat"), sandbox.jobs().join("sleepy.wat")).unwrap();
    // The bundled heartbeat, as jobs.d declares it, so that runs come by themselves.
    let heartbeat = std::fs::read_to_string(repo_root().join("jobs.d/heartbeat.toml")).unwrap();
    let module = repo_root().join("plugins/heartbeat/heartbeat.wat");
    let heartbeat =
        heartbeat.replace("\"../plugins/heartbeat/heartbeat.wat\"", &format!("{:?}", module.display().to_string()));
    sandbox.declare("heartbeat", &heartbeat);
    sandbox.declare("broken", "schedule = \"61 * * * *\"");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_in_a_browser() {
    let sandbox = Sandbox::new();
    declare_jobs(&sandbox);
    let host = tokio::task::block_in_place(|| Host::start(&sandbox, &[]));
    let (admin, read) = tokio::task::block_in_place(|| ready(&sandbox, &host));
    let driver = tokio::task::block_in_place(|| Driver::start(&sandbox));
    let profile = tempfile::tempdir().unwrap();
    let base = format!("http://{}", host.listen);
    let browser = Browser::open(&driver, &base, profile.path()).await;

    login_refuses_a_wrong_token(&browser).await;
    browser.log_in(&admin).await;
    jobs_are_listed(&browser).await;
    let echo_run = a_trigger_with_a_payload_is_followed_live(&browser).await;
    a_finished_run_is_retried(&browser, echo_run).await;
    a_run_made_elsewhere_appears_live(&browser, &admin).await;
    let sleepy_run = a_long_run_is_cancelled(&browser).await;
    a_delayed_run_is_cancelled(&browser).await;
    runs_are_filtered(&browser, echo_run, sleepy_run).await;
    runs_are_paged_by_cursor(&browser, &admin).await;
    pause_with_a_reason_and_resume(&browser, &admin).await;
    actions_work_from_the_keyboard(&browser).await;
    let host = the_live_stream_reconnects(&browser, &sandbox, host, &admin).await;
    another_sites_page_is_refused(&browser).await;
    the_page_fits_a_phone(&browser).await;

    browser.log_out().await;
    browser.log_in(&read).await;
    the_read_only_token_shows_no_actions(&browser, sleepy_run).await;
    browser.client.clone().close().await.unwrap();
    drop(host);
}

async fn login_refuses_a_wrong_token(browser: &Browser) {
    browser.goto("/").await;
    browser.wait_for("#login-form").await;
    assert!(browser.url().await.ends_with("/login"), "without a session / sends the browser to /login");
    let rules = browser.eval("return document.styleSheets[0].cssRules.length;", vec![]).await;
    assert!(rules.as_u64().unwrap_or(0) > 20, "the style sheet loads under the page's CSP: {rules}");
    browser.screenshot("login").await;
    browser.type_into("#token", "not-this-hosts-token-0123456789").await;
    browser.click("#login").await;
    let error = browser.wait_for("#login-error").await;
    assert!(error.contains("STATE/token"), "the error says where the tokens are: {error}");
    assert!(browser.url().await.ends_with("/login?error=invalid"));
    browser.screenshot("login-refused").await;
}

async fn jobs_are_listed(browser: &Browser) {
    for job in ["echo", "sleepy", "heartbeat", "broken"] {
        browser.wait_for(&format!("tr[data-job={job}]")).await;
    }
    browser.wait_text("#access", |text| text == "admin").await;
    browser.wait_text("#live", |text| text == "Live").await;
    let error = browser.wait_for("tr[data-job=broken] [data-testid=load-error]").await;
    assert!(error.contains("61"), "the load error says what is wrong: {error}");
    let cron = browser.wait_for("tr[data-job=echo] [data-testid=schedule-cron]").await;
    assert_eq!(cron, "0 30 2 * * Mon-Fri");
    let words = browser.wait_for("tr[data-job=echo] [data-testid=schedule-text]").await;
    assert!(words.contains("02:30") || words.contains("2:30"), "the schedule in words: {words}");
    browser.wait_for("tr[data-job=echo] [data-testid=fires-timeline]").await;
    // The heartbeat fires every ten seconds: its strip and chart fill by themselves.
    browser.wait_for("tr[data-job=heartbeat] [data-testid=history-strip] .status-succeeded").await;
    browser.wait_for("tr[data-job=heartbeat] [data-testid=duration-chart] rect").await;
    assert_no_sideways_scroll(browser, "the jobs page at 1280 px").await;
    browser.screenshot("jobs").await;
}

/// Triggered from the job's page with a payload: the run shows up on that
/// page and reaches `succeeded` through the live stream alone (the page
/// is not reloaded: a marker set in it survives), and its page shows the
/// payload echoed on stdout.
async fn a_trigger_with_a_payload_is_followed_live(browser: &Browser) -> i64 {
    browser.click("[data-testid=job-link-echo]").await;
    browser.wait_text("[data-testid=job-name]", |name| name == "echo").await;
    browser.wait_for("[data-testid=next-fires] li").await;
    browser.eval("window.notReloaded = true;", vec![]).await;
    browser.click("#trigger-echo").await;
    browser.wait_for("#trigger-dialog").await;
    browser.type_into("#payload", "{\"order\": 17}").await;
    browser.screenshot("trigger-dialog").await;
    browser.clear_toasts().await;
    browser.click("#trigger-dialog-confirm").await;
    let id = browser.toasted_run().await;
    browser.wait_text(&format!("[data-testid=run-status-{id}]"), |status| status == "succeeded").await;
    assert_eq!(browser.eval("return window.notReloaded === true;", vec![]).await, json!(true), "the page was reloaded");
    browser.screenshot("job").await;

    browser.click("[data-testid=toast-link]").await;
    browser.wait_text("[data-testid=run-status]", |status| status == "succeeded").await;
    let stdout = browser.wait_for("[data-testid=stdout]").await;
    assert_eq!(stdout, "{\"order\": 17}", "the payload was the run's stdin");
    let module = browser.wait_for("[data-testid=module]").await;
    assert_eq!(module.len(), 64, "the module's sha256: {module}");
    browser.wait_for(&format!("tr[data-run=\"{id}\"][aria-current=true]")).await;
    browser.screenshot("run").await;
    id
}

/// Retried from its page: a new run with the same payload, naming the
/// first as its parent.
async fn a_finished_run_is_retried(browser: &Browser, run: i64) {
    browser.goto(&format!("/#/runs/{run}")).await;
    browser.wait_text("[data-testid=run-status]", |status| status == "succeeded").await;
    browser.click("#retry-run").await;
    browser.wait_for("#retry-dialog").await;
    browser.clear_toasts().await;
    browser.click("#retry-dialog-confirm").await;
    let retry = browser.toasted_run().await;
    assert_ne!(retry, run);
    browser.click("[data-testid=toast-link]").await;
    browser.wait_text("h1", |title| title.starts_with(&format!("Run {retry}"))).await;
    browser.wait_text("[data-testid=run-status]", |status| status == "succeeded").await;
    browser.wait_text("[data-testid=parent]", |parent| parent == format!("#{run}")).await;
    let stdout = browser.wait_for("[data-testid=stdout]").await;
    assert_eq!(stdout, "{\"order\": 17}", "a retry runs with the first run's payload");
}

/// A run triggered through the API, not the page, appears on the runs
/// page by itself and changes state there.
async fn a_run_made_elsewhere_appears_live(browser: &Browser, admin: &str) {
    browser.click("#nav-runs").await;
    browser.wait_for("[data-testid=runs-table]").await;
    let id = trigger_elsewhere(&browser.base, admin, "from elsewhere").await;
    browser.wait_text(&format!("[data-testid=run-status-{id}]"), |status| status == "succeeded").await;
    browser.screenshot("runs").await;
}

async fn a_long_run_is_cancelled(browser: &Browser) -> i64 {
    browser.click("#nav-jobs").await;
    browser.click("#trigger-sleepy").await;
    browser.clear_toasts().await;
    browser.click("#trigger-dialog-confirm").await;
    let id = browser.toasted_run().await;
    browser.click("[data-testid=toast-link]").await;
    browser.wait_text("[data-testid=run-status]", |status| status == "running").await;
    browser.click("#cancel-run").await;
    browser.wait_for("#cancel-dialog").await;
    browser.screenshot("cancel-dialog").await;
    browser.click("#cancel-dialog-confirm").await;
    browser.wait_text("[data-testid=run-status]", |status| status == "cancelled").await;
    browser.wait_for("#retry-run").await;
    assert_eq!(browser.count("#cancel-run").await, 0, "an ended run cannot be cancelled");
    browser.screenshot("run-cancelled").await;
    id
}

/// Triggered for later from the dialog: pending until its time, and
/// cancelled before it.
async fn a_delayed_run_is_cancelled(browser: &Browser) {
    browser.click("#nav-jobs").await;
    browser.click("#trigger-echo").await;
    browser.click("#when-in").await;
    browser.type_into("#trigger-in", "1h").await;
    browser.clear_toasts().await;
    browser.click("#trigger-dialog-confirm").await;
    let id = browser.toasted_run().await;
    let toast = browser.wait_for("#toasts .toast").await;
    assert!(toast.contains("scheduled"), "the toast says the run is for later: {toast}");
    browser.click("[data-testid=toast-link]").await;
    browser.wait_text("h1", |title| title.starts_with(&format!("Run {id}"))).await;
    browser.wait_text("[data-testid=run-status]", |status| status == "pending").await;
    browser.click("#cancel-run").await;
    browser.click("#cancel-dialog-confirm").await;
    browser.wait_text("[data-testid=run-status]", |status| status == "cancelled").await;
}

async fn runs_are_filtered(browser: &Browser, echo_run: i64, sleepy_run: i64) {
    browser.click("#nav-runs").await;
    browser.wait_for("#runs-filters").await;
    browser.client.find(Locator::Css("#filter-status")).await.unwrap().select_by_value("cancelled").await.unwrap();
    browser.click("#filter-apply").await;
    browser.wait_for(&format!("[data-testid=run-status-{sleepy_run}]")).await;
    assert!(browser.url().await.contains("status=cancelled"), "the filter is in the address");
    assert_eq!(browser.count(&format!("#run-{echo_run}")).await, 0, "a succeeded run is filtered out");
    let others = browser.count("[data-testid=runs-table] tbody tr:not([data-status=cancelled])").await;
    assert_eq!(others, 0, "only cancelled runs are listed");
    browser.screenshot("runs-filtered").await;
    // A time range: none before 2000; this hour's, of one job.
    browser.goto("/#/runs?until=2000-01-01T00:00:00Z").await;
    browser.wait_for("[data-testid=no-runs]").await;
    let until = browser.attr("#filter-until", "value").await.unwrap_or_default();
    assert!(until.starts_with("2000-01-01") || until.starts_with("1999-12-31"), "the form shows the range: {until:?}");
    let since = (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    browser.goto(&format!("/#/runs?job=sleepy&since={since}")).await;
    browser.wait_for(&format!("[data-testid=run-status-{sleepy_run}]")).await;
    assert_eq!(browser.count("[data-testid=runs-table] tbody tr").await, 1, "one run of sleepy this hour");
    browser.goto(&format!("/#/runs?q={echo_run}")).await;
    browser.wait_for(&format!("[data-testid=run-status-{echo_run}]")).await;
    assert_eq!(browser.count("[data-testid=runs-table] tbody tr").await, 1, "a search by run id finds that run");
}

/// Past a page of runs, "Older" follows the API's cursor to the runs
/// before the page's last, and "Newest" comes back.
async fn runs_are_paged_by_cursor(browser: &Browser, admin: &str) {
    let http = reqwest::Client::new();
    for _ in 0..60 {
        let url = format!("{}/api/v1/jobs/echo/trigger", browser.base);
        let answer = http.post(url).bearer_auth(admin).send().await.unwrap();
        assert_eq!(answer.status().as_u16(), 202);
    }
    browser.goto("/#/runs").await;
    browser.wait_for("#runs-older").await;
    let ids = async || -> Vec<i64> {
        let script = "return [...document.querySelectorAll('[data-testid=runs-table] tbody tr')].map(r => Number(r.dataset.run));";
        let ids = browser.eval(script, vec![]).await;
        ids.as_array().unwrap().iter().map(|id| id.as_i64().unwrap()).collect()
    };
    let first = browser.until("a full first page", async || Some(ids().await).filter(|ids| ids.len() == 50)).await;
    assert!(first.windows(2).all(|pair| pair[0] > pair[1]), "newest first: {first:?}");
    browser.click("#runs-older").await;
    browser.wait_for("#runs-newest").await;
    assert!(browser.url().await.contains("cursor="), "the page's cursor is in the address");
    let older = browser.until("the older page", async || Some(ids().await).filter(|ids| !ids.is_empty())).await;
    assert!(
        older[0] < *first.last().unwrap(),
        "the older page starts before the first ends: {older:?} after {first:?}"
    );
    browser.screenshot("runs-older").await;
    browser.click("#runs-newest").await;
    browser.wait_gone("#runs-newest").await;
}

async fn pause_with_a_reason_and_resume(browser: &Browser, admin: &str) {
    browser.click("#nav-jobs").await;
    browser.click("#pause-echo").await;
    browser.type_into("#pause-reason", "deploy freeze").await;
    browser.click("#pause-dialog-confirm").await;
    let reason = browser.wait_for("tr[data-job=echo] [data-testid=paused-reason]").await;
    assert_eq!(reason, "deploy freeze");
    let echo = api_get(&browser.base, "/api/v1/jobs/echo", admin).await;
    assert_eq!((echo["paused"].clone(), echo["paused_reason"].clone()), (json!(true), json!("deploy freeze")));
    assert_no_sideways_scroll(browser, "the jobs page at 1280 px, full of runs").await;
    browser.screenshot("jobs-paused").await;
    browser.click("#resume-echo").await;
    browser.wait_gone("tr[data-job=echo] [data-testid=paused]").await;
    browser.wait_for("#pause-echo").await;
    let echo = api_get(&browser.base, "/api/v1/jobs/echo", admin).await;
    assert_eq!(echo["paused"], json!(false));
}

/// The host stops: the indicator says the page is disconnected. It
/// starts again on the same address: the page reconnects by itself and
/// follows runs again.
async fn the_live_stream_reconnects(browser: &Browser, sandbox: &Sandbox, host: Host, admin: &str) -> Host {
    browser.click("#nav-runs").await;
    browser.wait_for("[data-testid=runs-table]").await;
    let listen = host.listen.clone();
    tokio::task::block_in_place(|| host.stop());
    browser.wait_text("#live[data-state=down]", |text| text.contains("Disconnected")).await;
    browser.screenshot("disconnected").await;
    let host = tokio::task::block_in_place(|| {
        let host = Host::start(sandbox, &["--listen", &listen]);
        ready(sandbox, &host);
        host
    });
    browser.wait_text("#live[data-state=live]", |text| text == "Live").await;
    let id = trigger_elsewhere(&browser.base, admin, "").await;
    browser.wait_text(&format!("[data-testid=run-status-{id}]"), |status| status == "succeeded").await;
    host
}

/// The browser's own session cookie is refused for a change that another
/// site's page asks for, and taken from this one.
async fn another_sites_page_is_refused(browser: &Browser) {
    let cookie = browser.client.get_named_cookie("wasmcron_session").await.unwrap();
    assert_eq!(cookie.http_only(), Some(true), "the page's scripts cannot read the session");
    assert_eq!(cookie.same_site(), Some(cookie::SameSite::Strict));
    let cookie = format!("wasmcron_session={}", cookie.value());
    let path = "/api/v1/jobs/echo/trigger";
    for headers in [&[("sec-fetch-site", "cross-site")][..], &[("origin", "http://elsewhere.example")][..]] {
        let (status, body) = post_with_cookie(&browser.base, path, &cookie, headers).await;
        assert_eq!((status, body["error"]["code"].as_str()), (403, Some("cross_site")), "{headers:?}: {body}");
    }
    let (status, body) = post_with_cookie(&browser.base, path, &cookie, &[("sec-fetch-site", "same-origin")]).await;
    assert_eq!(status, 202, "the same cookie from this site's page: {body}");
}

async fn the_page_fits_a_phone(browser: &Browser) {
    browser.client.set_window_size(390, 844).await.unwrap();
    browser.clear_toasts().await;
    browser.click("#nav-jobs").await;
    browser.wait_for("tr[data-job=echo]").await;
    assert_no_sideways_scroll(browser, "the jobs page on a phone").await;
    browser.screenshot("jobs-phone").await;
    browser.client.set_window_size(1280, 900).await.unwrap();
}

/// The actions are in the tab order and work from the keyboard: Enter
/// opens a dialog with the focus inside it, Escape closes it and gives
/// the focus back.
async fn actions_work_from_the_keyboard(browser: &Browser) {
    browser.click("#nav-jobs").await;
    browser.wait_for("#trigger-echo").await;
    browser.eval("document.activeElement.blur(); window.scrollTo(0, 0);", vec![]).await;
    let focused = async || browser.eval("return document.activeElement.id;", vec![]).await.as_str().map(str::to_owned);
    let body = browser.client.find(Locator::Css("body")).await.unwrap();
    for _ in 0..60 {
        if focused().await.as_deref() == Some("trigger-echo") {
            break;
        }
        body.send_keys(&fantoccini::key::Key::Tab).await.unwrap();
    }
    assert_eq!(focused().await.as_deref(), Some("trigger-echo"), "Tab reaches the trigger button");
    browser.client.active_element().await.unwrap().send_keys(&fantoccini::key::Key::Enter).await.unwrap();
    browser.wait_for("#trigger-dialog[open]").await;
    let inside = browser.eval("return document.activeElement.closest('dialog') !== null;", vec![]).await;
    assert_eq!(inside, json!(true), "the focus moves into the dialog");
    browser.client.active_element().await.unwrap().send_keys(&fantoccini::key::Key::Escape).await.unwrap();
    browser.wait_gone("#trigger-dialog").await;
    assert_eq!(focused().await.as_deref(), Some("trigger-echo"), "the focus comes back to the button");
}

/// Neither the page nor the table in it is wider than the window.
async fn assert_no_sideways_scroll(browser: &Browser, what: &str) {
    let script = "const wrap = document.querySelector('.table-wrap'); \
        return [document.documentElement.scrollWidth, window.innerWidth, \
                wrap ? wrap.scrollWidth - wrap.clientWidth : 0];";
    let sizes = browser.eval(script, vec![]).await;
    let [page, window, table] = [0, 1, 2].map(|i| sizes[i].as_i64().unwrap());
    assert!(
        page <= window && table <= 0,
        "{what} scrolls sideways: page {page} px, window {window}, table {table} over"
    );
}

async fn the_read_only_token_shows_no_actions(browser: &Browser, run: i64) {
    browser.wait_text("#access", |text| text == "read-only").await;
    browser.wait_for("tr[data-job=echo] [data-testid=schedule-cron]").await;
    assert_eq!(browser.count("[data-action], button.action").await, 0, "the jobs page shows actions");
    browser.screenshot("jobs-read-only").await;
    browser.click("[data-testid=job-link-echo]").await;
    browser.wait_text("[data-testid=job-name]", |name| name == "echo").await;
    assert_eq!(browser.count("[data-action], button.action").await, 0, "the job page shows actions");
    browser.goto(&format!("/#/runs/{run}")).await;
    browser.wait_text("[data-testid=run-status]", |status| status == "cancelled").await;
    assert_eq!(browser.count("[data-action], button.action").await, 0, "the run page shows actions");
    browser.screenshot("run-read-only").await;
    // And the API refuses the page anyway.
    let script = "const done = arguments[0]; fetch('/api/v1/jobs/echo/trigger', {method: 'POST', credentials: 'same-origin'}).then(r => done(r.status));";
    let status = browser.client.execute_async(script, vec![]).await.unwrap();
    assert_eq!(status, json!(403), "the read-only session may not trigger");
}

/// Triggers `echo` over the API, as another client would: the run's id.
async fn trigger_elsewhere(base: &str, admin: &str, payload: &'static str) -> i64 {
    let answer = reqwest::Client::new()
        .post(format!("{base}/api/v1/jobs/echo/trigger"))
        .bearer_auth(admin)
        .body(payload)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 202);
    answer.json::<Value>().await.unwrap()["id"].as_i64().unwrap()
}
