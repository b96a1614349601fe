// Tools: the registered tools with their latest health check, an on-demand test, and
// registering or editing a tool. Secrets typed here are sent once and never shown back.
import { $, h, api, ApiError, badge, time, bindForm, fillTable, row, every, toast } from '/assets/app.js';

const TYPES = { MESHCENTRAL: 'MeshCentral', FLEET_MDM: 'Fleet MDM', TACTICAL_RMM: 'Tactical RMM', OPENFRAME_RMM: 'OpenFrame RMM' };

const dialog = $('#tool-dialog');
const form = $('#tool-form');
const field = (name) => form.elements.namedItem(name);

/** The tools last listed, by id. */
let tools = new Map();
/** The latest on-demand test of each tool this visit: {healthy, message, upstreamStatus, latencyMs, at}. */
const tests = new Map();
/** The tool being edited, or null when registering a new one. */
let editing = null;

function detail(report) {
  return [report.upstreamStatus ? `HTTP ${report.upstreamStatus}` : '', report.latencyMs ? `${report.latencyMs} ms` : '']
    .filter(Boolean).join(', ');
}

function healthCell(tool) {
  const report = tool.health;
  const test = tests.get(tool.id);
  const extra = report ? detail(report) : '';
  return h('td', { 'data-health': tool.id },
    report
      ? [badge(report.healthy ? 'HEALTHY' : 'UNHEALTHY'), ' ', h('span', { class: 'muted small' }, extra),
        h('div', { class: 'small' }, report.message), h('div', { class: 'muted small' }, 'checked ', time(report.checkedAt))]
      : h('span', { class: 'muted' }, tool.healthCheckSeconds ? 'Not checked yet' : 'No periodic check'),
    test
      ? h('div', { class: 'test-result small' }, 'Test: ', badge(test.healthy ? 'HEALTHY' : 'UNHEALTHY'), ' ',
        [test.message, detail(test)].filter(Boolean).join(' · '), ' ', time(test.at))
      : '');
}

async function test(tool, button) {
  const status = $('#test-status');
  button.disabled = true;
  status.textContent = `Testing ${tool.name}…`;
  let result;
  try {
    const answer = await api(`/tools/${encodeURIComponent(tool.id)}/test`, { method: 'POST' });
    result = { healthy: answer.healthy, message: answer.message, upstreamStatus: answer.upstreamStatus, latencyMs: answer.latencyMs };
  } catch (error) {
    // An unhealthy tool answers 502 with its report; the message says what went wrong.
    if (error.status !== 502) {
      status.textContent = '';
      $('#list-error').textContent = `${tool.name} could not be tested: ${error.message}`;
      button.disabled = false;
      return;
    }
    const report = error.data || {};
    result = { healthy: false, message: report.message || error.message, upstreamStatus: report.upstreamStatus, latencyMs: report.latencyMs };
  }
  result.at = new Date().toISOString();
  tests.set(tool.id, result);
  $('#list-error').textContent = '';
  status.textContent = `${tool.name} is ${result.healthy ? 'healthy' : 'not healthy'}: ${[result.message, detail(result)].filter(Boolean).join(', ')}.`;
  const cell = $(`td[data-health="${CSS.escape(tool.id)}"]`);
  cell?.replaceWith(healthCell(tools.get(tool.id) || tool));
  button.disabled = false;
}

async function load() {
  const answer = await api('/api/tools');
  $('#list-error').textContent = '';
  tools = new Map(answer.tools.map((tool) => [tool.id, tool]));
  const rows = answer.tools.map((tool) => row([
    h('td', {}, h('strong', {}, tool.name), h('div', {}, h('code', { class: 'small' }, tool.id)),
      tool.enabled ? '' : h('div', {}, badge('DISABLED'))),
    TYPES[tool.toolType] || tool.toolType,
    h('td', {}, h('code', { class: 'small' }, tool.apiUrl), tool.wsUrl ? h('div', {}, h('code', { class: 'small' }, tool.wsUrl)) : '',
      tool.tlsVerify ? '' : h('div', { class: 'muted small' }, 'TLS not verified')),
    tool.hasCredentials ? (tool.credentialKind === 'HEADER' ? 'Stored (header)' : 'Stored (bearer token)') : h('span', { class: 'muted' }, 'None'),
    healthCell(tool),
    h('td', { class: 'row-actions' },
      h('button', {
        type: 'button', class: 'secondary', 'aria-label': `Test ${tool.name}`,
        onclick: (event) => test(tool, event.currentTarget),
      }, 'Test'), ' ',
      h('button', { type: 'button', class: 'secondary', 'aria-label': `Edit ${tool.name}`, onclick: () => open(tool) }, 'Edit')),
  ], { 'data-tool-id': tool.id }));
  fillTable($('#tools'), rows, $('#no-tools'));
}

// --- The form. ---

/** Shows a part of the form, or hides it and leaves its fields out of what is sent. */
function part(element, on) {
  element.hidden = !on;
  for (const input of element.querySelectorAll('input, select, textarea')) input.disabled = !on;
}

function arrange() {
  const kind = field('credentialKind').value;
  part($('#header-name-field'), kind === 'HEADER');
  part($('#secret-field'), kind !== '');
  part($('#clear-field'), Boolean(editing?.hasCredentials) && kind === '');
  part($('#fleet-login'), field('toolType').value === 'FLEET_MDM');
  field('headerName').required = kind === 'HEADER';
  field('credential').required = kind !== '';
}

function open(tool) {
  editing = tool;
  form.reset();
  for (const input of form.querySelectorAll('[aria-invalid="true"]')) input.removeAttribute('aria-invalid');
  for (const slot of form.querySelectorAll('.error')) slot.textContent = '';
  $('#tool-dialog-title').textContent = tool ? `Edit ${tool.name}` : 'Register tool';
  field('id').readOnly = Boolean(tool);
  if (tool) {
    field('id').value = tool.id;
    field('name').value = tool.name;
    field('toolType').value = tool.toolType;
    field('apiUrl').value = tool.apiUrl;
    field('wsUrl').value = tool.wsUrl || '';
    field('allowedPaths').value = tool.allowedPaths.join('\n');
    field('agentAllowedPaths').value = tool.agentAllowedPaths.join('\n');
    field('healthPath').value = tool.healthPath;
    field('healthCheckSeconds').value = String(tool.healthCheckSeconds);
    field('tlsVerify').checked = tool.tlsVerify;
  }
  arrange();
  dialog.showModal();
  (tool ? field('name') : field('id')).focus();
}

const lines = (text) => (text || '').split('\n').map((line) => line.trim()).filter(Boolean);

bindForm(form, async (values) => {
  const id = values.id;
  if (!editing && tools.has(id)) {
    throw new ApiError(400, 'invalid_input', `id: the tool ${id} is registered already; use its Edit button to change it`);
  }
  const body = {
    name: values.name,
    toolType: values.toolType,
    apiUrl: values.apiUrl,
    wsUrl: values.wsUrl ?? null,
    allowedPaths: lines(values.allowedPaths),
    agentAllowedPaths: lines(values.agentAllowedPaths),
    tlsVerify: values.tlsVerify,
    healthPath: values.healthPath || '/',
    healthCheckSeconds: values.healthCheckSeconds === undefined ? 60 : Number(values.healthCheckSeconds),
  };
  if (values.credentialKind) {
    body.credential = { kind: values.credentialKind, headerName: values.headerName || '', secret: values.credential };
  } else if (values.clearCredential) {
    body.clearCredential = true;
  }
  if (values.fleetLogin || values.fleetPassword) {
    if (!values.fleetLogin || !values.fleetPassword) {
      throw new ApiError(400, 'invalid_input', 'fleetLogin: give both the Fleet account email and its password');
    }
    body.fleetLogin = { email: values.fleetLogin, password: values.fleetPassword };
  }
  const saved = await api(`/api/tools/${encodeURIComponent(id)}`, { method: 'PUT', body });
  dialog.close();
  toast(editing ? `${saved.name} is saved.` : `${saved.name} is registered.`);
  editing = null;
  await load();
});

field('credentialKind').addEventListener('change', arrange);
field('toolType').addEventListener('change', arrange);
$('#new-tool').addEventListener('click', () => open(null));
dialog.querySelector('[data-close]').addEventListener('click', () => dialog.close());
// Nothing typed into the dialog (a secret, a password) stays in the page once it is closed.
dialog.addEventListener('close', () => { form.reset(); editing = null; });

load().catch((error) => { $('#list-error').textContent = `The tools could not load: ${error.message}`; });
// The appliance checks each tool periodically: the health shown follows, except while the
// dialog is open or a button of the table has the focus (rebuilding the rows would lose it).
every(30, async () => {
  if (dialog.open || $('#tools').contains(document.activeElement)) return;
  await load();
});
