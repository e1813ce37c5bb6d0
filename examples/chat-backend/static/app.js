// The chat page: sign in (the backend mints a token), connect to the
// gateway with the SDK, join rooms and append what is delivered,
// deduplicated by message id. The gateway keeps the rooms' recent history:
// the page keeps each room's messages and its position together in
// localStorage, and after a reload the SDK recovers what was sent while the
// page was gone. The backend's history fills only what the gateway could not
// give (a room gap, a room without history).
import { GatewayClient } from '/sdk/index.js';

const $ = (sel) => document.querySelector(sel);

/** Messages of a room a first join asks the gateway for (`recent`), and the most kept per room. */
const RECENT = 50;
const KEEP = 200;

/** Per-tab state that survives a reload: user, device, rooms, last QoS 1 seq. */
const saved = {
  get: (k, fallback) => JSON.parse(sessionStorage.getItem(`chat.${k}`) ?? 'null') ?? fallback,
  set: (k, v) => sessionStorage.setItem(`chat.${k}`, JSON.stringify(v)),
  clear: () => Object.keys(sessionStorage).filter((k) => k.startsWith('chat.')).forEach((k) => sessionStorage.removeItem(k)),
};

/**
 * Per user and room, in localStorage (it survives a closed tab too): the
 * room's messages and the SDK's position in the room, written together so
 * that the position never covers a message the page did not keep.
 */
const roomStore = {
  key: (user, room) => `chat.room.${user}.${room}`,
  /** @returns {{position: {offset: number, epoch: string} | null, messages: object[]}} */
  get(user, room) {
    try {
      const v = JSON.parse(localStorage.getItem(this.key(user, room)) ?? 'null');
      if (v && Array.isArray(v.messages)) return v;
    } catch {
      // unreadable: as if nothing was kept
    }
    return { position: null, messages: [] };
  },
  set(user, room, position, messages) {
    try {
      localStorage.setItem(this.key(user, room), JSON.stringify({ position, messages: messages.slice(-KEEP) }));
    } catch (e) {
      notice(`cannot keep ${room}: ${e.message}`);
    }
  },
  remove(user, room) {
    localStorage.removeItem(this.key(user, room));
  },
  clear(user) {
    Object.keys(localStorage).filter((k) => k.startsWith(`chat.room.${user}.`)).forEach((k) => localStorage.removeItem(k));
  },
};

const state = {
  user: '',
  rooms: /** @type {string[]} */ ([]),
  joined: new Set(),
  joining: new Set(),
  current: '',
  /** room -> Map(id -> {id, room, user, text, ts}) */
  messages: new Map(),
  unread: new Map(),
  /** @type {GatewayClient | null} */
  client: null,
};

// One device id per tab (kept across reloads): the gateway tracks QoS 1 acks per device.
function deviceId() {
  let d = saved.get('device', '');
  if (!d) saved.set('device', (d = `tab-${Math.random().toString(36).slice(2, 10)}`));
  return d;
}

async function login(user) {
  const res = await fetch('/api/login', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ user, device: deviceId() }),
  });
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(body.error ?? `login: HTTP ${res.status}`);
  return body;
}

async function start(user) {
  const first = await login(user);
  Object.assign(state, { user, rooms: first.rooms });
  saved.set('user', user);
  let unused = first.token; // for the first connect; reconnects and refreshes ask again
  const getToken = async () => {
    const token = unused || (await login(user)).token;
    unused = '';
    return token;
  };
  // What this page had of each room when it was last open: its messages
  // (shown at once) and its position (the SDK recovers what came after it).
  const rooms = saved.get('rooms', [state.rooms[0]]).filter((r) => state.rooms.includes(r));
  const positions = {};
  for (const room of rooms) {
    const kept = roomStore.get(user, room);
    state.messages.set(room, new Map(kept.messages.map((m) => [m.id, m])));
    if (kept.position) positions[room] = kept.position;
  }
  const client = new GatewayClient({
    url: first.ws,
    getToken,
    lastSeq: saved.get('lastSeq', 0),
    positions,
  });
  state.client = client;
  // How this connection goes: a WebSocket, or SSE + POST where a WebSocket
  // cannot get through (the SDK falls back by itself).
  client.on('transport', (e) => ($('#status').dataset.transport = e.transport));
  client.on('connected', (info) => {
    setStatus('connected', info.transport === 'sse' ? 'connected (SSE)' : 'connected');
    refreshOnline();
  });
  client.on('disconnected', (e) => {
    if (e.reconnectInMs !== null) setStatus('connecting', `reconnecting (${e.reason || e.code})`);
  });
  client.on('message', onMessage);
  // After each message that moved it (the message is in state.messages already).
  client.on('position', (e) => keep(e.room));
  // Re-joined after a reconnect: the SDK recovers rooms with history; the
  // others are filled from the backend, as is what the gateway could not
  // recover (`recovered: false` after a position, a room gap).
  client.on('joined', (e) => e.rejoin && (!e.history || !e.recovered) && state.joined.has(e.room) && loadHistory(e.room));
  client.on('gap', (g) => {
    for (const room of g.room ? [g.room] : state.joined) if (state.joined.has(room)) loadHistory(room);
  });
  client.on('error', (e) => notice(e.message));
  $('#me').textContent = user;
  $('#login-view').hidden = true;
  $('#chat-view').hidden = false;
  $('#logout').hidden = false;
  setStatus('connecting', 'connecting');
  renderRooms();
  client.connect();
  const current = saved.get('current', rooms[0]);
  await Promise.all(rooms.map(join));
  if (state.joined.has(current)) select(current);
}

/** Writes a room's messages and position together (once per turn of the event loop). */
const toKeep = new Set();
function keep(room) {
  if (toKeep.size === 0) {
    queueMicrotask(() => {
      for (const r of toKeep) {
        const list = state.messages.get(r);
        if (list && state.joined.has(r)) roomStore.set(state.user, r, state.client.position(r), [...list.values()]);
      }
      toKeep.clear();
    });
  }
  toKeep.add(room);
}

function onMessage(m) {
  saved.set('lastSeq', state.client?.lastSeq ?? 0);
  let body;
  try {
    body = JSON.parse(m.text);
  } catch {
    return;
  }
  if (body.type === 'msg') addMessage(body);
  else if (body.type === 'presence') {
    presencePushes += 1;
    renderOnline(body.online);
  }
  else if (body.type === 'error') notice(body.text);
}

async function join(room) {
  if (state.joined.has(room) || state.joining.has(room)) return;
  state.joining.add(room);
  renderRooms();
  // Ready before the join: what it recovers follows the `joined` answer.
  if (!state.messages.has(room)) state.messages.set(room, new Map());
  try {
    // From the room's position when the page kept one, else the room's last
    // RECENT messages, from the gateway's history.
    const hadPosition = state.client.position(room) !== null;
    const j = await state.client.join(room, { recent: RECENT });
    state.joined.add(room);
    keep(room);
    // No history at the gateway for this room, or not back to the position
    // the page kept: the backend's (joined first, history second: nothing
    // falls between).
    if (!j.history || (hadPosition && !j.recovered)) await loadHistory(room);
    if (!state.current) select(room);
  } catch (e) {
    state.messages.delete(room);
    notice(`cannot join ${room}: ${e.message}`);
  } finally {
    state.joining.delete(room);
    saved.set('rooms', [...state.joined]);
    renderRooms();
  }
}

async function leave(room) {
  state.joined.delete(room);
  state.messages.delete(room);
  state.unread.delete(room);
  roomStore.remove(state.user, room); // the SDK forgets the position too
  saved.set('rooms', [...state.joined]);
  if (state.current === room) select([...state.joined][0] ?? '');
  renderRooms();
  await state.client.leave(room).catch((e) => notice(e.message));
}

/** The backend's history of a room; one ask at a time per room (a `joined` and its `gap` both ask). */
const historyLoads = new Map();
function loadHistory(room) {
  if (!historyLoads.has(room)) historyLoads.set(room, fetchHistory(room).finally(() => historyLoads.delete(room)));
  return historyLoads.get(room);
}

async function fetchHistory(room) {
  try {
    const res = await fetch(`/api/history?room=${encodeURIComponent(room)}&limit=50`);
    const body = await res.json();
    for (const m of body.messages ?? []) addMessage(m);
    keep(room);
  } catch (e) {
    notice(`history of ${room}: ${e.message}`);
  }
}

function addMessage(m) {
  const list = state.messages.get(m.room);
  if (!list || list.has(m.id)) return; // not joined, or seen already (history and live overlap)
  list.set(m.id, m);
  if (m.room === state.current) {
    const ol = $('#messages');
    const last = ol.lastElementChild;
    const atBottom = ol.scrollHeight - ol.scrollTop - ol.clientHeight < 40;
    if (!last || Number(last.dataset.ts) <= m.ts) ol.append(messageItem(m));
    else renderMessages(); // an older one (history after live): put it in its place
    if (atBottom || m.user === state.user) ol.scrollTop = ol.scrollHeight;
  } else {
    state.unread.set(m.room, (state.unread.get(m.room) ?? 0) + 1);
    renderRooms();
  }
}

function select(room) {
  state.current = room;
  state.unread.delete(room);
  saved.set('current', room);
  $('#room-title').textContent = room ? `# ${room}` : 'join a room';
  $('#text').disabled = $('#composer button').disabled = !room;
  renderMessages();
  renderRooms();
  if (room) $('#text').focus();
}

async function send(text) {
  const room = state.current;
  try {
    // QoS 1: the SDK retries it (same clientMsgId) until the gateway has stored it.
    await state.client.send({ backend: true }, JSON.stringify({ room, text }), { qos: 1 });
  } catch (e) {
    notice(`not sent: ${e.message}`);
  }
}

// Presence pushes seen so far, and `/api/online` asks made. A push that
// arrives while an ask is in flight was made after a change the answer may
// not include, so the answer is dropped then: the push is at least as new,
// and every later change brings its own push. So is the answer to an ask
// overtaken by a later ask (two quick reconnects).
let presencePushes = 0;
let onlineAsks = 0;

async function refreshOnline() {
  const seen = presencePushes;
  const ask = ++onlineAsks;
  try {
    const { online } = await (await fetch('/api/online')).json();
    if (presencePushes === seen && ask === onlineAsks) renderOnline(online);
  } catch (e) {
    notice(`online: ${e.message}`);
  }
}

// ---- rendering (textContent only: what users type is never HTML)

function el(tag, props = {}, ...children) {
  const e = Object.assign(document.createElement(tag), props);
  e.append(...children);
  return e;
}

function messageItem(m) {
  const li = el('li', { className: m.user === state.user ? 'mine' : '' },
    el('time', { textContent: new Date(m.ts).toLocaleTimeString() }),
    el('span', { className: 'user', textContent: m.user }),
    el('span', { className: 'text', textContent: m.text }));
  Object.assign(li.dataset, { id: m.id, ts: String(m.ts) });
  return li;
}

function renderMessages() {
  const msgs = [...(state.messages.get(state.current)?.values() ?? [])].sort((a, b) => a.ts - b.ts);
  const ol = $('#messages');
  ol.replaceChildren(...msgs.map(messageItem));
  ol.scrollTop = ol.scrollHeight;
}

function renderRooms() {
  $('#rooms').replaceChildren(...state.rooms.map((room) => {
    const joined = state.joined.has(room);
    const busy = state.joining.has(room);
    const li = el('li', { className: [joined && 'joined', room === state.current && 'current'].filter(Boolean).join(' ') },
      el('span', { className: 'name', textContent: `# ${room}`, onclick: () => joined && select(room) }));
    const n = state.unread.get(room);
    if (n) li.append(el('span', { className: 'badge', textContent: String(n) }));
    li.append(el('button', {
      type: 'button', disabled: busy, className: joined ? 'leave' : 'join',
      textContent: busy ? '…' : joined ? 'leave' : 'join',
      onclick: () => (joined ? leave(room) : join(room).then(() => state.joined.has(room) && select(room))),
    }));
    li.dataset.room = room;
    return li;
  }));
}

function renderOnline(online = []) {
  $('#online').replaceChildren(...online.map((o) => {
    const li = el('li', { textContent: o.user }, el('span', { className: 'count', textContent: o.connections > 1 ? ` ×${o.connections}` : '' }));
    li.dataset.user = o.user;
    return li;
  }));
}

function setStatus(kind, text) {
  const s = $('#status');
  s.dataset.state = kind;
  s.textContent = text;
}

function notice(text) {
  $('#notice').textContent = text;
}

// ---- wiring

$('#login-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  $('#login-error').textContent = '';
  try {
    await start(new FormData(ev.target).get('user').trim());
  } catch (e) {
    $('#login-error').textContent = e.message;
  }
});

$('#composer').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const text = $('#text').value.trim();
  if (!text || !state.current) return;
  $('#text').value = '';
  send(text);
});

$('#logout').addEventListener('click', () => {
  state.client?.close();
  roomStore.clear(state.user);
  saved.clear();
  location.reload();
});

if (saved.get('user', '')) start(saved.get('user', '')).catch((e) => ($('#login-error').textContent = e.message));
