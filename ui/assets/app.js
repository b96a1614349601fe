// The console's shared code: calls to the technician API, forms, tables, paging and the live
// log. Plain ES modules, no build step; everything the user typed or a server sent is put in
// the page as text (never as HTML).

const TENANT_KEY = 'openframe.tenant';

/** An answer of the API that is not a success: the status, the stable code, the message. */
export class ApiError extends Error {
  constructor(status, code, message, data = null) {
    super(message);
    this.status = status;
    this.code = code;
    /** The answer's parsed body, when it had one (a failed tool test carries its report). */
    this.data = data;
  }
}

let refreshing = null;

/** Asks for a new access token with the refresh cookie; true when one came. */
async function refreshSession() {
  const tenant = document.body.dataset.tenant || localStorage.getItem(TENANT_KEY);
  if (!tenant) return false;
  refreshing ??= fetch(`/oauth/refresh?tenantId=${encodeURIComponent(tenant)}`, {
    method: 'POST', credentials: 'same-origin',
  }).then((r) => r.ok).catch(() => false).finally(() => { setTimeout(() => { refreshing = null; }, 0); });
  return refreshing;
}

/** Sends the user to sign in, and back here afterwards. */
export function toLogin() {
  const next = location.pathname + location.search;
  location.assign(`/login?next=${encodeURIComponent(next)}`);
  return new Promise(() => {});
}

let inFlight = 0;
function progress(delta) {
  inFlight += delta;
  let bar = document.getElementById('progress');
  if (!bar) {
    bar = document.createElement('div');
    bar.id = 'progress';
    bar.className = 'progress';
    document.body.append(bar);
  }
  bar.classList.toggle('on', inFlight > 0);
  document.body.setAttribute('aria-busy', inFlight > 0 ? 'true' : 'false');
}

/** A JSON call to the appliance. An expired session is renewed once, or leads to sign-in. */
export async function api(path, { method = 'GET', body, retried = false } = {}) {
  const init = { method, credentials: 'same-origin', headers: { Accept: 'application/json' } };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers['Content-Type'] = 'application/json';
  }
  progress(1);
  let response;
  try {
    response = await fetch(path, init);
  } catch (error) {
    throw new ApiError(0, 'network', 'The appliance cannot be reached; check the connection and try again.');
  } finally {
    progress(-1);
  }
  if (response.status === 401) {
    if (!retried && (await refreshSession())) return api(path, { method, body, retried: true });
    return toLogin();
  }
  const text = await response.text();
  let data = null;
  if (text) {
    try { data = JSON.parse(text); } catch { data = text; }
  }
  if (!response.ok) {
    const code = data?.code || data?.error || 'error';
    const message = data?.message || data?.error_description || `The appliance answered ${response.status}.`;
    throw new ApiError(response.status, code, message, data);
  }
  return data;
}

/** A GraphQL operation on `/api/graphql`; the first error is thrown as an ApiError. */
export async function gql(query, variables = {}) {
  const result = await api('/api/graphql', { method: 'POST', body: { query, variables } });
  if (result?.errors?.length) {
    const first = result.errors[0];
    throw new ApiError(200, first.extensions?.code || 'error', first.message);
  }
  return result.data;
}

/** An element: `h('a', {href: '/x', class: 'y'}, 'text', child)`. Strings become text. */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith('on') && typeof value === 'function') {
      element.addEventListener(name.slice(2), value);
    } else if (value === true) {
      element.setAttribute(name, '');
    } else {
      element.setAttribute(name, String(value));
    }
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

export const $ = (selector, root = document) => root.querySelector(selector);
export const $$ = (selector, root = document) => [...root.querySelectorAll(selector)];

/** A status word as a coloured badge. */
export const badge = (value) => h('span', { class: `badge ${value || ''}` }, value || '—');

const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'medium' });

/** An RFC 3339 time (or Unix ms) in the user's locale, with the exact time as a tooltip. */
export function time(value) {
  if (value === null || value === undefined || value === '') return h('span', { class: 'muted' }, '—');
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) return String(value);
  return h('time', { datetime: date.toISOString(), title: date.toISOString() }, dateTime.format(date));
}

export function bytes(value) {
  if (value === null || value === undefined) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let n = Number(value);
  let unit = 0;
  while (n >= 1024 && unit < units.length - 1) { n /= 1024; unit += 1; }
  return `${n.toFixed(unit ? 1 : 0)} ${units[unit]}`;
}

/** A short message in the corner, read out by screen readers. */
export function toast(message) {
  const element = document.getElementById('toast');
  if (!element) return;
  element.textContent = message;
  element.classList.add('show');
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => element.classList.remove('show'), 3500);
}

/** Shows what went wrong beside the field the message names (`name: …`), or above the buttons. */
export function showErrors(form, error) {
  clearErrors(form);
  const message = error?.message || String(error);
  const match = /^([A-Za-z][\w.]*)(?:\[\d+\])?: /.exec(message);
  const fieldName = match?.[1]?.split('.')[0];
  const named = fieldName && form.elements.namedItem(fieldName);
  // A group of checkboxes or radios answers as a list: its first box stands for the group, and
  // its slot is `<name>-error`.
  const field = named instanceof RadioNodeList ? named[0] : named;
  if (field && field.setAttribute) {
    field.setAttribute('aria-invalid', 'true');
    const slot = document.getElementById(`${field.id || fieldName}-error`) || document.getElementById(`${fieldName}-error`);
    if (slot) {
      slot.textContent = message.slice(match[0].length);
      field.focus();
      return;
    }
  }
  const slot = form.querySelector('[data-form-error]');
  if (slot) slot.textContent = message;
  else toast(message);
}

export function clearErrors(form) {
  for (const field of form.querySelectorAll('[aria-invalid="true"]')) field.removeAttribute('aria-invalid');
  for (const slot of form.querySelectorAll('.error')) slot.textContent = '';
}

/**
 * Wires a form: the browser's own checks first (shown beside the field), then `submit(values)`.
 * While a submission is in flight the form ignores further submits (a double click or a second
 * Enter sends once); on failure the input stays and the error shows beside its field.
 */
export function bindForm(form, submit, { reset = true } = {}) {
  form.noValidate = true;
  form.addEventListener('input', (event) => {
    if (event.target.getAttribute?.('aria-invalid')) {
      event.target.removeAttribute('aria-invalid');
      const slot = document.getElementById(`${event.target.id}-error`);
      if (slot) slot.textContent = '';
    }
  });
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    if (form.dataset.busy === 'true') return;
    clearErrors(form);
    for (const field of form.elements) {
      if (field.willValidate && !field.checkValidity()) {
        field.setAttribute('aria-invalid', 'true');
        const slot = document.getElementById(`${field.id}-error`);
        if (slot) slot.textContent = field.validationMessage;
        field.focus();
        return;
      }
    }
    const buttons = $$('button[type="submit"], button:not([type])', form);
    form.dataset.busy = 'true';
    form.setAttribute('aria-busy', 'true');
    for (const button of buttons) button.disabled = true;
    try {
      await submit(formValues(form), event.submitter);
      if (reset) form.reset();
    } catch (error) {
      showErrors(form, error);
    } finally {
      form.dataset.busy = 'false';
      form.removeAttribute('aria-busy');
      for (const button of buttons) button.disabled = false;
    }
  });
}

/** A form's values: text trimmed, empty left out, checkbox groups as arrays. */
export function formValues(form) {
  const values = {};
  for (const field of form.elements) {
    if (!field.name || field.disabled) continue;
    if (field.type === 'checkbox') {
      if (field.dataset.single !== undefined) { values[field.name] = field.checked; continue; }
      values[field.name] ??= [];
      if (field.checked) values[field.name].push(field.value);
    } else if (field.type === 'radio') {
      if (field.checked) values[field.name] = field.value;
    } else if (field.multiple) {
      values[field.name] = [...field.selectedOptions].map((option) => option.value);
    } else if (field.type !== 'submit' && field.type !== 'button') {
      const value = field.value.trim();
      if (value !== '') values[field.name] = value;
    }
  }
  return values;
}

/** Replaces a table's body with rows, or shows the empty state beside it. */
export function fillTable(table, rows, empty) {
  const body = table.tBodies[0];
  body.replaceChildren(...rows);
  table.hidden = rows.length === 0;
  if (empty) empty.hidden = rows.length !== 0;
}

/** A row of cells; a cell that is already a <td>/<th> is kept as it is. */
export function row(cells, attributes = {}) {
  return h('tr', attributes, cells.map((cell) => (cell instanceof HTMLTableCellElement ? cell : h('td', {}, cell))));
}

/**
 * Relay paging with Previous/Next buttons. `load({first|last, after|before})` returns a
 * connection; `render(connection)` shows it. The cursor is kept in the URL (`after`).
 */
export function pager(nav, load, render, size = 25) {
  let connection = null;
  const previous = h('button', { type: 'button', class: 'secondary', 'data-page': 'previous' }, 'Previous');
  const next = h('button', { type: 'button', class: 'secondary', 'data-page': 'next' }, 'Next');
  const where = h('span', { class: 'muted', 'aria-live': 'polite' });
  nav.replaceChildren(previous, next, where);
  async function go(args) {
    try {
      connection = await load(args);
      render(connection);
      previous.disabled = !connection.pageInfo.hasPreviousPage;
      next.disabled = !connection.pageInfo.hasNextPage;
      where.textContent = connection.filteredCount !== undefined ? `${connection.filteredCount} in all` : '';
    } catch (error) {
      where.textContent = error.message;
    }
  }
  previous.addEventListener('click', () => go({ last: size, before: connection.pageInfo.startCursor }));
  next.addEventListener('click', () => go({ first: size, after: connection.pageInfo.endCursor }));
  return { first: () => go({ first: size }), go };
}

/** Keeps a page's filters in its address, so a view can be linked and survives a reload. */
export function readQuery() {
  const query = new URLSearchParams(location.search);
  const values = {};
  for (const [name, value] of query) (values[name] ??= []).push(value);
  return values;
}

export function writeQuery(values) {
  const query = new URLSearchParams();
  for (const [name, list] of Object.entries(values)) {
    for (const value of [].concat(list)) if (value !== undefined && value !== null && value !== '') query.append(name, value);
  }
  const search = query.toString();
  history.replaceState(null, '', search ? `${location.pathname}?${search}` : location.pathname);
}

/** Copies text to the clipboard, with a fallback for browsers that refuse the API. */
export async function copy(text) {
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    const area = h('textarea', { 'aria-hidden': 'true' }, text);
    document.body.append(area);
    area.select();
    document.execCommand('copy');
    area.remove();
  }
  toast('Copied to the clipboard.');
}

/** Runs `task` now and every `seconds` while the page is visible (live data without a reload). */
export function every(seconds, task) {
  let timer = null;
  const schedule = () => { clearTimeout(timer); timer = setTimeout(tick, seconds * 1000); };
  async function tick() {
    if (document.visibilityState === 'visible') {
      try { await task(); } catch (error) { console.warn(error); }
    }
    schedule();
  }
  document.addEventListener('visibilitychange', () => { if (document.visibilityState === 'visible') tick(); });
  schedule();
}

/** The stop functions of the page's open subscriptions: signing out closes them first. */
const liveSubscriptions = new Set();

/**
 * A GraphQL subscription over WebSocket (`graphql-transport-ws`). Calls `onNext(data)` per
 * event and `onState('live'|'reconnecting'|'stopped', detail)`; reconnects after a drop (a new
 * access token first, when the old one expired). Returns a function that stops it.
 */
export function subscribe(query, variables, onNext, onState = () => {}) {
  let socket = null;
  let stopped = false;
  let attempts = 0;
  function open() {
    const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/api/graphql`;
    socket = new WebSocket(url, 'graphql-transport-ws');
    socket.addEventListener('open', () => socket.send(JSON.stringify({ type: 'connection_init', payload: {} })));
    socket.addEventListener('message', (event) => {
      const message = JSON.parse(event.data);
      if (message.type === 'connection_ack') {
        attempts = 0;
        socket.send(JSON.stringify({ id: '1', type: 'subscribe', payload: { query, variables } }));
        onState('live');
      } else if (message.type === 'next') {
        if (message.payload?.errors?.length) onState('stopped', message.payload.errors[0].message);
        else onNext(message.payload.data);
      } else if (message.type === 'error') {
        stopped = true;
        onState('stopped', message.payload?.[0]?.message || 'the subscription was refused');
      } else if (message.type === 'ping') {
        socket.send(JSON.stringify({ type: 'pong' }));
      }
    });
    socket.addEventListener('close', async (event) => {
      if (stopped) return;
      onState('reconnecting', event.code === 4401 ? 'the session expired; renewing it' : 'the connection dropped');
      if (event.code === 4401 && !(await refreshSession())) { toLogin(); return; }
      attempts += 1;
      setTimeout(open, Math.min(30000, 500 * 2 ** attempts));
    });
  }
  const stop = () => {
    stopped = true;
    liveSubscriptions.delete(stop);
    socket?.close(1000);
    onState('stopped');
  };
  liveSubscriptions.add(stop);
  open();
  return stop;
}

/** The assistant's refusal in words: off (409 `assistant_disabled`), else its own message. */
export function assistantError(error) {
  if (error?.code === 'assistant_disabled') {
    return 'The assistant is off; an operator turns it on in the config ([assistant]).';
  }
  return error?.message || String(error);
}

/**
 * Asks the assistant (`POST path`, answered `{text, provider, model}`) and shows its answer in
 * `panel` as text (the stylesheet keeps its line breaks), a progress line while it writes, or
 * what went wrong. `button` is disabled meanwhile: one question at a time.
 */
export async function askAssistant(path, panel, button) {
  if (button) button.disabled = true;
  panel.hidden = false;
  panel.setAttribute('aria-busy', 'true');
  panel.replaceChildren(h('p', { class: 'loading', role: 'status' }, 'The assistant is writing'));
  try {
    const answer = await api(path, { method: 'POST' });
    const by = [answer?.provider, answer?.model].filter(Boolean).join(', ');
    panel.replaceChildren(
      h('div', { class: 'assistant-text' }, answer?.text || ''),
      h('p', { class: 'muted small' }, `Written by the assistant${by ? ` (${by})` : ''} from the appliance's data. It can be wrong: check before acting.`));
  } catch (error) {
    panel.replaceChildren(h('p', { class: 'error', role: 'alert' }, assistantError(error)));
  } finally {
    panel.removeAttribute('aria-busy');
    if (button) button.disabled = false;
  }
}

// --- The navigation's unread notifications badge. ---

let unread = 0;

/** Sets the navigation's unread count (the badge hides at 0); the notifications page calls it. */
export function setUnread(count) {
  unread = Math.max(0, Number(count) || 0);
  const badge = document.getElementById('unread-badge');
  const number = document.getElementById('unread-count');
  if (!badge || !number) return;
  number.textContent = unread > 99 ? '99+' : String(unread);
  badge.hidden = unread === 0;
}

const NOTIFICATION_STREAM = `subscription Notifications {
  notificationStream { id title message severity category link createdAt }
}`;

/**
 * The badge, on every page with the layout (not on sign-in, which has no badge): the unread
 * count once, then each new notification from `notificationStream` bumps it and shows its title
 * in a toast. Each one is also sent to the page as the document event `openframe:notification`
 * (`event.detail` is the notification), so a page needs no second subscription. A convenience,
 * never an error: when the appliance has no notifications (404) or the subscription is refused,
 * the badge stays as it is, silently.
 */
export async function startNotificationBadge() {
  if (!document.getElementById('unread-badge') || startNotificationBadge.started) return;
  startNotificationBadge.started = true;
  try {
    const data = await api('/api/notifications?unread=true');
    setUnread(data?.unread ?? data?.notifications?.length ?? 0);
  } catch {
    return; // No notifications here (an older appliance, or not reachable now): no badge.
  }
  try {
    let stop = null;
    stop = subscribe(NOTIFICATION_STREAM, {}, (data) => {
      const notification = data?.notificationStream;
      if (!notification) return;
      setUnread(unread + 1);
      toast(notification.title);
      document.dispatchEvent(new CustomEvent('openframe:notification', { detail: notification }));
    }, (state, detail) => {
      // Refused (not a dropped connection, which reconnects by itself): give up quietly.
      if (state === 'stopped' && detail) stop?.();
    });
  } catch {
    // No WebSocket in this browser: the count stays as loaded.
  }
}

/** The layout's own behaviour: the menu on small screens, signing out, the unread badge. */
function layout() {
  const tenant = document.body.dataset.tenant;
  if (tenant) localStorage.setItem(TENANT_KEY, tenant);
  const menu = $('.menu');
  const nav = $('#nav');
  menu?.addEventListener('click', () => {
    const open = nav.classList.toggle('open');
    menu.setAttribute('aria-expanded', String(open));
  });
  $('#sign-out')?.addEventListener('click', async (event) => {
    event.target.disabled = true;
    // Closed before the session ends, so none of them reconnects without it.
    for (const stop of [...liveSubscriptions]) stop();
    try {
      await fetch(`/oauth/logout?tenantId=${encodeURIComponent(tenant)}`, { credentials: 'same-origin' });
    } finally {
      location.assign('/login?signedOut=1');
    }
  });
  startNotificationBadge();
}

if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', layout);
else layout();
