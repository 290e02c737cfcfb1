// The live stream: one EventSource on /api/v1/events for the whole page.
// Each run event goes to every listener; after a gap (the stream dropped,
// or it lagged) listeners get {stage: 'resync'} and fetch afresh. The
// indicator (role="status") says whether the page is live. The browser
// reconnects by itself after a dropped connection; when it gives up (an
// answer that is not a stream, say while the host restarts), this does,
// with backoff.

const STAGES = ['fired', 'recorded', 'started', 'ended'];
const listeners = new Set();

export function onRunEvent(listener) {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

function dispatch(event) {
  for (const listener of listeners) {
    try {
      listener(event);
    } catch (error) {
      console.error('a live listener failed', error);
    }
  }
}

export function connect(indicator) {
  let delay = 1000;
  let dropped = false;
  const show = (state, text) => {
    indicator.dataset.state = state;
    indicator.textContent = text;
  };
  const open = () => {
    const source = new EventSource('/api/v1/events');
    source.addEventListener('open', () => {
      delay = 1000;
      show('live', 'Live');
      if (dropped) dispatch({ stage: 'resync' });
      dropped = false;
    });
    source.addEventListener('error', () => {
      dropped = true;
      show('down', 'Disconnected — reconnecting…');
      if (source.readyState === EventSource.CLOSED) {
        setTimeout(open, delay);
        delay = Math.min(delay * 2, 15_000);
      }
    });
    for (const stage of STAGES) {
      source.addEventListener(stage, (message) => dispatch(JSON.parse(message.data)));
    }
    source.addEventListener('lagged', () => dispatch({ stage: 'resync' }));
  };
  open();
}
