// Detection thresholds: this tenant's overrides of the appliance's `[detection]` thresholds. An
// empty field follows the default (its placeholder); each field's hint says what is in effect.
// Saving replaces the tenant's overrides with the fields filled in.
import { $, api, bindForm, showErrors, clearErrors, toast, ApiError } from '/assets/app.js';

const KEYS = [
  'login_failed_count', 'login_failed_window_minutes', 'offline_devices', 'offline_window_minutes',
  'first_seen_learning_hours', 'first_seen_fleet_share', 'spike_min_count', 'policy_violation_min_count',
  'spike_z', 'baseline_hours', 'quiet_minutes', 'correlation_window_minutes',
];

const form = $('#detection-form');
/** Overrides of keys this page does not know (a newer appliance): kept as they are on save. */
let unknown = {};

const given = (value) => value !== undefined && value !== null && value !== '';

function show(settings) {
  const { effective = {}, overrides = {}, defaults = {} } = settings || {};
  unknown = Object.fromEntries(Object.entries(overrides).filter(([key]) => !KEYS.includes(key)));
  for (const key of KEYS) {
    const field = form.elements.namedItem(key);
    field.placeholder = given(defaults[key]) ? String(defaults[key]) : '';
    field.value = given(overrides[key]) ? String(overrides[key]) : '';
    const now = given(effective[key]) ? effective[key] : defaults[key];
    $(`#d-${key}-hint [data-effective]`).textContent = given(overrides[key])
      ? `In effect: ${now} (set here; the default is ${defaults[key]}).`
      : `In effect: ${now} (the default).`;
  }
  const set = Object.keys(overrides).length;
  $('#detection-state').textContent = set ? `${set} threshold${set === 1 ? '' : 's'} set for this tenant.` : 'Every threshold follows the defaults.';
}

/** The API names a key as `overrides.<key>: …`; the field is named `<key>`. */
function byField(error) {
  if (error instanceof ApiError && /^overrides\./.test(error.message)) {
    return new ApiError(error.status, error.code, error.message.replace(/^overrides\./, ''), error.data);
  }
  return error;
}

async function save(overrides) {
  try {
    show(await api('/api/detection/settings', { method: 'PUT', body: { overrides } }));
  } catch (error) {
    throw byField(error);
  }
}

async function load() {
  try {
    show(await api('/api/detection/settings'));
  } catch (error) {
    form.querySelector('[data-form-error]').textContent = `The thresholds could not load: ${error.message}`;
  }
}

bindForm(form, async (values) => {
  const overrides = { ...unknown };
  for (const key of KEYS) {
    if (given(values[key])) overrides[key] = Number(values[key]);
  }
  await save(overrides);
  toast('The thresholds are saved; detection uses them from its next pass.');
}, { reset: false });

$('#reset-defaults').addEventListener('click', async (event) => {
  if (!confirm('Reset every threshold of this tenant to the defaults?')) return;
  const button = event.currentTarget;
  button.disabled = true;
  clearErrors(form);
  try {
    await save({});
    toast('Every threshold follows the defaults again.');
  } catch (error) {
    showErrors(form, error);
  } finally {
    button.disabled = false;
  }
});

load();
