//! Wake-ups between hosts: triggers and inserted runs `pg_notify` the
//! channel [`CHANNEL`] in their own statement, and each store keeps one
//! connection of its own (outside the pool: a pooled connection would
//! lose its `LISTEN` when recycled) listening on it, bumping the store's
//! `wakeups` counter for each notification.
//!
//! A hint only: notifications are lost while the connection is down and
//! do not pass transaction-mode poolers, so hosts poll as well. After each
//! (re)connect the counter is bumped once, since runs may have arrived
//! unannounced meanwhile. The task ends when the store is dropped.

use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::{oneshot, watch};
use tokio_postgres::{AsyncMessage, NoTls};

/// The channel runs are announced on.
pub(super) const CHANNEL: &str = "wasmcron_runs";

/// The first pause before reconnecting, doubled on each failure up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

pub(super) async fn listen(
    config: tokio_postgres::Config,
    wakeups: watch::Sender<u64>,
    mut stop: oneshot::Receiver<()>,
    store: String,
) {
    let mut backoff = FIRST_BACKOFF;
    loop {
        let mut listened = false;
        let session = session(&config, &wakeups, &mut listened);
        let ended = tokio::select! {
            _ = &mut stop => return,
            ended = session => ended,
        };
        match ended {
            Ok(()) => tracing::debug!(%store, "the LISTEN connection closed; reconnecting"),
            Err(error) => tracing::debug!(%store, %error, "the LISTEN connection failed; reconnecting"),
        }
        if listened {
            backoff = FIRST_BACKOFF;
        }
        tokio::select! {
            _ = &mut stop => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// One connection's life: connect, `LISTEN`, then bump on each notification
/// until the connection ends.
async fn session(
    config: &tokio_postgres::Config,
    wakeups: &watch::Sender<u64>,
    listened: &mut bool,
) -> Result<(), tokio_postgres::Error> {
    let (client, mut connection) = config.connect(NoTls).await?;
    let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
    // The connection must be polled for the LISTEN to be answered.
    {
        let sql = format!("LISTEN {CHANNEL}");
        let listen = client.batch_execute(&sql);
        tokio::pin!(listen);
        loop {
            tokio::select! {
                done = &mut listen => { done?; break; }
                message = messages.next() => match message {
                    Some(Ok(_)) => {}
                    Some(Err(error)) => return Err(error),
                    None => return Ok(()),
                },
            }
        }
    }
    *listened = true;
    wakeups.send_modify(|n| *n += 1);
    while let Some(message) = messages.next().await {
        if let AsyncMessage::Notification(_) = message? {
            wakeups.send_modify(|n| *n += 1);
        }
    }
    drop(client);
    Ok(())
}
