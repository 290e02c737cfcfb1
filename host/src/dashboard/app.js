// The dashboard's entry: asks the API what this session may do, opens the
// live stream, and routes the address's hash to a view — #/jobs,
// #/jobs/NAME, #/runs?filters, #/runs/ID — one page, no reloads. A view
// is a function (main, …) → {onEvent, stop}; live events go to the view
// on screen.

import { get } from './api.js';
import { session } from './actions.js';
import { h, relative, replace } from './dom.js';
import { jobPage, jobsList } from './jobs.js';
import { onRunEvent, connect } from './live.js';
import { runPage } from './run.js';
import { runsList } from './runs.js';

const main = document.getElementById('main');
let current = null;
let first = true;

function pick(hash) {
  const [path, search] = (hash.replace(/^#/, '') || '/jobs').split('?');
  let parts;
  try {
    parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  } catch {
    parts = ['not-found'];
  }
  const params = new URLSearchParams(search ?? '');
  if (parts[0] === 'runs' && parts[1] && /^\d+$/.test(parts[1])) return ['runs', () => runPage(main, Number(parts[1]))];
  if (parts[0] === 'runs') return ['runs', () => runsList(main, params)];
  if (parts[0] === 'jobs' && parts[1]) return ['jobs', () => jobPage(main, parts[1])];
  if (!parts[0] || parts[0] === 'jobs') return ['jobs', () => jobsList(main)];
  return ['', () => {
    replace(main, h('h1', {}, 'No such page'), h('p', {}, h('a', { href: '#/jobs' }, 'Go to the jobs')));
    return null;
  }];
}

function route() {
  current?.stop();
  const [section, show] = pick(window.location.hash);
  for (const link of document.querySelectorAll('nav a')) {
    link.toggleAttribute('aria-current', link.id === `nav-${section}`);
    if (link.id === `nav-${section}`) link.setAttribute('aria-current', 'page');
  }
  current = show();
  if (!first) main.focus({ preventScroll: true });
  first = false;
}

async function start() {
  try {
    session.access = (await get('/session')).access;
  } catch (error) {
    replace(main, h('h1', {}, 'Could not start'), h('p', { class: 'load-error', role: 'alert' }, error.message));
    return;
  }
  document.body.dataset.access = session.access;
  document.getElementById('access').textContent = session.access === 'admin' ? 'admin' : 'read-only';
  connect(document.getElementById('live'));
  onRunEvent((event) => current?.onEvent?.(event));
  window.addEventListener('hashchange', route);
  route();
  // "in 10 sec." goes stale between live updates: keep relative times true.
  setInterval(() => {
    for (const time of document.querySelectorAll('time[datetime]')) time.textContent = relative(time.dateTime);
  }, 5000);
}

start();
