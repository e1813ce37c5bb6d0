// The gateway's operator console: the cluster's nodes and their last ten
// minutes, look-ups (presence, rooms) and actions (push, kick, drain,
// reload, upgrade), all through this node's admin API (same origin). The
// admin token lives in session storage and memory and goes out as a bearer
// token on every request; no cookies. Data only ever reaches the page as
// text (textContent), never as markup.
'use strict';

(() => {
  const { el, format, colorFor, lastOf, paintSwatches, renderCharts, renderErrorCodes } = window.GatewayCharts;
  /** Replaces `parent`'s children with `kids`, skipping null ones. */
  const fill = (parent, ...kids) => parent.replaceChildren(...kids.filter((k) => k != null));
  const TOKEN_KEY = 'gatewayAdminToken';
  const REFRESH_MS = 2000;

  const $ = (sel) => document.querySelector(sel);
  const state = {
    token: '',
    selfId: null,
    timer: null,
    polling: false,
    pollAgain: false,
    shown: null, // 'app' | 'sign-in'
    rows: new Map(), // node id -> row elements
    charts: new Map(), // metric key -> chart elements
    last: null, // the last poll's data, for a redraw on resize
  };

  try {
    state.token = sessionStorage.getItem(TOKEN_KEY) || '';
  } catch {
    state.token = '';
  }
  function saveToken(token) {
    state.token = token;
    try {
      if (token) sessionStorage.setItem(TOKEN_KEY, token);
      else sessionStorage.removeItem(TOKEN_KEY);
    } catch {
      // Storage refused (a privacy mode): the token stays in memory only.
    }
  }

  /**
   * One request to the admin API. Never throws: resolves with
   * {ok, status, statusText, body, error}; status 0 when no answer came.
   */
  async function api(method, path, { json, timeoutMs = 10_000 } = {}) {
    const headers = {};
    if (state.token) headers.Authorization = `Bearer ${state.token}`;
    const init = { method, headers, cache: 'no-store', credentials: 'omit', redirect: 'error' };
    if (json !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(json);
    }
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), timeoutMs);
    init.signal = abort.signal;
    try {
      const res = await fetch(path, init);
      const text = await res.text();
      let body = text;
      try {
        body = text ? JSON.parse(text) : null;
      } catch {
        // Not JSON: kept as text.
      }
      const error = res.ok ? null : (body && body.error) || (typeof body === 'string' && body.trim()) || res.statusText;
      return { ok: res.ok, status: res.status, statusText: res.statusText, body, error };
    } catch (e) {
      const error = e && e.name === 'AbortError' ? `no answer within ${timeoutMs / 1000} s` : `network error: ${e && e.message}`;
      return { ok: false, status: 0, statusText: '', body: null, error };
    } finally {
      clearTimeout(timer);
    }
  }

  function setStatus(text, kind) {
    const s = $('#status');
    s.textContent = text;
    s.dataset.state = kind;
  }

  // ---- sign-in ----------------------------------------------------------

  function showSignIn(message) {
    clearTimeout(state.timer);
    state.shown = 'sign-in';
    $('#app').hidden = true;
    $('#sign-out').hidden = true;
    $('#sign-in').hidden = false;
    $('#sign-in-error').textContent = message || '';
    $('#whoami').textContent = '';
    setStatus('signed out', 'idle');
    $('#token').focus();
  }

  function showApp() {
    if (state.shown !== 'app') {
      state.shown = 'app';
      $('#sign-in').hidden = true;
      $('#app').hidden = false;
    }
    $('#sign-out').hidden = !state.token;
  }

  // ---- polling ----------------------------------------------------------

  function schedule() {
    clearTimeout(state.timer);
    if (state.shown === 'app') state.timer = setTimeout(poll, REFRESH_MS);
  }

  async function poll() {
    if (state.polling) {
      state.pollAgain = true;
      return;
    }
    state.polling = true;
    try {
      await refresh();
    } catch (e) {
      setStatus(`console error: ${e && e.message}`, 'error');
    } finally {
      state.polling = false;
      if (state.pollAgain) {
        state.pollAgain = false;
        poll();
      } else schedule();
    }
  }

  async function refresh() {
    const [nodesR, selfR] = await Promise.all([api('GET', '/nodes'), api('GET', '/series')]);
    if (nodesR.status === 401 || selfR.status === 401) {
      const refused = Boolean(state.token);
      saveToken('');
      showSignIn(refused ? 'The node refused this token.' : '');
      return;
    }
    showApp();
    const problems = [];
    if (!nodesR.ok) problems.push(`GET /nodes: ${describe(nodesR)}`);
    if (!selfR.ok) problems.push(`GET /series: ${describe(selfR)}`);
    if (!nodesR.ok && !selfR.ok) {
      setStatus(problems.join('; '), 'error'); // keep showing the last good round
      return;
    }
    const nodes = nodesR.ok && Array.isArray(nodesR.body && nodesR.body.nodes) ? nodesR.body.nodes : [];
    const series = new Map();
    if (selfR.ok && selfR.body && selfR.body.node != null) {
      state.selfId = String(selfR.body.node);
      series.set(state.selfId, selfR);
      const b = selfR.body;
      $('#whoami').textContent = `on node ${b.node}${b.version ? ` · ${b.version}` : ''}${b.pid ? ` · pid ${b.pid}` : ''}`;
    }
    // No cluster (an empty registry): just this node, from its series.
    const ids = nodes.length ? nodes.map((n) => String(n.id)) : state.selfId ? [state.selfId] : [];
    const peers = ids.filter((id) => id !== state.selfId);
    const answers = await Promise.all(peers.map((id) => api('GET', `/series?node=${encodeURIComponent(id)}`)));
    peers.forEach((id, i) => {
      series.set(id, answers[i]);
      if (!answers[i].ok) problems.push(`node ${id}: ${describe(answers[i])}`);
    });
    const byId = new Map(nodes.map((n) => [String(n.id), n]));
    state.last = { ids, byId, series };
    render();
    if (problems.length) setStatus(problems.join('; '), 'error');
    else setStatus(`updated ${new Date().toLocaleTimeString()}`, 'ok');
  }

  function describe(r) {
    return r.status ? `${r.status} ${r.error || r.statusText}` : r.error;
  }

  // ---- rendering --------------------------------------------------------

  function render() {
    if (!state.last) return;
    const { ids, byId, series } = state.last;
    let total = 0;
    const sums = { msgs_in: 0, deliveries: 0, errors: 0 };
    for (const id of ids) {
      const node = byId.get(id) || {};
      const r = series.get(id);
      const s = r && r.ok && r.body ? r.body : null;
      const cur = (k) => (s && s.series ? lastOf(s.series[k]) : null);
      const conns = cur('connections') ?? node.conns ?? null;
      if (Number.isFinite(conns)) total += conns;
      for (const k of Object.keys(sums)) sums[k] += cur(k) || 0;
      renderRow(id, node, s, r, conns);
    }
    for (const [id, row] of state.rows) {
      if (!ids.includes(id)) {
        row.tr.remove();
        state.rows.delete(id);
      }
    }
    // Rows in the registry's order (by id), moved only when it changed.
    const tbody = $('#nodes tbody');
    const want = ids.map((id) => state.rows.get(id).tr);
    if (want.length !== tbody.children.length || want.some((tr, i) => tbody.children[i] !== tr)) tbody.replaceChildren(...want);
    $('#total-connections').textContent = String(total);
    $('#total-nodes').textContent = String(ids.length);
    $('#total-msgs').textContent = format(sums.msgs_in, 'rate');
    $('#total-deliveries').textContent = format(sums.deliveries, 'rate');
    $('#total-errors').textContent = format(sums.errors, 'rate');
    renderCharts($('#charts'), state.charts, ids, series);
    renderErrorCodes($('#errors-by-code'), ids, series);
  }

  function renderRow(id, node, s, r, conns) {
    let row = state.rows.get(id);
    if (!row) {
      const button = (label, what, cls) => el('button', { type: 'button', className: `small ${cls || ''}`, 'data-action': what }, label);
      row = {
        tr: el('tr', { 'data-node': id }),
        name: el('td', { className: 'node-id' }),
        state: el('td', { className: 'state' }),
        conns: el('td', { className: 'num conns' }),
        shards: el('td', { className: 'num shards' }),
        links: el('td', { className: 'num links' }),
        version: el('td', { className: 'version' }),
        pid: el('td', { className: 'num pid' }),
        ws: el('td', { className: 'addr' }),
        actions: el('td', { className: 'actions' }, [
          button('drain', 'drain', 'danger'), button('reload', 'reload'), button('upgrade', 'upgrade'),
        ]),
      };
      row.tr.append(row.name, row.state, row.conns, row.shards, row.links, row.version, row.pid, row.ws, row.actions);
      row.actions.addEventListener('click', (e) => {
        const b = e.target.closest('button[data-action]');
        if (b) nodeAction(id, b.dataset.action, b);
      });
      state.rows.set(id, row);
    }
    const draining = Boolean(node.draining || (s && s.draining));
    const st = draining ? 'draining' : 'serving';
    row.tr.dataset.state = st;
    fill(row.name,
      el('span', { className: 'swatch', 'data-color': colorFor(id) }),
      document.createTextNode(id),
      id === state.selfId ? el('span', { className: 'tag' }, 'this node') : null,
      r && !r.ok ? el('span', { className: 'note', title: describe(r) }, `no data (${r.status || 'network'})`) : null,
    );
    paintSwatches(row.name);
    row.state.textContent = st;
    // A draining node cannot be drained again or upgraded (409).
    for (const b of row.actions.querySelectorAll('button[data-action=drain], button[data-action=upgrade]')) b.disabled = draining;
    row.state.className = `state ${st}`;
    row.conns.textContent = conns == null ? '–' : String(conns);
    const shards = Array.isArray(node.bus) && node.bus.length ? node.bus.length : s && s.shards;
    row.shards.textContent = shards == null ? '–' : String(shards);
    const linksKnown = s && Number.isFinite(s.links) && s.links > 0; // 0: no peers
    row.links.textContent = linksKnown ? `${s.links_up}/${s.links}` : '–';
    row.links.classList.toggle('warn', Boolean(linksKnown && s.links_up < s.links));
    row.version.textContent = node.version || (s && s.version) || '–';
    row.pid.textContent = String(node.pid || (s && s.pid) || '–');
    row.ws.textContent = node.ws || '–';
  }

  // ---- look-ups -----------------------------------------------------------

  function table(headers, rows) {
    return el('table', { className: 'grid compact' }, [
      el('thead', {}, [el('tr', {}, headers.map((h) => el('th', {}, h)))]),
      el('tbody', {}, rows.map((cells) => el('tr', { 'data-node': String(cells[0]) }, cells.map((c) => el('td', {}, c == null ? '–' : String(c)))))),
    ]);
  }

  async function lookup(kind, name) {
    const out = $('#lookup-result');
    const path = `/${kind === 'presence' ? 'presence' : 'rooms'}/${encodeURIComponent(name)}`;
    out.dataset.kind = kind;
    out.dataset.state = 'pending';
    fill(out, el('span', { className: 'dim' }, `GET ${path} …`));
    const r = await api('GET', path);
    if (r.status === 401) return poll();
    if (!r.ok || !r.body || typeof r.body !== 'object') {
      out.dataset.state = 'error';
      fill(out, el('p', { className: 'error' }, `GET ${path}: ${describe(r)}`));
      return;
    }
    const b = r.body;
    const unreachable = Array.isArray(b.unreachable) && b.unreachable.length
      ? el('p', { className: 'warn' }, `unreachable (may be incomplete): ${b.unreachable.join(', ')}`) : null;
    out.dataset.state = 'ok';
    if (kind === 'presence') {
      const conns = Array.isArray(b.connections) ? b.connections : [];
      const nodes = Array.isArray(b.nodes) ? b.nodes : [];
      const summary = b.online ? `online: ${conns.length} connection(s) on ${nodes.join(', ') || '?'}` : 'offline';
      fill(out,
        el('p', {}, [el('b', {}, `user ${b.user}`), document.createTextNode(` — ${summary}`)]),
        conns.length ? table(['node', 'conn id', 'shard', 'device', 'transport'], conns.map((c) => [c.node, c.conn_id, c.shard, c.device, c.transport])) : null,
        unreachable,
      );
    } else {
      const per = b.nodes && typeof b.nodes === 'object' ? Object.entries(b.nodes) : [];
      fill(out,
        el('p', {}, [el('b', {}, `room ${b.room}`), document.createTextNode(` — ${b.members} member(s)`)]),
        per.length ? table(['node', 'members'], per) : null,
        unreachable,
      );
    }
  }

  // ---- actions ------------------------------------------------------------

  async function act(method, path, json, { timeoutMs, button } = {}) {
    const out = $('#action-result');
    out.dataset.state = 'pending';
    fill(out, el('span', { className: 'dim' }, `${method} ${path} …`));
    if (button) button.disabled = true;
    const r = await api(method, path, { json, timeoutMs });
    if (button) button.disabled = false;
    out.dataset.state = r.ok ? 'ok' : 'error';
    out.dataset.status = String(r.status);
    const head = r.status ? `${method} ${path} → ${r.status} ${r.statusText}` : `${method} ${path} → ${r.error}`;
    const body = r.body == null ? '' : typeof r.body === 'string' ? r.body : JSON.stringify(r.body, null, 2);
    fill(out, el('p', { className: r.ok ? 'ok' : 'error' }, head), body ? el('pre', {}, body) : null);
    if (r.status === 401) poll();
    else if (r.ok) poll(); // show the effect without waiting for the next round
    return r;
  }

  function nodeAction(id, what, button) {
    const warn = {
      drain: `Drain node ${id}? It stops accepting, asks its clients to reconnect elsewhere, and exits once they have left.`,
      reload: `Reload node ${id}'s config (keys, certificates, tokens)?`,
      upgrade: `Upgrade node ${id} in place to its binary on disk? Connections move to the new process.`,
    }[what];
    if (!warn || !window.confirm(warn)) return;
    const query = id === state.selfId ? '' : `?node=${encodeURIComponent(id)}`;
    act('POST', `/${what}${query}`, undefined, { button, timeoutMs: what === 'upgrade' ? 120_000 : 20_000 });
  }

  function onPush(e) {
    e.preventDefault();
    const f = e.currentTarget;
    const kind = f.elements.kind.value === 'user' ? 'user' : 'room';
    const target = f.elements.target.value.trim();
    const text = f.elements.text.value;
    const qos = f.elements.qos.value === '1' ? 1 : 0;
    if (!target || !text) return;
    if (!window.confirm(`Push to ${kind} "${target}" (QoS ${qos}):\n\n${text}`)) return;
    act('POST', '/push', { [kind]: target, text, qos }, { button: f.querySelector('button') });
  }

  function onKick(e) {
    e.preventDefault();
    const f = e.currentTarget;
    const user = f.elements.user.value.trim();
    if (!user || !window.confirm(`Kick every connection of user "${user}" on every node?`)) return;
    act('POST', `/kick/${encodeURIComponent(user)}`, undefined, { button: f.querySelector('button') });
  }

  // ---- wiring -------------------------------------------------------------

  $('#sign-in-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const token = $('#token').value.trim();
    if (!token) return;
    saveToken(token);
    $('#token').value = '';
    $('#sign-in-error').textContent = '';
    setStatus('signing in …', 'pending');
    poll();
  });
  $('#sign-out').addEventListener('click', () => {
    saveToken('');
    showSignIn('Signed out.');
  });
  $('#presence-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const name = e.currentTarget.elements.user.value.trim();
    if (name) lookup('presence', name);
  });
  $('#room-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const name = e.currentTarget.elements.room.value.trim();
    if (name) lookup('room', name);
  });
  $('#push-form').addEventListener('submit', onPush);
  $('#kick-form').addEventListener('submit', onKick);
  let resizeTimer = null;
  window.addEventListener('resize', () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => state.last && renderCharts($('#charts'), state.charts, state.last.ids, state.last.series), 100);
  });
  // Nothing should escape the handlers above; if something does, say so on the page.
  window.addEventListener('unhandledrejection', (e) => {
    e.preventDefault();
    setStatus(`console error: ${e.reason && e.reason.message ? e.reason.message : e.reason}`, 'error');
  });

  setStatus('connecting …', 'pending');
  poll();
})();
