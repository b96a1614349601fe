// Users and invitations: invite by email, resend or revoke an invitation, list the users.
import { $, h, api, badge, time, bindForm, fillTable, row, toast } from '/assets/app.js';

const SIZE = 50;
let page = 0;

async function invitations() {
  try {
    const list = await api('/api/invitations');
    $('#invitations-error').textContent = '';
    const act = (label, path, method) => async () => {
      try {
        await api(path, { method });
        toast(label);
        await invitations();
      } catch (error) {
        $('#invitations-error').textContent = error.message;
      }
    };
    const rows = list.map((invitation) => {
      const path = `/api/invitations/${encodeURIComponent(invitation.id)}`;
      const pending = invitation.status === 'PENDING';
      return row([
        invitation.email, invitation.roles.join(', '), badge(invitation.status),
        invitation.delivery === 'IN_OUTBOX' ? 'kept in the outbox (no mail server)' : invitation.delivery === 'SENT' ? 'sent' : '—',
        time(invitation.expiresAt),
        h('td', {}, pending ? [
          h('button', { type: 'button', class: 'secondary', onclick: act(`The invitation to ${invitation.email} is sent again.`, `${path}/resend`, 'POST') }, 'Resend'), ' ',
          h('button', { type: 'button', class: 'danger', onclick: act(`The invitation to ${invitation.email} is revoked.`, path, 'DELETE') }, 'Revoke'),
        ] : ''),
      ], { 'data-email': invitation.email });
    });
    fillTable($('#invitations'), rows, $('#no-invitations'));
  } catch (error) {
    $('#invitations-error').textContent = `The invitations could not load: ${error.message}`;
  }
}

async function users() {
  try {
    const result = await api(`/api/users?page=${page}&size=${SIZE}`);
    $('#users-error').textContent = '';
    const rows = result.items.map((user) => row([
      user.email, [user.firstName, user.lastName].filter(Boolean).join(' ') || '—', user.roles.join(', '),
      badge(user.status), time(user.createdAt),
    ], { 'data-email': user.email }));
    fillTable($('#users'), rows, $('#no-users'));
    const nav = $('nav.pager');
    nav.replaceChildren(
      h('button', { type: 'button', class: 'secondary', disabled: page === 0, onclick: () => { page -= 1; users(); } }, 'Previous'),
      h('button', { type: 'button', class: 'secondary', disabled: !result.hasNext, onclick: () => { page += 1; users(); } }, 'Next'),
      h('span', { class: 'muted' }, `${result.totalElements} users`));
  } catch (error) {
    $('#users-error').textContent = `The users could not load: ${error.message}`;
  }
}

bindForm($('#invite-form'), async (values) => {
  const invitation = await api('/api/invitations', { method: 'POST', body: { email: values.email, roles: [values.roles] } });
  toast(invitation.delivery === 'IN_OUTBOX'
    ? `${invitation.email} is invited; no mail server is set up, so the invitation waits in the outbox.`
    : `${invitation.email} is invited.`);
  await invitations();
});

invitations();
users();
