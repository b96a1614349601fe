// Incidents: related alerts and events grouped by the appliance, newest activity first. A status
// filter and the incident shown are kept in the address; the details drawer lists its alerts and
// timeline, acknowledges it, resolves it with an optional note, and asks the assistant to explain
// it. The list (and the drawer, when open) refreshes every 15 s.
import { $, h, api, badge, time, bindForm, clearErrors, fillTable, row, readQuery, writeQuery, every, toast, askAssistant } from '/assets/app.js';

const STATUSES = ['OPEN', 'ACKNOWLEDGED', 'RESOLVED'];
const KINDS = {
  ALERT_TRIGGERED: 'Alert triggered', ALERT_RESOLVED: 'Alert resolved', EVENT: 'Event',
  ACKNOWLEDGED: 'Acknowledged', RESOLVED: 'Resolved',
};

const status = $('#status-filter');
const table = $('#incidents');
const drawer = $('#incident-drawer');
const resolveForm = $('#resolve-form');
const acknowledgeButton = $('#acknowledge');

const query = readQuery();
if (STATUSES.includes(query.status?.[0])) status.value = query.status[0];

/** The id of the incident in the drawer (`?id=`, as a notification links to it), and the incident
 *  as last loaded (with its timeline). */
let selectedId = query.id?.[0] || null;
let shown = null;

const path = (id, action = '') => `/api/incidents/${encodeURIComponent(id)}${action}`;
const deviceLink = (id) => h('a', { href: `/devices/${encodeURIComponent(id)}` }, id);

function remember() {
  writeQuery({ status: status.value, id: selectedId });
}

/** Up to `most` devices as links, then how many more. */
function devices(ids, most = 3) {
  if (!ids?.length) return h('span', { class: 'muted' }, '—');
  const links = ids.slice(0, most).flatMap((id, index) => (index ? [', ', deviceLink(id)] : [deviceLink(id)]));
  return h('span', {}, links, ids.length > most ? ` and ${ids.length - most} more` : '');
}

const isActive = (alert) => alert.resolvedAt === null || alert.resolvedAt === undefined;

function incidentRow(incident) {
  const alerts = incident.alerts || [];
  const active = alerts.filter(isActive).length;
  return row([
    h('td', {}, h('button', {
      type: 'button', class: 'link', 'aria-haspopup': 'dialog', onclick: () => open(incident.id),
    }, incident.title)),
    badge(incident.severity),
    badge(incident.status),
    devices(incident.deviceIds),
    active ? `${alerts.length} (${active} active)` : String(alerts.length),
    time(incident.openedAt),
    time(incident.lastActivityAt),
  ], { 'data-incident-id': incident.id, 'aria-current': selectedId === incident.id ? 'true' : null });
}

async function load() {
  const address = status.value ? `/api/incidents?${new URLSearchParams({ status: status.value })}` : '/api/incidents';
  try {
    const data = await api(address);
    $('#list-error').textContent = '';
    const count = `(${data.incidents.length})`;
    // Set only when it changed, so the refresh every 15 s is not read out each time.
    if ($('#incident-count').textContent !== count) $('#incident-count').textContent = count;
    fillTable(table, data.incidents.map(incidentRow), $('#no-incidents'));
  } catch (error) {
    $('#list-error').textContent = `The incidents could not load: ${error.message}`;
  }
}

function markSelected() {
  for (const tr of table.tBodies[0].rows) {
    if (tr.dataset.incidentId === selectedId) tr.setAttribute('aria-current', 'true');
    else tr.removeAttribute('aria-current');
  }
}

// --- The drawer. ---

function props(entries) {
  $('#drawer-props').replaceChildren(...entries.filter(([, value]) => value !== undefined && value !== null && value !== '')
    .flatMap(([name, value]) => [h('dt', {}, name), h('dd', {}, value)]));
}

/** Who did something and when: "time, by someone". */
const byWhom = (at, by) => h('span', {}, time(at), by ? `, by ${by}` : '');

function alertItem(alert) {
  return h('li', {},
    h('div', {}, badge(alert.severity), ' ', h('strong', {}, alert.rule), ' ', alert.summary),
    h('div', { class: 'muted small' }, 'Triggered ', time(alert.triggeredAt), ' · ',
      isActive(alert) ? 'still active' : h('span', {}, 'resolved ', time(alert.resolvedAt))));
}

function timelineItem(entry) {
  const details = [
    entry.severity ? badge(entry.severity) : '',
    entry.eventType ? h('code', {}, entry.eventType) : '',
    entry.deviceId ? deviceLink(entry.deviceId) : '',
    entry.by ? `by ${entry.by}` : '',
  ].filter(Boolean).flatMap((part, index) => (index ? [' · ', part] : [part]));
  return h('li', {},
    time(entry.at),
    h('div', {}, h('strong', {}, KINDS[entry.kind] || entry.kind), ': ', entry.summary,
      details.length ? h('div', { class: 'small' }, details) : ''));
}

function showIncident(incident) {
  shown = incident;
  $('#drawer-title').textContent = incident.title;
  props([
    ['Status', badge(incident.status)],
    ['Severity', badge(incident.severity)],
    ['Devices', devices(incident.deviceIds, 20)],
    ['Customers', incident.organizationIds?.length ? h('span', {}, incident.organizationIds.flatMap((id, index) => {
      const link = h('a', { href: `/devices?${new URLSearchParams({ customer: id })}` }, id);
      return index ? [', ', link] : [link];
    })) : null],
    ['Opened', time(incident.openedAt)],
    ['Last activity', time(incident.lastActivityAt)],
    ['Acknowledged', incident.acknowledgedAt ? byWhom(incident.acknowledgedAt, incident.acknowledgedBy) : null],
    ['Resolved', incident.resolvedAt ? byWhom(incident.resolvedAt, incident.resolvedBy) : null],
    ['Resolution note', incident.resolutionNote ? h('div', { class: 'assistant-text' }, incident.resolutionNote) : null],
  ]);
  const alerts = incident.alerts || [];
  $('#drawer-alerts').replaceChildren(...(alerts.length ? alerts.map(alertItem) : [h('li', { class: 'muted' }, 'No alerts.')]));
  const timeline = [...(incident.timeline || [])].sort((a, b) => a.at - b.at);
  $('#drawer-timeline').replaceChildren(...(timeline.length ? timeline.map(timelineItem) : [h('li', { class: 'muted' }, 'Nothing yet.')]));
  // The appliance keeps the latest entries of a long timeline.
  $('#timeline-note').textContent = incident.timelineCount > timeline.length
    ? `The latest ${timeline.length} of ${incident.timelineCount} entries.` : '';
  $('#drawer-actions').hidden = false;
  acknowledgeButton.hidden = incident.status !== 'OPEN';
  resolveForm.hidden = incident.status === 'RESOLVED';
}

/** Loads the incident again and shows it, if the drawer still shows it by then. */
async function reshow(id) {
  try {
    const incident = await api(path(id));
    if (drawer.open && shown?.id === id) showIncident(incident);
  } catch {
    // Kept as shown; the next refresh tries again.
  }
}

async function open(id) {
  const other = shown?.id !== id;
  selectedId = id;
  remember();
  markSelected();
  $('#drawer-error').textContent = '';
  if (other) {
    // Nothing of the previous incident stays: its details, its explanation, a note typed for it.
    shown = null;
    $('#drawer-title').textContent = 'Incident';
    for (const list of ['#drawer-props', '#drawer-alerts', '#drawer-timeline', '#timeline-note']) $(list).replaceChildren();
    $('#drawer-actions').hidden = true;
    resolveForm.hidden = true;
    resolveForm.reset();
    clearErrors(resolveForm);
    $('#explanation').hidden = true;
    $('#explanation').replaceChildren();
  }
  $('#drawer-state').textContent = 'Loading…';
  if (!drawer.open) drawer.showModal();
  try {
    showIncident(await api(path(id)));
    $('#drawer-state').textContent = '';
  } catch (error) {
    $('#drawer-state').textContent = error.status === 404
      ? 'There is no incident with this id; it may belong to another tenant, or the link is wrong.'
      : `The incident could not load: ${error.message}`;
  }
}

acknowledgeButton.addEventListener('click', async () => {
  if (!shown) return;
  acknowledgeButton.disabled = true;
  $('#drawer-error').textContent = '';
  try {
    showIncident(await api(path(shown.id, '/acknowledge'), { method: 'POST' }));
    toast('The incident is acknowledged.');
    $('#drawer-title').focus(); // the button is gone now
    await load();
  } catch (error) {
    $('#drawer-error').textContent = `The incident could not be acknowledged: ${error.message}`;
    // 409: resolved meanwhile (by someone else); show it as it is now.
    if (error.status === 409) reshow(shown.id);
  } finally {
    acknowledgeButton.disabled = false;
  }
});

bindForm(resolveForm, async (values) => {
  const body = values.note ? { note: values.note } : {};
  const incident = await api(path(shown.id, '/resolve'), { method: 'POST', body });
  showIncident(incident);
  toast('The incident is resolved.');
  $('#drawer-title').focus(); // the form is hidden now
  await load();
});

$('#explain').addEventListener('click', (event) => {
  if (shown) askAssistant(`/api/assistant/incidents/${encodeURIComponent(shown.id)}/explain`, $('#explanation'), event.currentTarget);
});

$('#close-drawer').addEventListener('click', () => drawer.close());
drawer.addEventListener('close', () => {
  const id = selectedId;
  selectedId = null;
  remember();
  markSelected();
  // Back to the incident's row (the list may have been rebuilt while the drawer was open).
  const opener = [...table.tBodies[0].rows].find((tr) => tr.dataset.incidentId === id);
  opener?.querySelector('button')?.focus();
});

status.addEventListener('change', () => { remember(); load(); });

load();
if (selectedId) open(selectedId);
every(15, async () => {
  await load();
  // The open incident's timeline grows too; not while an action on it is on its way.
  if (drawer.open && shown && !acknowledgeButton.disabled && resolveForm.dataset.busy !== 'true') {
    await reshow(shown.id);
  }
});
