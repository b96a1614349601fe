// One device: identity, inventory, tags, tool connections, recent logs, running a script, and
// the assistant's summary of its recent logs.
import { $, h, gql, badge, time, bytes, bindForm, fillTable, row, every, toast, askAssistant } from '/assets/app.js';

const machineId = decodeURIComponent(location.pathname.split('/').pop());
const QUERY = `query Device($machineId: String!) {
  device(machineId: $machineId) {
    machineId hostname displayName nickname status osType osVersion osBuild ip macAddress
    serialNumber manufacturer model timezone agentVersion lastSeen registeredAt organizationId organization { name } type
    inventory { kernel architecture cpuModel cpuCores memoryBytes reportedAt disks { mountPoint filesystem totalBytes freeBytes } networkInterfaces { name macAddress addresses } }
    tags { key color values }
    toolConnections { toolType agentToolId status connectedAt }
    installedAgents { agentType version updatedAt }
  }
  logs(filter: { deviceId: $machineId }, first: 15) {
    edges { node { id toolEventId eventType severity summary timestamp ingestDay toolType } }
  }
  scripts(filter: { statuses: [ACTIVE] }, first: 100) { edges { node { id scriptId name shell } } }
}`;
const RUN = `mutation Run($input: RunScriptInput!) { runScript(input: $input) { executionId } }`;
const RESULT = `query Result($executionId: String!) {
  runExecutions(executionId: $executionId) { machineId status exitCode stdout stderr error finishedAt }
}`;
const DONE = new Set(['SUCCESS', 'COMPLETED', 'FAILED', 'TIMED_OUT', 'CANCELLED', 'CANCELED', 'ERROR']);

function props(list, entries) {
  list.replaceChildren(...entries.filter(([, value]) => value !== undefined && value !== null && value !== '')
    .flatMap(([name, value]) => [h('dt', {}, name), h('dd', {}, value)]));
}

let scriptsLoaded = false;

async function load() {
  const data = await gql(QUERY, { machineId });
  const device = data.device;
  if (!device) {
    $('#device-title').textContent = 'Device not found';
    $('#device-summary').textContent = 'This tenant has no device with this id. It may have been deleted.';
    return;
  }
  const name = device.displayName || device.nickname || device.hostname || device.machineId;
  document.title = `${name} · OpenFrame`;
  $('#device-title').textContent = name;
  $('#device-summary').replaceChildren(badge(device.status), ' ', device.organization?.name || 'No customer', ' · last seen ', time(device.lastSeen));
  props($('#overview'), [
    ['Hostname', device.hostname], ['Machine id', h('code', {}, device.machineId)], ['Customer', device.organization
      ? h('a', { href: `/devices?${new URLSearchParams({ customer: device.organizationId })}` }, device.organization.name) : null],
    ['Type', device.type], ['OS', [device.osType, device.osVersion, device.osBuild].filter(Boolean).join(' ')],
    ['IP', device.ip], ['MAC', device.macAddress], ['Serial number', device.serialNumber],
    ['Model', [device.manufacturer, device.model].filter(Boolean).join(' ')], ['Time zone', device.timezone],
    ['Agent version', device.agentVersion], ['Registered', time(device.registeredAt)],
  ]);
  const inventory = device.inventory;
  $('#no-inventory').hidden = Boolean(inventory);
  props($('#inventory'), inventory ? [
    ['CPU', [inventory.cpuModel, inventory.cpuCores && `${inventory.cpuCores} cores`].filter(Boolean).join(', ')],
    ['Memory', inventory.memoryBytes && bytes(inventory.memoryBytes)],
    ['Kernel', [inventory.kernel, inventory.architecture].filter(Boolean).join(' ')],
    ...inventory.disks.map((disk) => [`Disk ${disk.mountPoint}`, `${bytes(disk.freeBytes)} free of ${bytes(disk.totalBytes)} (${disk.filesystem})`]),
    ...inventory.networkInterfaces.map((nic) => [`Interface ${nic.name}`, [nic.macAddress, ...nic.addresses].filter(Boolean).join(', ')]),
    ['Reported', time(inventory.reportedAt)],
  ] : []);
  $('#tags').replaceChildren(...device.tags.map((tag) => h('li', {}, h('strong', {}, tag.key), tag.values.length ? `: ${tag.values.join(', ')}` : '')));
  $('#no-tags').hidden = device.tags.length > 0;
  $('#connections').replaceChildren(...device.toolConnections.map((connection) => h('li', {},
    h('strong', {}, connection.toolType), ' ', badge(connection.status), ' ', h('code', {}, connection.agentToolId))));
  $('#no-connections').hidden = device.toolConnections.length > 0;
  $('#agents').replaceChildren(...device.installedAgents.map((agent) => h('li', {}, agent.agentType, ' ', agent.version || '')));
  const rows = data.logs.edges.map(({ node }) => row([
    time(node.timestamp), badge(node.severity), node.eventType,
    h('a', { href: `/logs?${new URLSearchParams({ device: machineId, open: [node.ingestDay, node.toolType, node.eventType, node.timestamp, node.toolEventId].join('|') })}` }, node.summary || node.eventType),
  ]));
  fillTable($('#device-logs'), rows, $('#no-logs'));
  $('#all-logs').href = `/logs?${new URLSearchParams({ device: machineId })}`;
  if (!scriptsLoaded) {
    scriptsLoaded = true;
    const select = $('#run-script');
    select.append(...data.scripts.edges.map(({ node }) => h('option', { value: node.id }, `${node.name} (${node.shell})`)));
    if (!data.scripts.edges.length) select.after(h('p', { class: 'muted' }, 'No scripts yet: ', h('a', { href: '/scripts' }, 'create one'), '.'));
  }
}

async function follow(executionId) {
  const result = $('#run-result');
  for (let attempt = 0; attempt < 150; attempt += 1) {
    const data = await gql(RESULT, { executionId });
    const execution = data.runExecutions.find((item) => item.machineId === machineId) || data.runExecutions[0];
    if (execution) {
      result.replaceChildren(h('p', {}, 'Status ', badge(execution.status), execution.exitCode !== null && execution.exitCode !== undefined ? ` · exit code ${execution.exitCode}` : ''),
        execution.stdout ? h('pre', {}, execution.stdout) : '', execution.stderr ? h('pre', {}, execution.stderr) : '',
        execution.error ? h('p', { class: 'error' }, execution.error) : '');
      if (DONE.has(execution.status) || execution.finishedAt) return;
    }
    await new Promise((resolve) => setTimeout(resolve, 2000));
  }
}

bindForm($('#run-form'), async (values) => {
  const args = (values.args || '').split('\n').map((line) => line.trim()).filter(Boolean);
  const data = await gql(RUN, { input: { machineId, scriptId: values.scriptId, args } });
  toast('The script is sent to the device.');
  $('#run-result').replaceChildren(h('p', { class: 'loading' }, 'Waiting for the device'));
  follow(data.runScript.executionId).catch((error) => { $('#run-result').textContent = error.message; });
}, { reset: false });

$('#summarise').addEventListener('click', (event) => {
  askAssistant(`/api/assistant/devices/${encodeURIComponent(machineId)}/summary`, $('#summary'), event.currentTarget);
});

load().catch((error) => { $('#device-error').textContent = `The device could not load: ${error.message}`; });
every(20, load);
