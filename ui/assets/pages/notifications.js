// Notifications: newest first (the last 100), the unread ones highlighted, "unread only" kept in
// the address; mark one or all read; the notification settings. New ones come from the layout's
// `notificationStream` subscription (app.js), which hands each to the page as the document event
// `openframe:notification`: they are put at the top, so the page needs no socket of its own.
import { $, $$, h, api, badge, time, bindForm, fillTable, row, readQuery, writeQuery, toast, setUnread } from '/assets/app.js';

const CATEGORIES = { INCIDENT: 'Incident', ALERT: 'Alert', APPROVAL: 'Assistant approval', SYSTEM: 'System' };
const MOST = 100;

const table = $('#notifications');
const unreadOnly = $('#unread-only');
const settingsForm = $('#settings-form');
unreadOnly.checked = readQuery().unread?.[0] === 'true';

/** The tenant's unread count, as the API last said (and counted here since). */
let unread = 0;

function showCount() {
  setUnread(unread);
  const text = `(${unread} unread)`;
  if ($('#notification-count').textContent !== text) $('#notification-count').textContent = text;
}

/** A path of this console only (`/incidents?…`): anything else is shown as text, never followed. */
const consolePath = (link) => typeof link === 'string' && link.startsWith('/') && !link.startsWith('//') && !link.includes('\\');

function notificationRow(notification) {
  const title = consolePath(notification.link)
    ? h('a', { href: notification.link, class: 'title' }, notification.title)
    : h('span', { class: 'title' }, notification.title);
  const unreadRow = !notification.read;
  return row([
    h('td', {},
      unreadRow ? h('span', { class: 'sr-only' }, 'Unread: ') : '',
      title,
      notification.message ? h('div', { class: 'muted small' }, notification.message) : ''),
    badge(notification.severity),
    CATEGORIES[notification.category] || notification.category,
    time(notification.createdAt),
    h('td', { class: 'row-actions' }, unreadRow ? h('button', {
      type: 'button', class: 'secondary', 'aria-label': `Mark read: ${notification.title}`,
      onclick: (event) => markRead(notification, event.currentTarget),
    }, 'Mark read') : h('span', { class: 'muted small' }, 'Read')),
  ], { 'data-notification-id': notification.id, class: unreadRow ? 'unread' : null });
}

async function load() {
  writeQuery({ unread: unreadOnly.checked ? 'true' : '' });
  try {
    const data = await api(unreadOnly.checked ? '/api/notifications?unread=true' : '/api/notifications');
    $('#list-error').textContent = '';
    unread = data.unread;
    showCount();
    fillTable(table, data.notifications.map(notificationRow), $('#no-notifications'));
  } catch (error) {
    $('#list-error').textContent = `The notifications could not load: ${error.message}`;
  }
}

/** Marks one read in place (the row stays until the next load, even with "unread only"). */
async function markRead(notification, button) {
  button.disabled = true;
  try {
    const updated = await api(`/api/notifications/${encodeURIComponent(notification.id)}/read`, { method: 'POST' });
    $('#list-error').textContent = '';
    const tr = button.closest('tr');
    // The focus goes on to the next one to mark, or to "Mark all read".
    const next = $$('tbody tr.unread button', table).find((other) => other !== button
      && (tr.compareDocumentPosition(other) & Node.DOCUMENT_POSITION_FOLLOWING));
    const fresh = notificationRow({ ...notification, ...updated, read: true });
    tr.replaceWith(fresh);
    unread = Math.max(0, unread - 1);
    showCount();
    (next || $('#read-all')).focus();
  } catch (error) {
    $('#list-error').textContent = `"${notification.title}" could not be marked read: ${error.message}`;
    button.disabled = false;
  }
}

$('#read-all').addEventListener('click', async (event) => {
  const button = event.currentTarget;
  button.disabled = true;
  try {
    const result = await api('/api/notifications/read-all', { method: 'POST' });
    toast(result.marked === 1 ? '1 notification is marked read.' : `${result.marked} notifications are marked read.`);
    await load();
  } catch (error) {
    $('#list-error').textContent = `The notifications could not be marked read: ${error.message}`;
  } finally {
    button.disabled = false;
  }
});

unreadOnly.addEventListener('change', load);

// A new notification, from the layout's subscription (which has already counted it in the badge).
document.addEventListener('openframe:notification', (event) => {
  const notification = { ...event.detail, read: false };
  const body = table.tBodies[0];
  if ([...body.rows].some((tr) => tr.dataset.notificationId === notification.id)) return;
  const fresh = notificationRow(notification);
  fresh.classList.add('fresh');
  body.prepend(fresh);
  table.hidden = false;
  $('#no-notifications').hidden = true;
  while (body.rows.length > MOST) body.lastElementChild.remove();
  unread += 1;
  showCount();
});

// --- Settings. ---

function showSettings(settings) {
  settingsForm.elements.namedItem('email').checked = Boolean(settings.email);
  settingsForm.elements.namedItem('minSeverity').value = settings.minSeverity;
  const muted = settings.mutedCategories || [];
  for (const box of $$('input[name="mutedCategories"]', settingsForm)) box.checked = muted.includes(box.value);
}

async function loadSettings() {
  try {
    showSettings(await api('/api/notifications/settings'));
  } catch (error) {
    settingsForm.querySelector('[data-form-error]').textContent = `The settings could not load: ${error.message}`;
  }
}

bindForm(settingsForm, async (values) => {
  const saved = await api('/api/notifications/settings', {
    method: 'PUT',
    body: { email: values.email, minSeverity: values.minSeverity, mutedCategories: values.mutedCategories || [] },
  });
  showSettings(saved);
  toast('The notification settings are saved.');
}, { reset: false });

load();
loadSettings();
