// The dashboard: every tile counts something and links to the filtered list it counts.
import { $, h, gql, every, badge, time } from '/assets/app.js';

const QUERY = `query Dashboard($since: String!) {
  deviceFilters { statuses { value label count } osTypes { value label count } organizationIds { value label count } filteredCount }
  logTimeline(filter: { timestampFrom: $since }, bucketMinutes: 60) { start count }
  logFilters(filter: { timestampFrom: $since }) { counts { facet value count } filteredCount }
  logs(filter: { severities: ["WARNING", "ERROR", "CRITICAL"] }, first: 8) {
    edges { node { id toolEventId eventType severity summary hostname deviceId organizationName timestamp ingestDay toolType } }
  }
}`;

const HOUR = 3_600_000;

function bars(list, options, link) {
  const max = Math.max(1, ...options.map((option) => option.count));
  list.replaceChildren(...options.map((option) => h('li', {},
    h('a', { href: link(option.value) },
      h('span', {}, option.label || option.value),
      h('strong', {}, option.count),
      h('meter', { min: 0, max, value: option.count, 'aria-hidden': 'true' })))));
}

function devicesLink(name) {
  return (value) => `/devices?${new URLSearchParams({ [name]: value })}`;
}

/** 24 hourly bars (empty hours included), each a link to that hour's logs. */
function chart(container, buckets, now) {
  const end = Math.floor(now / HOUR) * HOUR + HOUR;
  const counts = new Map(buckets.map((bucket) => [Date.parse(bucket.start), bucket.count]));
  const hours = Array.from({ length: 24 }, (_, index) => end - (24 - index) * HOUR);
  const max = Math.max(1, ...hours.map((hour) => counts.get(hour) || 0));
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('viewBox', '0 0 480 180');
  svg.setAttribute('preserveAspectRatio', 'none');
  svg.setAttribute('role', 'list');
  const total = hours.reduce((sum, hour) => sum + (counts.get(hour) || 0), 0);
  svg.setAttribute('aria-label', `${total} events in the last 24 hours, by hour`);
  hours.forEach((hour, index) => {
    const count = counts.get(hour) || 0;
    const height = Math.round((count / max) * 150);
    const link = document.createElementNS(ns, 'a');
    const from = new Date(hour).toISOString();
    const to = new Date(hour + HOUR).toISOString();
    link.setAttribute('href', `/logs?${new URLSearchParams({ from, to })}`);
    link.setAttribute('role', 'listitem');
    const label = `${new Date(hour).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })}: ${count} events`;
    link.setAttribute('aria-label', label);
    const rect = document.createElementNS(ns, 'rect');
    rect.setAttribute('x', String(index * 20 + 2));
    rect.setAttribute('y', String(160 - height));
    rect.setAttribute('width', '16');
    rect.setAttribute('height', String(Math.max(height, count ? 2 : 0)));
    const title = document.createElementNS(ns, 'title');
    title.textContent = label;
    rect.append(title);
    link.append(rect);
    if (index % 4 === 0) {
      const text = document.createElementNS(ns, 'text');
      text.setAttribute('x', String(index * 20 + 2));
      text.setAttribute('y', '176');
      text.textContent = new Date(hour).toLocaleTimeString([], { hour: '2-digit' });
      link.append(text);
    }
    svg.append(link);
  });
  container.replaceChildren(svg);
  $('#event-total').textContent = `(${total})`;
}

/** What the logs page needs to open an entry's details (the fields of its key). */
function logKey(node) {
  return [node.ingestDay, node.toolType, node.eventType, node.timestamp, node.toolEventId].join('|');
}

async function load() {
  const now = Date.now();
  const since = new Date(now - 24 * HOUR).toISOString();
  try {
    const data = await gql(QUERY, { since });
    const devices = data.deviceFilters;
    $('#device-total').textContent = `(${devices.filteredCount})`;
    $('#no-devices').hidden = devices.filteredCount > 0;
    bars($('#by-status'), devices.statuses, devicesLink('status'));
    bars($('#by-os'), devices.osTypes, devicesLink('os'));
    bars($('#by-customer'), devices.organizationIds, devicesLink('customer'));
    chart($('#chart'), data.logTimeline, now);
    const types = data.logFilters.counts.filter((count) => count.facet === 'EVENT_TYPE').slice(0, 8);
    bars($('#top-types'), types, (value) => `/logs?${new URLSearchParams({ eventType: value, from: since })}`);
    $('#no-events').hidden = types.length > 0;
    const recent = data.logs.edges.map(({ node }) => h('li', {},
      badge(node.severity), ' ',
      h('a', { href: `/logs?${new URLSearchParams({ severity: node.severity, open: logKey(node) })}` }, node.summary || node.eventType),
      h('div', { class: 'muted small' }, node.hostname || node.toolType, ' · ', time(node.timestamp))));
    $('#recent').replaceChildren(...recent);
    $('#no-problems').hidden = recent.length > 0;
    $('#dashboard-error').textContent = '';
    $('#updated').replaceChildren('Updated ', time(now), '. Refreshes every 30 seconds.');
  } catch (error) {
    $('#dashboard-error').textContent = `The dashboard could not load: ${error.message}`;
  }
}

load();
every(30, load);
