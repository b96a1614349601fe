// Assistant approvals: the assistant drafts a script from a goal; a draft waits here until an
// administrator accepts it (which only saves it to the script library) or declines it. Nothing
// runs from this page. The status filter lives in the address (`?approval=` marks one draft).
import { $, h, api, badge, time, bindForm, clearErrors, fillTable, row, readQuery, writeQuery, toast, assistantError, ApiError } from '/assets/app.js';

const SHELLS = { POWERSHELL: 'PowerShell', CMD: 'cmd', BASH: 'Bash', SHELL: 'sh', PYTHON: 'Python', NUSHELL: 'Nushell' };
const STATUSES = ['PENDING', 'ACCEPTED', 'DECLINED', 'ALL'];

const status = $('#status-filter');
const table = $('#approvals');
const draftForm = $('#draft-form');
const declineDialog = $('#decline-dialog');
const declineForm = $('#decline-form');
const query = readQuery();
if (STATUSES.includes(query.status?.[0])) status.value = query.status[0];

/** The draft to mark (from the address, or the one just made), and the one being declined. */
let marked = query.approval?.[0] || null;
let declining = null;

const path = (id, action) => `/api/assistant/approvals/${encodeURIComponent(id)}/${action}`;
const libraryLink = (name, text) => h('a', { href: `/scripts?${new URLSearchParams({ q: name || '' })}` }, text);

function remember() {
  writeQuery({ status: status.value === 'PENDING' ? '' : status.value, approval: marked });
}

/** The draft form works only while the assistant is on; past drafts are listed either way. */
function setEnabled(on) {
  $('#assistant-off').hidden = on;
  $('#draft-fields').disabled = !on;
}

async function assistant() {
  try {
    const info = await api('/api/assistant');
    setEnabled(Boolean(info.enabled));
    const by = [info.provider, info.model].filter(Boolean).join(', ');
    $('#assistant-info').textContent = info.enabled && by ? `Drafts are written by ${by}.` : '';
  } catch (error) {
    $('#assistant-info').textContent = `Whether the assistant is on could not load: ${error.message}`;
  }
}

function decision(approval) {
  if (approval.status === 'PENDING') return h('span', { class: 'muted' }, 'Not decided: nothing is saved or run yet');
  const accepted = approval.status === 'ACCEPTED';
  return h('td', {},
    h('div', {}, accepted ? 'Accepted ' : 'Declined ', time(approval.decidedAt), approval.decidedBy ? ` by ${approval.decidedBy}` : ''),
    approval.reason ? h('div', { class: 'muted small' }, `Reason: ${approval.reason}`) : '',
    accepted && approval.scriptId ? h('div', {}, libraryLink(approval.draft?.name, 'Open in the script library')) : '');
}

function approvalRow(approval) {
  const draft = approval.draft || {};
  const pending = approval.status === 'PENDING';
  const name = draft.name || 'the draft';
  return row([
    h('td', {},
      h('strong', {}, approval.goal),
      h('div', { class: 'muted small' }, `Asked by ${approval.requestedBy}`,
        approval.machineId ? [' for ', h('a', { href: `/devices/${encodeURIComponent(approval.machineId)}` }, approval.machineId)] : ''),
      // A pending draft is open for review; a decided one stays a click away.
      h('details', { open: pending },
        h('summary', {}, `Draft: ${name} (${SHELLS[draft.shell] || draft.shell || 'no shell'})`),
        draft.description ? h('p', {}, draft.description) : '',
        h('pre', {}, draft.body || ''))),
    badge(approval.status),
    time(approval.requestedAt),
    decision(approval),
    h('td', { class: 'row-actions' }, pending ? [
      h('button', {
        type: 'button', 'aria-label': `Accept ${name}: save it to the script library`,
        onclick: (event) => accept(approval, event.currentTarget),
      }, 'Accept'), ' ',
      h('button', {
        type: 'button', class: 'danger', 'aria-label': `Decline ${name}`,
        onclick: () => openDecline(approval),
      }, 'Decline'),
    ] : ''),
  ], { 'data-approval-id': approval.id, 'aria-current': marked === approval.id ? 'true' : null });
}

async function load() {
  remember();
  const address = status.value === 'ALL'
    ? '/api/assistant/approvals'
    : `/api/assistant/approvals?${new URLSearchParams({ status: status.value })}`;
  try {
    const data = await api(address);
    $('#list-error').textContent = '';
    fillTable(table, data.approvals.map(approvalRow), $('#no-approvals'));
  } catch (error) {
    $('#list-error').textContent = `The drafts could not load: ${error.message}`;
  }
}

/** The marked draft's row, shown. */
function reveal(fresh = false) {
  const tr = [...table.tBodies[0].rows].find((candidate) => candidate.dataset.approvalId === marked);
  if (!tr) return;
  if (fresh) tr.classList.add('fresh');
  tr.scrollIntoView({ block: 'nearest' });
}

async function accept(approval, button) {
  button.disabled = true;
  try {
    const done = await api(path(approval.id, 'accept'), { method: 'POST' });
    const name = done.draft?.name || approval.draft?.name;
    $('#list-error').textContent = '';
    $('#accepted').replaceChildren(`${name} is saved to the script library. It has not run anywhere: `,
      libraryLink(name, 'open it in the library'), ' to review it or run it on a device.');
    $('#accepted').hidden = false;
    toast(`${name} is saved to the script library.`);
    await load();
    $('#accepted a')?.focus();
  } catch (error) {
    $('#list-error').textContent = `${approval.draft?.name || 'The draft'} could not be accepted: ${error.message}`;
    button.disabled = false;
  }
}

function openDecline(approval) {
  declining = approval;
  declineForm.reset();
  clearErrors(declineForm);
  $('#decline-title').textContent = `Decline ${approval.draft?.name || 'the draft'}`;
  declineDialog.showModal();
  $('#decline-reason').focus();
}

bindForm(declineForm, async (values) => {
  const body = values.reason ? { reason: values.reason } : {};
  const done = await api(path(declining.id, 'decline'), { method: 'POST', body });
  declineDialog.close();
  toast(`${done.draft?.name || 'The draft'} is declined; nothing is saved.`);
  await load();
});
declineForm.querySelector('[data-close]').addEventListener('click', () => declineDialog.close());

bindForm(draftForm, async (values) => {
  const body = { goal: values.goal };
  if (values.machineId) body.machineId = values.machineId;
  $('#draft-state').textContent = 'The assistant is drafting; this can take a minute…';
  try {
    const made = await api('/api/assistant/scripts/draft', { method: 'POST', body });
    marked = made.approval.id;
    status.value = 'PENDING';
    await load();
    reveal(true);
    toast('The draft is ready for review below. Nothing runs until it is accepted.');
  } catch (error) {
    if (error.code === 'assistant_disabled') {
      setEnabled(false);
      throw new ApiError(error.status, error.code, assistantError(error));
    }
    throw error;
  } finally {
    $('#draft-state').textContent = '';
  }
});

status.addEventListener('change', () => { marked = null; load(); });

assistant();
load().then(() => reveal());
