/* #/users (administrator only): list, create (the secret shown once), disable / enable,
 * remove. The secret lives only in the DOM of the box that shows it, until the next route.
 */
import {Failure, api, ask, btn, copy, field, guard, h, heading, say, state, table, when} from './core.js';

export async function viewUsers(view) {
  view.append(heading('Users'));
  if (!state.session.is_admin) { view.append(h('p', {}, 'Only administrators can manage users.')); return; }
  const name = h('input', {id: 'user-name', required: true, autocomplete: 'off'});
  const fresh = h('div', {id: 'new-user'});
  const tbody = h('tbody');
  const userActions = (u) => {
    const ak = u.access_key, verb = u.active ? 'Disable' : 'Enable';
    return [btn(verb, () => guard(async () => {
      await api('PATCH', 'users/' + encodeURIComponent(ak), {active: !u.active});
      say(`${ak} ${u.active ? 'disabled' : 'enabled'}.`);
      await load();
    }), {class: 'small act-toggle', 'aria-label': `${verb} ${ak}`}),
    btn('Remove', (e) => ask(view, `Remove the user ${ak}${u.display_name ? ` (${u.display_name})` : ''}?`,
      'Remove user', async () => {
        try { await api('DELETE', 'users/' + encodeURIComponent(ak)); } catch (err) {
          if (err.status === 409 && err.data && err.data.buckets) {
            throw new Failure(409, err.code, `${ak} still owns buckets: ${err.data.buckets.join(', ')}. `
              + 'Delete them first (or reassign them with “bleepstore user remove --reassign-to”).');
          }
          throw err;
        }
        say(`${ak} removed.`);
        await load();
      }, e.target), {class: 'small danger act-remove', 'aria-label': `Remove ${ak}`})];
  };
  async function load() {
    const {users} = await api('GET', 'users');
    tbody.replaceChildren(...users.map((u) => {
      const ak = u.access_key, you = ak === state.session.access_key;
      return h('tr', {'data-user': ak}, h('th', {scope: 'row'}, ak, you ? ' (you)' : ''),
        h('td', {}, u.display_name || ''), h('td', {class: 'user-status'}, u.active ? 'active' : 'disabled'),
        h('td', {}, when(u.created)),
        // NOTE: the administrator is the bootstrap key, which the server never disables or removes
        h('td', {class: 'actions'}, you ? 'bootstrap key (from the configuration)' : userActions(u)));
    }));
  }
  view.append(h('form', {id: 'create-user', class: 'card inline', onsubmit: (e) => {
    e.preventDefault();
    guard(async () => {
      const u = await api('POST', 'users', {display_name: name.value.trim()});
      name.value = '';
      const ak = h('input', {id: 'new-access-key', readonly: true, value: u.access_key});
      const sk = h('input', {id: 'new-secret-key', readonly: true, value: u.secret_key});
      fresh.replaceChildren(h('section', {class: 'card secret', 'aria-labelledby': 'new-user-title'},
        h('h2', {id: 'new-user-title', tabindex: '-1'}, `New user: ${u.display_name || u.access_key}`),
        h('p', {}, h('strong', {}, 'Copy the secret key now: it is shown only this once and cannot be recovered.')),
        h('div', {class: 'inline'}, field('Access key', ak), btn('Copy', () => copy(ak), {'aria-label': 'Copy the access key'})),
        h('div', {class: 'inline'}, field('Secret key', sk), btn('Copy', () => copy(sk), {'aria-label': 'Copy the secret key'})),
        btn('Done, I saved it', () => { fresh.replaceChildren(); name.focus(); }, {id: 'new-user-done'})));
      fresh.querySelector('h2').focus();
      await load();
    });
  }}, field('Display name', name), h('button', {type: 'submit', id: 'create-user-submit'}, 'Create user')),
  fresh, table('users', 'Access keys', ['Access key', 'Display name', 'Status', 'Created', 'Actions'], tbody));
  await load();
}
