// Small DOM and formatting helpers. Elements are built with h(), never
// from HTML text, so job names, errors and captured output stay text.

export function h(tag, attrs, ...children) {
  const element = document.createElement(tag);
  setAttributes(element, attrs);
  append(element, children);
  return element;
}

/** An SVG element: charts are drawn as inline SVG. */
export function svg(tag, attrs, ...children) {
  const element = document.createElementNS('http://www.w3.org/2000/svg', tag);
  setAttributes(element, attrs);
  append(element, children);
  return element;
}

function setAttributes(element, attrs) {
  for (const [name, value] of Object.entries(attrs ?? {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith('on') && typeof value === 'function') element.addEventListener(name.slice(2), value);
    else if (value === true) element.setAttribute(name, '');
    else element.setAttribute(name, String(value));
  }
}

function append(element, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : String(child));
  }
}

/** Replaces `container`'s content, keeping keyboard focus on the element with the same id. */
export function replace(container, ...children) {
  const focused = document.activeElement && container.contains(document.activeElement) ? document.activeElement.id : '';
  container.replaceChildren(...children.flat(Infinity).filter((child) => child));
  if (focused) document.getElementById(focused)?.focus();
}

export const encode = encodeURIComponent;

/** The query string of `params`, leaving out empty values. */
export function query(params) {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== null && value !== undefined && value !== '') search.set(name, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : '';
}

/** A whole-run status as people say it. */
export function statusLabel(status) {
  return (status ?? 'unknown').replaceAll('_', ' ');
}

export function statusBadge(status, attrs = {}) {
  return h('span', { class: `status status-${status}`, 'data-status': status, ...attrs }, statusLabel(status));
}

const relativeFormat = new Intl.RelativeTimeFormat(undefined, { numeric: 'auto', style: 'short' });
const fullFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'medium' });

/** "in 3 min", "12 sec ago". */
export function relative(iso, now = Date.now()) {
  const seconds = (Date.parse(iso) - now) / 1000;
  const units = [['day', 86400], ['hour', 3600], ['minute', 60], ['second', 1]];
  for (const [unit, size] of units) {
    if (Math.abs(seconds) >= size || unit === 'second') return relativeFormat.format(Math.round(seconds / size), unit);
  }
  return '';
}

/** A `<time>`: relative, with the full local time as its title and the instant as its datetime. */
export function when(iso) {
  if (!iso) return h('span', { class: 'muted' }, '—');
  return h('time', { datetime: iso, title: `${fullFormat.format(new Date(iso))} (${iso})` }, relative(iso));
}

export function localTime(iso) {
  return iso ? fullFormat.format(new Date(iso)) : '—';
}

/** Milliseconds as people read them: "840 ms", "3.2 s", "4 min 5 s", "2 h 3 min". */
export function duration(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return '—';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(ms < 10_000 ? 1 : 0)} s`;
  if (ms < 3_600_000) return `${Math.floor(ms / 60_000)} min ${Math.round((ms % 60_000) / 1000)} s`;
  return `${Math.floor(ms / 3_600_000)} h ${Math.round((ms % 3_600_000) / 60_000)} min`;
}

/** How long a run took, or has taken so far; null if it never started. */
export function runMillis(run, now = Date.now()) {
  if (!run.started_at) return null;
  const end = run.ended_at ? Date.parse(run.ended_at) : now;
  return Math.max(0, end - Date.parse(run.started_at));
}

/** Whether a run may still change: cancel applies; retry does not. */
export function unfinished(run) {
  return run.status === 'pending' || run.status === 'running';
}

/**
 * Calls `work` at once, and at most once per `ms` however often it is
 * asked (live events come by the thousand a second under load), and once
 * more `ms` after the last ask: the jobs view the host publishes may lag
 * the event that asked by a few milliseconds.
 */
export function throttle(work, ms) {
  let timer = null;
  let again = false;
  return () => {
    if (timer) {
      again = true;
      return;
    }
    work();
    again = true;
    timer = setTimeout(function tick() {
      timer = null;
      if (again) {
        again = false;
        work();
        timer = setTimeout(tick, ms);
      }
    }, ms);
  };
}
