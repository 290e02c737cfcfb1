// Small inline-SVG pictures: a history strip of recent runs coloured by
// outcome, a bar chart of their durations, and a timeline of next fires.
// Each has a text alternative (aria-label, <title> per mark).

import { duration, encode, h, localTime, relative, runMillis, statusLabel, svg } from './dom.js';

/** Recent runs, oldest left, newest right: one square each, a link to the run. */
export function historyStrip(runs, { job } = {}) {
  const ordered = [...runs].reverse();
  const counts = {};
  for (const run of runs) counts[run.status] = (counts[run.status] ?? 0) + 1;
  const summary = Object.entries(counts).map(([status, n]) => `${n} ${statusLabel(status)}`).join(', ');
  if (ordered.length === 0) return h('span', { class: 'muted' }, 'no runs yet');
  return h(
    'ol',
    {
      class: 'strip',
      'aria-label': `Last ${runs.length} runs${job ? ` of ${job}` : ''}: ${summary}`,
      'data-testid': 'history-strip',
    },
    ordered.map((run) =>
      h(
        'li',
        {},
        h('a', {
          href: `#/runs/${run.id}`,
          class: `mark status-${run.status}`,
          tabindex: '-1',
          title: `Run ${run.id}: ${statusLabel(run.status)}, ${duration(runMillis(run))}, ${relative(run.scheduled_for)}`,
          'aria-label': `Run ${run.id}: ${statusLabel(run.status)}`,
        }),
      ),
    ),
  );
}

/** Durations of recent runs as bars, oldest left; the tallest is labelled. */
export function durationChart(runs, { width = 120, height = 32, labels = false } = {}) {
  const ordered = [...runs].reverse().filter((run) => run.started_at);
  if (ordered.length === 0) return h('span', { class: 'muted' }, '—');
  const values = ordered.map((run) => runMillis(run));
  const longest = Math.max(...values, 1);
  const top = labels ? 14 : 2;
  const bottom = labels ? 14 : 0;
  const space = height - top - bottom;
  const step = width / Math.max(ordered.length, 10);
  const bars = ordered.map((run, i) => {
    const tall = Math.max(1.5, (values[i] / longest) * space);
    return svg(
      'rect',
      {
        x: (i * step + 1).toFixed(1),
        y: (top + space - tall).toFixed(1),
        width: Math.max(1, step - 2).toFixed(1),
        height: tall.toFixed(1),
        class: `bar status-${run.status}`,
      },
      svg('title', {}, `Run ${run.id}: ${duration(values[i])} (${statusLabel(run.status)})`),
    );
  });
  const extra = labels
    ? [
        svg('text', { x: 0, y: 10, class: 'axis' }, `longest ${duration(longest)}`),
        svg('text', { x: 0, y: height - 2, class: 'axis' }, 'oldest'),
        svg('text', { x: width, y: height - 2, class: 'axis', 'text-anchor': 'end' }, 'newest'),
      ]
    : [];
  const sorted = [...values].sort((a, b) => a - b);
  const median = sorted[Math.floor(sorted.length / 2)];
  return svg(
    'svg',
    {
      class: 'chart',
      viewBox: `0 0 ${width} ${height}`,
      width,
      height,
      role: 'img',
      'aria-label': `Durations of the last ${ordered.length} runs: median ${duration(median)}, longest ${duration(longest)}`,
      'data-testid': 'duration-chart',
    },
    bars,
    extra,
  );
}

/** The next fires on a line from now to the last of them. */
export function firesTimeline(fires, { width = 140, height = 22, labels = false } = {}) {
  if (!fires || fires.length === 0) return h('span', { class: 'muted' }, '—');
  const now = Date.now();
  const times = fires.map((fire) => Date.parse(fire));
  const span = Math.max(times[times.length - 1] - now, 1);
  const pad = 5;
  const x = (time) => pad + ((time - now) / span) * (width - 2 * pad);
  const line = labels ? 8 : height / 2;
  const marks = fires.map((fire, i) =>
    svg('circle', { cx: x(times[i]).toFixed(1), cy: line, r: 3.5, class: 'fire' }, svg('title', {}, `${localTime(fire)} (${relative(fire)})`)),
  );
  const extra = labels
    ? [
        svg('text', { x: pad, y: height - 1, class: 'axis' }, 'now'),
        svg('text', { x: width - pad, y: height - 1, class: 'axis', 'text-anchor': 'end' }, relative(fires[fires.length - 1])),
      ]
    : [];
  return h(
    'span',
    { class: 'timeline' },
    svg(
      'svg',
      {
        class: 'chart',
        viewBox: `0 0 ${width} ${height}`,
        width,
        height,
        role: 'img',
        'aria-label': `Next fires: ${fires.map((fire) => localTime(fire)).join('; ')}`,
        'data-testid': 'fires-timeline',
      },
      svg('line', { x1: pad, x2: width - pad, y1: line, y2: line, class: 'axis-line' }),
      marks,
      extra,
    ),
    h('span', { class: 'next' }, relative(fires[0])),
  );
}

export function jobLink(name) {
  return h('a', { href: `#/jobs/${encode(name)}`, 'data-testid': `job-link-${name}` }, name);
}
