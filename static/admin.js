// The Latchkey admin page: passkey sign-in for administrators, an overview with a daily chart,
// user search and detail with confirmed actions (revoke, grant, remove, role, disable), and the
// audit log. One module, no dependencies; every string from the service goes in as text.

import { qrMatrix, qrPath } from './qr.js';

const REAUTH = 'urn:latchkey:problem:reauthentication-required';
const NOT_SIGNED_IN = 'urn:latchkey:problem:not-signed-in';
const NOT_ADMIN = 'urn:latchkey:problem:not-admin';
const PAGE_SIZE = 50;
const EVENTS = [
  'registration',
  'signin.success',
  'signin.failure',
  'signin.counter_regression',
  'license.minted',
  'license.revoked',
  'passkey.added',
  'passkey.removed',
  'passkey.revoked',
  'entitlement.granted',
  'entitlement.removed',
  'user.role_changed',
  'user.disabled',
  'user.enabled',
  'key.rotated',
  'key.retired',
  'kek.rotated',
  'user.external_id_set',
  'user.created',
  'recovery.issued',
  'recovery.completed',
  'recovery.codes_made',
  'recovery.code_refused',
  'device.removed',
  'apikey.created',
  'apikey.revoked',
  'billing.applied',
  'billing.rejected',
  'webhook.endpoint_disabled',
  'webhook.endpoint_enabled',
];
const SCOPES = [
  ['users:read', 'Read users'],
  ['users:write', 'Disable, enable users; set external ids'],
  ['entitlements:write', 'Grant and remove entitlements'],
  ['licenses:revoke', 'Revoke licenses'],
  ['audit:read', 'Read the audit and delivery logs'],
];
const COUNTS = [
  ['users', 'Users'],
  ['admins', 'Admins'],
  ['disabled_users', 'Disabled users'],
  ['passkeys', 'Passkeys'],
  ['active_licenses', 'Active licenses'],
  ['revoked_licenses', 'Revoked licenses'],
  ['open_sessions', 'Open sessions'],
];
const SERIES = [
  { key: 'signins', label: 'sign-ins', marker: 'circle' },
  { key: 'licenses', label: 'licenses minted', marker: 'square' },
  { key: 'revocations', label: 'revocations', marker: 'triangle' },
];

const $ = (id) => document.getElementById(id);
const ui = {
  main: $('main'),
  who: $('who'),
  signout: $('signout-button'),
  activity: $('activity'),
  error: $('error'),
  loading: $('loading'),
  signin: $('signin'),
  signinForm: $('signin-form'),
  username: $('username'),
  notAdmin: $('not-admin'),
  console: $('console'),
  counts: $('counts'),
  chart: $('chart'),
  dailyRows: $('daily-rows'),
  searchForm: $('search-form'),
  search: $('search'),
  usersSummary: $('users-summary'),
  usersTable: $('users-table'),
  usersRows: $('users-rows'),
  usersMore: $('users-more'),
  detail: $('detail'),
  detailTitle: $('detail-title'),
  detailFacts: $('detail-facts'),
  roleButton: $('role-button'),
  disableButton: $('disable-button'),
  passkeyList: $('passkey-list'),
  licensesEmpty: $('licenses-empty'),
  licensesTable: $('licenses-table'),
  licenseRows: $('license-rows'),
  entitlementList: $('entitlement-list'),
  deviceList: $('device-list'),
  grantForm: $('grant-form'),
  grantName: $('grant-name'),
  grantExpiry: $('grant-expiry'),
  recoveryForm: $('recovery-form'),
  recoveryTtl: $('recovery-ttl'),
  recoveryRevoke: $('recovery-revoke'),
  recoveryLink: $('recovery-link'),
  recoveryUrl: $('recovery-url'),
  recoveryExpiry: $('recovery-expiry'),
  recoveryQr: $('recovery-qr'),
  sessionsEmpty: $('sessions-empty'),
  sessionsTable: $('sessions-table'),
  sessionRows: $('session-rows'),
  auditForm: $('audit-form'),
  auditEvent: $('audit-event'),
  auditUser: $('audit-user'),
  auditUserLabel: $('audit-user-label'),
  auditSummary: $('audit-summary'),
  auditTable: $('audit-table'),
  auditRows: $('audit-rows'),
  auditMore: $('audit-more'),
  externalForm: $('external-form'),
  externalId: $('external-id'),
  apikeysSummary: $('apikeys-summary'),
  apikeysTable: $('apikeys-table'),
  apikeysRows: $('apikeys-rows'),
  apikeyForm: $('apikey-form'),
  apikeyName: $('apikey-name'),
  apikeyExpiry: $('apikey-expiry'),
  apikeyScopes: $('apikey-scopes'),
  apikeySecret: $('apikey-secret'),
  apikeySecretValue: $('apikey-secret-value'),
  endpointList: $('endpoint-list'),
  webhooksSummary: $('webhooks-summary'),
  deliveriesTable: $('deliveries-table'),
  deliveryRows: $('delivery-rows'),
  dialog: $('confirm'),
  dialogTitle: $('confirm-title'),
  dialogText: $('confirm-text'),
  dialogOk: $('confirm-ok'),
  dialogCancel: $('confirm-cancel'),
};

const state = {
  me: null,
  /** The user detail on screen, as the service sent it. */
  viewing: null,
  users: { query: '', cursor: null, seq: 0, shown: 0 },
  audit: { cursor: null, seq: 0, shown: 0, loaded: false },
  detailSeq: 0,
  daily: [],
  /** user id -> username, from every list seen, to name actors in the audit log. */
  names: new Map(),
};

// ------------------------------------------------------------------------------- service

class ServiceError extends Error {
  constructor(message, { status = 0, type = null, problem = null } = {}) {
    super(message);
    this.name = 'ServiceError';
    this.status = status;
    this.type = type;
    this.problem = problem;
  }
}

/** One JSON request; a non-2xx answer becomes a ServiceError carrying the problem's detail. */
// Where the service is: this module's own folder (the base path, e.g. /auth/).
const BASE = new URL('.', import.meta.url).pathname.replace(/\/$/, '');

async function api(method, path, body) {
  const init = { method, credentials: 'same-origin', cache: 'no-store', headers: { Accept: 'application/json' } };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(BASE + path, init);
  } catch {
    throw new ServiceError('The service cannot be reached. Check the connection and try again.');
  }
  const text = await res.text();
  let json = null;
  if (text && /json/i.test(res.headers.get('Content-Type') ?? '')) {
    try {
      json = JSON.parse(text);
    } catch {
      json = null;
    }
  }
  if (res.ok) return json;
  const detail = typeof json?.detail === 'string' && json.detail ? json.detail : null;
  const title = typeof json?.title === 'string' && json.title ? json.title : null;
  throw new ServiceError(detail ?? title ?? `The service answered ${res.status}${res.statusText ? ` ${res.statusText}` : ''}.`, {
    status: res.status,
    type: typeof json?.type === 'string' ? json.type : null,
    problem: json,
  });
}

const query = (params) => {
  const search = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== null && v !== undefined && v !== '') search.set(k, String(v));
  return search.toString();
};

// ------------------------------------------------------------------------------ passkeys

function b64urlToBytes(text) {
  const b64 = text.replace(/-/g, '+').replace(/_/g, '/');
  const raw = atob(b64 + '='.repeat((4 - (b64.length % 4)) % 4));
  return Uint8Array.from(raw, (c) => c.charCodeAt(0));
}

function bytesToB64url(buffer) {
  let raw = '';
  for (const byte of new Uint8Array(buffer)) raw += String.fromCharCode(byte);
  return btoa(raw).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

/** WebAuthn request options from their JSON form (the browser's own parser when it has one). */
function requestOptions(json) {
  if (typeof PublicKeyCredential.parseRequestOptionsFromJSON === 'function') {
    return PublicKeyCredential.parseRequestOptionsFromJSON(json);
  }
  return {
    ...json,
    challenge: b64urlToBytes(json.challenge),
    allowCredentials: (json.allowCredentials ?? []).map((c) => ({ ...c, id: b64urlToBytes(c.id) })),
  };
}

function credentialJson(credential) {
  if (typeof credential.toJSON === 'function') return credential.toJSON();
  const r = credential.response;
  return {
    id: credential.id,
    rawId: bytesToB64url(credential.rawId),
    type: credential.type,
    authenticatorAttachment: credential.authenticatorAttachment ?? undefined,
    clientExtensionResults: credential.getClientExtensionResults?.() ?? {},
    response: {
      clientDataJSON: bytesToB64url(r.clientDataJSON),
      authenticatorData: bytesToB64url(r.authenticatorData),
      signature: bytesToB64url(r.signature),
      userHandle: r.userHandle ? bytesToB64url(r.userHandle) : undefined,
    },
  };
}

/** The sign-in ceremony; returns `{user_id, username, entitlements}`. */
async function passkeySignIn(username) {
  if (!window.PublicKeyCredential || !navigator.credentials) {
    throw new ServiceError('This browser does not support passkeys.');
  }
  const { publicKey } = await api('POST', '/api/login/start', username ? { username } : {});
  let credential;
  try {
    credential = await navigator.credentials.get({ publicKey: requestOptions(publicKey) });
  } catch (error) {
    const messages = {
      NotAllowedError: 'The passkey request was cancelled or timed out.',
      SecurityError: 'Passkeys are not allowed on this address.',
      AbortError: 'The passkey request was cancelled.',
    };
    throw new ServiceError(messages[error?.name] ?? `The passkey request failed (${error?.message ?? error}).`);
  }
  if (!credential) throw new ServiceError('The passkey request was cancelled.');
  return api('POST', '/api/login/finish', credentialJson(credential));
}

// ---------------------------------------------------------------------------- page state

let busyCount = 0;

function setBusy(delta) {
  busyCount = Math.max(0, busyCount + delta);
  ui.main.setAttribute('aria-busy', String(busyCount > 0));
}

function say(text) {
  ui.activity.textContent = text;
}

function showError(message) {
  ui.error.textContent = message;
  ui.error.hidden = false;
}

function clearError() {
  ui.error.textContent = '';
  ui.error.hidden = true;
}

class Cancelled extends Error {}

/** Runs one piece of work with progress text; errors are shown, and decide what the page shows. */
async function run(progress, work) {
  clearError();
  setBusy(1);
  if (progress) say(`${progress}…`);
  try {
    await work();
  } catch (error) {
    say('');
    if (error instanceof Cancelled) say(error.message);
    else handleError(error);
  } finally {
    setBusy(-1);
  }
}

function handleError(error) {
  if (error instanceof ServiceError && error.status === 403 && error.type === NOT_ADMIN) {
    showNotAdmin();
    return;
  }
  if (error instanceof ServiceError && error.status === 401 && error.type === NOT_SIGNED_IN && state.me) {
    showSignedOut();
    showError(`${error.message} Sign in again.`);
    return;
  }
  showError(error?.message || String(error));
}

function showSignedOut() {
  state.me = null;
  state.viewing = null;
  ui.loading.hidden = true;
  ui.who.textContent = 'Not signed in';
  ui.signout.hidden = true;
  ui.signin.hidden = false;
  ui.notAdmin.hidden = true;
  ui.console.hidden = true;
}

function showNotAdmin() {
  ui.signin.hidden = true;
  ui.console.hidden = true;
  ui.notAdmin.hidden = false;
  ui.signout.hidden = false;
}

function showSignedIn(me) {
  state.me = me;
  ui.loading.hidden = true;
  ui.who.textContent = `Signed in as ${me.username}${me.role === 'admin' ? ' (admin)' : ''}`;
  ui.signout.hidden = false;
  ui.signin.hidden = true;
  if (me.role !== 'admin') {
    showNotAdmin();
    return false;
  }
  ui.notAdmin.hidden = true;
  ui.console.hidden = false;
  return true;
}

// ------------------------------------------------------------------------------ dialogs

/**
 * Asks before acting. Resolves true on Confirm; Cancel, Escape and closing resolve false.
 * The safe choice has focus first.
 */
function ask({ title, text, confirm = 'Confirm', danger = true }) {
  ui.dialogTitle.textContent = title;
  ui.dialogText.textContent = text;
  ui.dialogOk.textContent = confirm;
  ui.dialogOk.className = danger ? 'danger' : '';
  ui.dialog.returnValue = '';
  return new Promise((resolve) => {
    ui.dialog.addEventListener('close', () => resolve(ui.dialog.returnValue === 'confirm'), { once: true });
    ui.dialog.showModal();
    (danger ? ui.dialogCancel : ui.dialogOk).focus();
  });
}

/** Runs a state-changing request; when the service wants a fresh passkey sign-in, gets one and retries once. */
async function withReauth(request) {
  try {
    return await request();
  } catch (error) {
    if (!(error instanceof ServiceError && error.status === 401 && error.type === REAUTH)) throw error;
    const me = state.me;
    say("Confirm it's you");
    const ok = await ask({
      title: "Confirm it's you",
      text: `This action needs a recent passkey sign-in. Use your passkey for ${me.username} to continue.`,
      confirm: 'Use passkey',
      danger: false,
    });
    if (!ok) throw new Cancelled('Cancelled: nothing was changed.');
    say('Waiting for your passkey…');
    const user = await passkeySignIn(me.username);
    if (user.user_id !== me.user_id) throw new ServiceError('That passkey belongs to another account; nothing was changed.');
    say('Confirmed. Trying again…');
    return request();
  }
}

/** Confirms, then performs one admin action on the user on screen and shows the result. */
let acting = false;

function act({ title, text, progress, done, request, danger = true }) {
  if (acting || ui.dialog.open) return Promise.resolve();
  acting = true;
  const focusKey = document.activeElement?.dataset?.key;
  const userId = state.viewing?.user.id;
  return run('', async () => {
    try {
      if (!(await ask({ title, text, danger }))) throw new Cancelled('Cancelled: nothing was changed.');
      say(`${progress}…`);
      await withReauth(request);
    } finally {
      acting = false;
    }
    await Promise.all([userId ? loadDetail(userId, { quiet: true }) : null, refreshAround()]);
    say(done);
    restoreFocus(focusKey);
  });
}

/** Reloads what an action may have changed besides the detail: counts, and the audit log. */
async function refreshAround() {
  const jobs = [loadOverview().catch(() => {})];
  if (state.audit.loaded) jobs.push(loadAudit({ append: false }).catch(() => {}));
  await Promise.all(jobs);
}

function restoreFocus(key) {
  const target = key ? ui.detail.querySelector(`[data-key="${CSS.escape(key)}"]`) : null;
  if (target && !target.hidden) target.focus();
  else if (!ui.detail.contains(document.activeElement) || document.activeElement === document.body) ui.detailTitle.focus();
}

// ------------------------------------------------------------------------------ helpers

/** Creates an element; `props` are properties, except `attrs` (attributes) and `data`. */
function h(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  const { attrs, data, ...rest } = props;
  Object.assign(node, rest);
  for (const [k, v] of Object.entries(attrs ?? {})) if (v !== null && v !== undefined) node.setAttribute(k, v);
  for (const [k, v] of Object.entries(data ?? {})) node.dataset[k] = v;
  node.append(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
  return node;
}

const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });
const dateOnly = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium' });
const dayLabel = new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric', timeZone: 'UTC' });
const dayLong = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeZone: 'UTC' });
const number = new Intl.NumberFormat();

function parseTime(value) {
  const d = value ? new Date(value) : null;
  return d && !Number.isNaN(d.getTime()) ? d : null;
}

/** A <time> element, or plain text for a missing time. */
function time(value, { missing = '—', format = dateTime } = {}) {
  const d = parseTime(value);
  if (!d) return document.createTextNode(missing);
  return h('time', { dateTime: value, textContent: format.format(d), title: d.toISOString() });
}

const dayDate = (day) => new Date(`${day}T00:00:00Z`);
const short = (text, n = 8) => (text ? String(text).slice(0, n) : '');
// License ids are UUIDv7: their first digits are the time they were minted,
// shared by every license of that minute, so a license is named by its last
// (random) digits.
const idTag = (id, n = 8) => (/^[0-9a-f]{32}$/.test(id ?? '') ? id.slice(-n) : short(id, n));
const plural = (n, one, many) => `${number.format(n)} ${n === 1 ? one : many}`;
const nameOf = (id) => (id ? state.names.get(id) ?? short(id) : '—');

function badge(text, kind) {
  return h('span', { className: `badge ${kind ?? ''}`.trim(), textContent: text });
}

function cell(...children) {
  return h('td', {}, ...children);
}

// ------------------------------------------------------------------------------ overview

async function loadOverview() {
  const overview = await api('GET', '/api/admin/overview');
  renderCounts(overview.counts ?? {});
  state.daily = Array.isArray(overview.daily) ? overview.daily : [];
  renderDaily();
}

function renderCounts(counts) {
  ui.counts.replaceChildren(
    ...COUNTS.map(([key, label]) =>
      h('div', { className: 'count' }, h('dt', { textContent: label }), h('dd', { textContent: number.format(counts[key] ?? 0) })),
    ),
  );
}

function renderDaily() {
  const daily = state.daily;
  ui.dailyRows.replaceChildren(
    ...daily.map((d) =>
      h(
        'tr',
        {},
        h('th', { scope: 'row' }, h('time', { dateTime: d.day, textContent: dayLong.format(dayDate(d.day)) })),
        ...SERIES.map((s) => h('td', { textContent: number.format(d[s.key] ?? 0) })),
      ),
    ),
  );
  renderChart();
}

const SVG = 'http://www.w3.org/2000/svg';

function s(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  node.append(...children);
  return node;
}

/** A round upper bound and step for the y axis. */
function yScale(max) {
  if (max <= 4) return { top: 4, step: 1 };
  const rough = max / 4;
  const magnitude = 10 ** Math.floor(Math.log10(rough));
  const step = [1, 2, 5, 10].map((m) => m * magnitude).find((v) => v >= rough);
  return { top: Math.ceil(max / step) * step, step };
}

function marker(kind, x, y) {
  if (kind === 'circle') return s('circle', { cx: x, cy: y, r: 3.5 });
  if (kind === 'square') return s('rect', { x: x - 3.5, y: y - 3.5, width: 7, height: 7 });
  return s('path', { d: `M${x},${y - 4.5}L${x + 4.5},${y + 3.5}L${x - 4.5},${y + 3.5}Z` });
}

function chartSummary(daily) {
  if (!daily.length) return 'No activity data.';
  const first = dayLong.format(dayDate(daily[0].day));
  const last = dayLong.format(dayDate(daily[daily.length - 1].day));
  const parts = SERIES.map((series) => {
    const total = daily.reduce((sum, d) => sum + (d[series.key] ?? 0), 0);
    const top = daily.reduce((best, d) => ((d[series.key] ?? 0) > (best[series.key] ?? 0) ? d : best), daily[0]);
    const most = total > 0 ? ` (most on ${dayLong.format(dayDate(top.day))}: ${number.format(top[series.key])})` : '';
    return `${number.format(total)} ${series.label}${most}`;
  });
  return `From ${first} to ${last}: ${parts.join('; ')}. The table below lists every day.`;
}

function renderChart() {
  const daily = state.daily;
  const width = Math.max(280, Math.round(ui.chart.clientWidth || 600));
  const height = width < 480 ? 200 : 260;
  const pad = { left: 40, right: 14, top: 14, bottom: 30 };
  const plotW = width - pad.left - pad.right;
  const plotH = height - pad.top - pad.bottom;
  const max = Math.max(0, ...daily.flatMap((d) => SERIES.map((series) => Number(d[series.key]) || 0)));
  const { top, step } = yScale(max);
  const x = (i) => pad.left + (daily.length > 1 ? (i * plotW) / (daily.length - 1) : plotW / 2);
  const y = (v) => pad.top + plotH - (v / top) * plotH;

  const svg = s('svg', {
    viewBox: `0 0 ${width} ${height}`,
    width,
    height,
    role: 'img',
    'aria-labelledby': 'chart-title chart-desc',
    class: 'chart-svg',
  });
  svg.append(s('title', { id: 'chart-title' }, 'Sign-ins, licenses minted and revocations per day'));
  svg.append(s('desc', { id: 'chart-desc' }, chartSummary(daily)));

  const grid = s('g', { class: 'grid' });
  for (let v = 0; v <= top; v += step) {
    grid.append(s('line', { x1: pad.left, x2: width - pad.right, y1: y(v), y2: y(v) }));
    grid.append(s('text', { x: pad.left - 6, y: y(v), 'text-anchor': 'end', 'dominant-baseline': 'middle' }, number.format(v)));
  }
  svg.append(grid);

  if (daily.length) {
    const axis = s('g', { class: 'axis' });
    const ticks = [...new Set([0, Math.floor((daily.length - 1) / 2), daily.length - 1])];
    for (const i of ticks) {
      const anchor = i === 0 ? 'start' : i === daily.length - 1 ? 'end' : 'middle';
      axis.append(s('text', { x: x(i), y: height - 8, 'text-anchor': daily.length > 1 ? anchor : 'middle' }, dayLabel.format(dayDate(daily[i].day))));
    }
    svg.append(axis);
  }

  for (const series of SERIES) {
    const group = s('g', { class: `series s-${series.key}` });
    const points = daily.map((d, i) => [x(i), y(Number(d[series.key]) || 0)]);
    if (points.length > 1) {
      group.append(s('polyline', { class: 'line', points: points.map(([px, py]) => `${px.toFixed(1)},${py.toFixed(1)}`).join(' ') }));
    }
    const markers = s('g', { class: 'markers' });
    daily.forEach((d, i) => {
      const m = marker(series.marker, ...points[i]);
      m.append(s('title', {}, `${dayLong.format(dayDate(d.day))}: ${number.format(d[series.key] ?? 0)} ${series.label}`));
      markers.append(m);
    });
    group.append(markers);
    svg.append(group);
  }
  ui.chart.replaceChildren(svg);
}

let chartWidth = 0;
new ResizeObserver(() => {
  const width = Math.round(ui.chart.clientWidth);
  if (width && width !== chartWidth && !ui.console.hidden) {
    chartWidth = width;
    renderChart();
  }
}).observe(ui.chart);

// --------------------------------------------------------------------------------- users

async function loadUsers({ append }) {
  const seq = ++state.users.seq;
  const cursor = append ? state.users.cursor : null;
  const page = await api('GET', `/api/admin/users?${query({ q: state.users.query, limit: PAGE_SIZE, cursor })}`);
  if (seq !== state.users.seq) return;
  const users = Array.isArray(page.users) ? page.users : [];
  for (const u of users) state.names.set(u.id, u.username);
  const rows = users.map(userRow);
  if (append) ui.usersRows.append(...rows);
  else ui.usersRows.replaceChildren(...rows);
  state.users.cursor = page.next_cursor ?? null;
  state.users.shown = (append ? state.users.shown : 0) + users.length;
  ui.usersTable.hidden = state.users.shown === 0;
  ui.usersMore.hidden = !state.users.cursor;
  const q = state.users.query;
  ui.usersSummary.textContent =
    state.users.shown === 0
      ? q
        ? `No users match “${q}”.`
        : 'No users yet.'
      : `${plural(state.users.shown, 'user', 'users')}${q ? ` matching “${q}”` : ''}${state.users.cursor ? ', more available' : ''}.`;
  if (append && rows.length) rows[0].querySelector('a')?.focus();
}

function userRow(user) {
  return h(
    'tr',
    { data: { user: user.id } },
    h('th', { scope: 'row' }, h('a', { href: `#user=${encodeURIComponent(user.id)}`, textContent: user.username })),
    cell(user.display_name ?? ''),
    cell(user.role === 'admin' ? badge('admin', 'info') : 'user'),
    cell(user.disabled ? badge('Disabled', 'bad') : 'Active'),
    h('td', { className: 'num', textContent: number.format(user.passkeys ?? 0) }),
    cell(user.external_id ? h('code', { textContent: user.external_id }) : '—'),
    cell(time(user.created_at, { format: dateOnly })),
  );
}

// -------------------------------------------------------------------------------- detail

async function loadDetail(id, { quiet = false } = {}) {
  const seq = ++state.detailSeq;
  const detail = await api('GET', `/api/admin/users/${encodeURIComponent(id)}`);
  if (seq !== state.detailSeq) return;
  if (state.viewing?.user.id !== detail.user.id) ui.recoveryLink.hidden = true;
  state.viewing = detail;
  state.names.set(detail.user.id, detail.user.username);
  renderDetail(detail);
  // Keep the user's row in the list in step with what the detail shows.
  const row = ui.usersRows.querySelector(`tr[data-user="${CSS.escape(detail.user.id)}"]`);
  const passkeys = (detail.passkeys ?? []).filter((p) => !p.revoked_at).length;
  row?.replaceWith(userRow({ ...detail.user, passkeys }));
  ui.detail.hidden = false;
  if (!quiet) {
    ui.detailTitle.focus();
    ui.detail.scrollIntoView({ block: 'start' });
  }
}

function renderDetail({ user, passkeys = [], licenses = [], entitlements = [], sessions = [], devices = [] }) {
  ui.detailTitle.textContent = `User ${user.username}`;
  ui.detailFacts.replaceChildren(
    ...[
      ['Name', user.display_name ?? '—'],
      ['Role', user.role],
      ['Status', user.disabled ? badge('Disabled', 'bad') : 'Active'],
      ['Created', time(user.created_at)],
      ['User id', h('code', { textContent: user.id })],
      ['External id', user.external_id ? h('code', { textContent: user.external_id }) : '—'],
    ].map(([k, v]) => h('div', {}, h('dt', { textContent: k }), h('dd', {}, v))),
  );

  const makeAdmin = user.role !== 'admin';
  ui.roleButton.textContent = makeAdmin ? 'Make admin' : 'Make user';
  ui.roleButton.dataset.key = 'role';
  ui.disableButton.textContent = user.disabled ? 'Enable user' : 'Disable user';
  ui.disableButton.className = user.disabled ? 'secondary' : 'danger';
  ui.disableButton.dataset.key = 'disable';

  if (document.activeElement !== ui.externalId) ui.externalId.value = user.external_id ?? '';
  renderPasskeys(user, passkeys);
  renderLicenses(user, licenses);
  renderEntitlements(user, entitlements);
  renderDevices(user, devices);
  const labels = passkeyLabels(passkeys);
  renderSessions(sessions, new Map(passkeys.map((p, i) => [p.id, labels[i]])));

  ui.auditUser.disabled = false;
  ui.auditUserLabel.textContent = `Only events for ${user.username}`;
}

function passkeyLabels(passkeys) {
  const counts = new Map();
  for (const p of passkeys) counts.set(p.name, (counts.get(p.name) ?? 0) + 1);
  return passkeys.map((p) => {
    const name = p.name || `passkey ${short(p.id)}`;
    return p.name && counts.get(p.name) > 1 ? `${name} (${short(p.id)})` : name;
  });
}

function renderPasskeys(user, passkeys) {
  const labels = passkeyLabels(passkeys);
  ui.passkeyList.replaceChildren(
    ...passkeys.map((p, i) => {
      const label = labels[i];
      const sync = p.backup_state ? 'synced' : p.backup_eligible ? 'can sync' : 'this device only';
      const status = p.revoked_at
        ? h('p', { className: 'state' }, badge('Revoked', 'bad'), ' ', time(p.revoked_at))
        : h('p', { className: 'state' }, badge('Active', 'ok'));
      const meta = h(
        'p',
        { className: 'meta' },
        'Added ',
        time(p.created_at),
        ' · last used ',
        time(p.last_used_at, { missing: 'never' }),
        ` · ${sync}`,
        p.provider ? ` · kept by ${p.provider}` : '',
      );
      const item = h('li', { className: `item${p.revoked_at ? ' revoked' : ''}`, data: { passkey: p.id } }, h('p', { className: 'item-name', textContent: label }), status, meta);
      if (!p.revoked_at) {
        const button = h('button', {
          type: 'button',
          className: 'danger small',
          textContent: 'Revoke',
          attrs: { 'aria-label': `Revoke passkey ${label}` },
          data: { key: `passkey:${p.id}` },
        });
        button.addEventListener('click', () =>
          act({
            title: `Revoke passkey ${label}?`,
            text: `${user.username} can no longer sign in with it. The sessions it opened end and the licenses minted in them are revoked.`,
            progress: `Revoking passkey ${label}`,
            done: `Passkey ${label} revoked.`,
            request: () => api('DELETE', `/api/admin/credentials/${encodeURIComponent(p.id)}`),
          }),
        );
        item.append(h('div', { className: 'actions' }, button));
      }
      return item;
    }),
  );
  if (!passkeys.length) ui.passkeyList.append(h('li', { className: 'empty', textContent: 'No passkeys.' }));
}

function licenseStatus(license) {
  if (license.status === 'active') return badge('active', 'ok');
  const reason = license.revoked_reason ? ` (${license.revoked_reason})` : '';
  return h('span', {}, badge(license.status, license.status === 'revoked' ? 'bad' : ''), reason);
}

function renderLicenses(user, licenses) {
  ui.licensesEmpty.hidden = licenses.length > 0;
  ui.licensesTable.hidden = licenses.length === 0;
  ui.licenseRows.replaceChildren(
    ...licenses.map((license) => {
      const id = idTag(license.jti);
      let action = cell('');
      if (license.status === 'active') {
        const button = h('button', {
          type: 'button',
          className: 'danger small',
          textContent: 'Revoke',
          attrs: { 'aria-label': `Revoke license ${id}` },
          data: { key: `license:${license.jti}` },
        });
        button.addEventListener('click', () =>
          act({
            title: `Revoke license ${id}?`,
            text: `It stops working online at once, and offline the next time ${user.username}'s app connects.`,
            progress: `Revoking license ${id}`,
            done: `License ${id} revoked.`,
            request: () => api('POST', `/api/admin/licenses/${encodeURIComponent(license.jti)}/revoke`),
          }),
        );
        action = cell(button);
      }
      const listed = license.status_list ? `status list ${license.status_list.id}, entry ${license.status_list.idx}` : null;
      return h(
        'tr',
        { data: { license: license.jti } },
        h('th', { scope: 'row' }, h('code', { textContent: id, title: [license.jti, listed].filter(Boolean).join('\n') })),
        cell(licenseStatus(license)),
        cell((license.entitlements ?? []).join(', ') || '—'),
        cell(h('code', { textContent: short(license.device_jkt) || '—', title: license.device_jkt ?? '' })),
        cell(time(license.issued_at)),
        cell(time(license.expires_at)),
        action,
      );
    }),
  );
}

function renderDevices(user, devices) {
  ui.deviceList.replaceChildren(
    ...devices.map((d) => {
      const label = `${d.name} (${short(d.id)})`;
      const button = h('button', {
        type: 'button',
        className: 'danger small',
        textContent: 'Remove',
        attrs: { 'aria-label': `Remove device ${label}` },
        data: { key: `device:${d.id}` },
      });
      button.addEventListener('click', () =>
        act({
          title: `Remove device ${label}?`,
          text: `Its licenses are revoked and the sign-ins that minted them end; it locks the next time ${user.username}'s app connects there.`,
          progress: `Removing device ${label}`,
          done: `Device ${label} removed.`,
          request: () => api('DELETE', `/api/admin/users/${encodeURIComponent(user.id)}/devices/${encodeURIComponent(d.id)}`),
        }),
      );
      return h(
        'li',
        { className: 'item row' },
        h(
          'div',
          {},
          h('p', { className: 'item-name', textContent: label }),
          h('p', { className: 'meta' }, 'First seen ', time(d.first_seen), ' · last sync ', time(d.last_sync), ` · ${plural(d.active_licenses, 'active license', 'active licenses')}`),
        ),
        button,
      );
    }),
  );
  if (!devices.length) ui.deviceList.append(h('li', { className: 'empty', textContent: 'No devices.' }));
}

function renderEntitlements(user, entitlements) {
  ui.entitlementList.replaceChildren(
    ...entitlements.map((e) => {
      const button = h('button', {
        type: 'button',
        className: 'danger small',
        textContent: 'Remove',
        attrs: { 'aria-label': `Remove entitlement ${e.name}` },
        data: { key: `entitlement:${e.name}` },
      });
      button.addEventListener('click', () =>
        act({
          title: `Remove entitlement ${e.name}?`,
          text: `${user.username} loses ${e.name} now; licenses that carry it are revoked.`,
          progress: `Removing entitlement ${e.name}`,
          done: `Entitlement ${e.name} removed.`,
          request: () => api('DELETE', `/api/admin/users/${encodeURIComponent(user.id)}/entitlements/${encodeURIComponent(e.name)}`),
        }),
      );
      return h(
        'li',
        { className: 'item row' },
        h(
          'div',
          {},
          h('p', { className: 'item-name' }, e.name, e.active === false ? [' ', badge('Expired', 'bad')] : null),
          h(
            'p',
            { className: 'meta' },
            'Granted ',
            time(e.granted_at),
            ' · ',
            e.expires_at ? h('span', {}, e.active === false ? 'expired ' : 'expires ', time(e.expires_at)) : 'no expiry',
          ),
        ),
        button,
      );
    }),
  );
  if (!entitlements.length) ui.entitlementList.append(h('li', { className: 'empty', textContent: 'No entitlements.' }));
}

function renderSessions(sessions, passkeyNames) {
  ui.sessionsEmpty.hidden = sessions.length > 0;
  ui.sessionsTable.hidden = sessions.length === 0;
  ui.sessionRows.replaceChildren(
    ...sessions.map((session) => {
      const agent = session.user_agent ?? '';
      return h(
        'tr',
        {},
        h('th', { scope: 'row' }, time(session.created_at)),
        cell(time(session.authenticated_at, { missing: 'not signed in' })),
        cell(session.credential_id ? passkeyNames.get(session.credential_id) ?? short(session.credential_id) : '—'),
        cell(time(session.expires_at)),
        cell(session.client_addr ?? '—'),
        h('td', { className: 'agent', textContent: agent.length > 60 ? `${agent.slice(0, 60)}…` : agent || '—', title: agent }),
      );
    }),
  );
}

function closeDetail() {
  state.detailSeq++;
  state.viewing = null;
  ui.detail.hidden = true;
  ui.recoveryLink.hidden = true;
  ui.auditUser.checked = false;
  ui.auditUser.disabled = true;
  ui.auditUserLabel.textContent = 'Only the user being viewed';
}

function viewedUserId() {
  const match = /^#user=(.+)$/.exec(location.hash);
  return match ? decodeURIComponent(match[1]) : null;
}

function route() {
  if (!state.me || state.me.role !== 'admin') return;
  const id = viewedUserId();
  if (!id) {
    const wasOpen = !ui.detail.hidden;
    closeDetail();
    if (wasOpen) ui.search.focus();
    if (state.audit.loaded) run('', () => loadAudit({ append: false }));
    return;
  }
  run('Opening user', async () => {
    await loadDetail(id);
    if (ui.auditUser.checked) await loadAudit({ append: false });
    say('');
  });
}

// --------------------------------------------------------------------------------- audit

async function loadAudit({ append }) {
  const seq = ++state.audit.seq;
  const filters = {
    user: ui.auditUser.checked && state.viewing ? state.viewing.user.id : null,
    event: ui.auditEvent.value,
    limit: PAGE_SIZE,
    cursor: append ? state.audit.cursor : null,
  };
  const page = await api('GET', `/api/admin/audit?${query(filters)}`);
  if (seq !== state.audit.seq) return;
  const events = Array.isArray(page.events) ? page.events : [];
  const rows = events.map(auditRow);
  if (append) ui.auditRows.append(...rows);
  else ui.auditRows.replaceChildren(...rows);
  state.audit.loaded = true;
  state.audit.cursor = page.next_cursor ?? null;
  state.audit.shown = (append ? state.audit.shown : 0) + events.length;
  ui.auditTable.hidden = state.audit.shown === 0;
  ui.auditMore.hidden = !state.audit.cursor;
  const about = filters.user ? ` for ${state.viewing.user.username}` : '';
  const kind = filters.event ? ` of type ${filters.event}` : '';
  ui.auditSummary.textContent =
    state.audit.shown === 0
      ? `No events${kind}${about}.`
      : `${plural(state.audit.shown, 'event', 'events')}${kind}${about}, newest first${state.audit.cursor ? ', more available' : ''}.`;
  if (append && rows.length) rows[0].querySelector('th')?.focus();
}

function auditRow(event) {
  const from = [event.client_addr, event.user_agent].filter(Boolean);
  return h(
    'tr',
    {},
    h('th', { scope: 'row', tabIndex: -1 }, time(event.at)),
    cell(h('code', { textContent: event.event })),
    cell(event.actor_key_id ? `key ${event.actor_key_name ?? short(event.actor_key_id, 12)}` : nameOf(event.actor_user_id)),
    cell(nameOf(event.target_user_id)),
    cell(event.target ? h('code', { textContent: idTag(event.target, 12), title: event.target }) : '—'),
    h('td', { textContent: event.client_addr ?? '—', title: from.join('\n') }),
    h('td', { className: 'detail-text', textContent: typeof event.detail === 'string' ? event.detail : event.detail ? JSON.stringify(event.detail) : '' }),
  );
}

// ------------------------------------------------------------------------------ API keys

async function loadKeys() {
  const { keys = [] } = await api('GET', '/api/admin/apikeys');
  ui.apikeysRows.replaceChildren(...keys.map(keyRow));
  ui.apikeysTable.hidden = keys.length === 0;
  const live = keys.filter((k) => !k.revoked_at).length;
  ui.apikeysSummary.textContent = keys.length ? `${plural(live, 'key', 'keys')} in use.` : 'No API keys yet.';
}

function keyStatus(key) {
  if (key.revoked_at) return badge('Revoked', 'bad');
  const expires = parseTime(key.expires_at);
  if (expires && expires <= new Date()) return badge('Expired', 'bad');
  return 'Active';
}

function keyRow(key) {
  const live = !key.revoked_at;
  const revoke = live
    ? h('button', { type: 'button', className: 'danger small', textContent: `Revoke ${key.name}` })
    : null;
  revoke?.addEventListener('click', () =>
    keyAction({
      title: `Revoke API key ${key.name}?`,
      text: 'Every call made with it is refused from now on. This cannot be undone.',
      progress: 'Revoking the key',
      done: `API key ${key.name} revoked.`,
      request: () => api('DELETE', `/api/admin/apikeys/${encodeURIComponent(key.id)}`),
    }),
  );
  return h(
    'tr',
    {},
    h('th', { scope: 'row', textContent: key.name }),
    cell(h('code', { textContent: `${key.hint}…`, title: key.id })),
    cell((key.scopes ?? []).join(', ')),
    cell(time(key.created_at)),
    cell(time(key.last_used_at, { missing: 'never' })),
    cell(time(key.expires_at, { missing: 'never' })),
    cell(keyStatus(key)),
    cell(revoke),
  );
}

/** Confirms, runs a key request (asking for the passkey again when needed), reloads the keys. */
function keyAction({ title, text, progress, done, request, danger = true }) {
  if (acting || ui.dialog.open) return Promise.resolve();
  acting = true;
  return run('', async () => {
    let result;
    try {
      if (!(await ask({ title, text, danger }))) throw new Cancelled('Cancelled: nothing was changed.');
      say(`${progress}…`);
      result = await withReauth(request);
    } finally {
      acting = false;
    }
    await Promise.all([loadKeys(), refreshAround()]);
    say(done);
    return result;
  });
}

for (const [scope, label] of SCOPES) {
  const id = `scope-${scope.replace(':', '-')}`;
  ui.apikeyScopes.append(
    h('div', { className: 'check' }, h('input', { type: 'checkbox', id, value: scope }), h('label', { htmlFor: id, textContent: `${scope}: ${label}` })),
  );
}

ui.apikeyForm.addEventListener('submit', (event) => {
  event.preventDefault();
  const name = ui.apikeyName.value.trim();
  const scopes = [...ui.apikeyScopes.querySelectorAll('input:checked')].map((i) => i.value);
  if (!name || scopes.length === 0) {
    showError(name ? 'Choose at least one scope.' : 'Give the key a name, e.g. billing-server.');
    (name ? ui.apikeyScopes.querySelector('input') : ui.apikeyName).focus();
    return;
  }
  const body = { name, scopes };
  if (ui.apikeyExpiry.value) body.expires_at = ui.apikeyExpiry.value;
  ui.apikeySecret.hidden = true;
  keyAction({
    title: `Make API key ${name}?`,
    text: `It can ${scopes.join(', ')} until it is revoked${body.expires_at ? ' or expires' : ''}.`,
    progress: 'Making the key',
    done: `API key ${name} made. Copy it now: it is shown only once.`,
    danger: false,
    request: async () => {
      const created = await api('POST', '/api/admin/apikeys', body);
      ui.apikeySecretValue.textContent = created.secret;
      ui.apikeySecret.hidden = false;
      ui.apikeyForm.reset();
      return created;
    },
  });
});

// ---------------------------------------------------------------------------- webhooks

async function loadDeliveries() {
  const log = await api('GET', `/api/admin/webhooks?${query({ limit: PAGE_SIZE })}`);
  const endpoints = Array.isArray(log.endpoints) ? log.endpoints : [];
  const urls = new Map(endpoints.map((e) => [e.id, e.url]));
  ui.endpointList.replaceChildren(
    ...endpoints.map((e) => {
      const enable = e.disabled_at ? h('button', { type: 'button', className: 'secondary small', textContent: `Enable ${e.url}` }) : null;
      enable?.addEventListener('click', () =>
        run('Enabling the endpoint', async () => {
          await api('POST', `/api/admin/webhooks/${encodeURIComponent(e.id)}/enable`);
          await loadDeliveries();
          say(`Sending to ${e.url} again.`);
        }),
      );
      const state = e.disabled_at ? badge(`Disabled: ${e.disabled_reason ?? 'gone'}`, 'bad') : e.configured ? badge('Active', 'info') : badge('Not configured', '');
      return h('li', {}, h('code', { textContent: e.url }), ' ', state, ` ${plural(e.pending, 'pending', 'pending')}, ${plural(e.failed, 'failed', 'failed')} `, enable);
    }),
  );
  const rows = (Array.isArray(log.deliveries) ? log.deliveries : []).map((d) =>
    h(
      'tr',
      {},
      h('th', { scope: 'row' }, time(d.created_at)),
      cell(h('code', { textContent: d.type })),
      cell(urls.get(d.endpoint_id) ?? d.endpoint_id),
      cell(d.status === 'delivered' ? 'Delivered' : badge(d.status === 'failed' ? 'Failed' : 'Pending', d.status === 'failed' ? 'bad' : 'info')),
      h('td', { className: 'num', textContent: number.format(d.attempts) }),
      cell([d.last_status, d.last_error].filter((x) => x !== null && x !== undefined).join(' ') || '—'),
      cell(time(d.next_attempt_at)),
    ),
  );
  ui.deliveryRows.replaceChildren(...rows);
  ui.deliveriesTable.hidden = rows.length === 0;
  ui.webhooksSummary.textContent = endpoints.length
    ? `${plural(rows.length, 'message', 'messages')}, newest first.`
    : 'No webhook endpoints are configured (LATCHKEY_WEBHOOK_URL).';
}

$('webhooks-refresh').addEventListener('click', () =>
  run('Loading deliveries', async () => {
    await loadDeliveries();
    say('Deliveries refreshed.');
  }),
);

ui.externalForm.addEventListener('submit', (event) => {
  event.preventDefault();
  const user = state.viewing?.user;
  if (!user) return;
  const value = ui.externalId.value.trim();
  act({
    title: value ? `Set ${user.username}'s external id to ${value}?` : `Clear ${user.username}'s external id?`,
    text: 'Your systems find this user by it; no other user may have the same one.',
    progress: 'Saving the external id',
    done: value ? `External id of ${user.username} set.` : `External id of ${user.username} cleared.`,
    danger: false,
    request: () => api('PATCH', `/api/admin/users/${encodeURIComponent(user.id)}`, { external_id: value || null }),
  });
});

// ------------------------------------------------------------------------------- wiring

async function enterConsole() {
  // The audit log names users by what the user list taught us, so it comes second.
  await Promise.all([
    loadOverview(),
    loadUsers({ append: false }).then(() => loadAudit({ append: false })),
    loadKeys(),
    loadDeliveries(),
  ]);
  if (viewedUserId()) await loadDetail(viewedUserId(), { quiet: true });
}

ui.signinForm.addEventListener('submit', (event) => {
  event.preventDefault();
  run('Waiting for your passkey', async () => {
    const name = ui.username.value.trim();
    await passkeySignIn(name || undefined);
    const me = await api('GET', '/api/me');
    if (showSignedIn(me)) {
      say('Loading…');
      await enterConsole();
      say(`Signed in as ${me.username}.`);
      ui.search.focus();
    } else {
      say('');
      ui.notAdmin.querySelector('h2').setAttribute('tabindex', '-1');
      ui.notAdmin.querySelector('h2').focus();
    }
  });
});

ui.signout.addEventListener('click', () =>
  run('Signing out', async () => {
    try {
      await api('POST', '/api/logout');
    } finally {
      showSignedOut();
      closeDetail();
      if (location.hash) history.replaceState(null, '', location.pathname);
    }
    say('Signed out.');
    ui.username.focus();
  }),
);

$('overview-refresh').addEventListener('click', () =>
  run('Refreshing the overview', async () => {
    await loadOverview();
    say('Overview refreshed.');
  }),
);

ui.searchForm.addEventListener('submit', (event) => {
  event.preventDefault();
  state.users.query = ui.search.value.trim();
  run('Searching', async () => {
    await loadUsers({ append: false });
    say('');
  });
});

ui.usersMore.addEventListener('click', () => run('Loading more users', async () => {
  await loadUsers({ append: true });
  say('');
}));

$('detail-close').addEventListener('click', () => {
  if (location.hash) location.hash = '';
  else route();
});

ui.roleButton.addEventListener('click', () => {
  const user = state.viewing?.user;
  if (!user) return;
  const role = user.role === 'admin' ? 'user' : 'admin';
  act({
    title: role === 'admin' ? `Make ${user.username} an admin?` : `Make ${user.username} a plain user?`,
    text: role === 'admin' ? `${user.username} will be able to use this page and every admin action.` : `${user.username} loses access to this page and the admin API.`,
    progress: 'Changing the role',
    done: `${user.username} is now ${role === 'admin' ? 'an admin' : 'a plain user'}.`,
    request: () => api('PATCH', `/api/admin/users/${encodeURIComponent(user.id)}`, { role }),
  });
});

ui.disableButton.addEventListener('click', () => {
  const user = state.viewing?.user;
  if (!user) return;
  const enable = user.disabled;
  act({
    title: enable ? `Enable user ${user.username}?` : `Disable user ${user.username}?`,
    text: enable
      ? `${user.username} can sign in again. Licenses revoked when the account was disabled stay revoked.`
      : `${user.username}'s sessions end, their licenses are revoked and sign-in is refused.`,
    progress: enable ? 'Enabling the user' : 'Disabling the user',
    done: `${user.username} is ${enable ? 'enabled' : 'disabled'}.`,
    danger: !enable,
    request: () => api('POST', `/api/admin/users/${encodeURIComponent(user.id)}/${enable ? 'enable' : 'disable'}`),
  });
});

ui.grantForm.addEventListener('submit', (event) => {
  event.preventDefault();
  const user = state.viewing?.user;
  if (!user) return;
  const name = ui.grantName.value.trim();
  if (!name) {
    showError('Give the entitlement a name, e.g. premium.');
    ui.grantName.setAttribute('aria-invalid', 'true');
    ui.grantName.focus();
    return;
  }
  ui.grantName.removeAttribute('aria-invalid');
  const day = ui.grantExpiry.value;
  const body = { name };
  if (day) body.expires_at = `${day}T23:59:59Z`;
  act({
    title: `Grant entitlement ${name} to ${user.username}?`,
    text: day ? `It lasts until the end of ${dayLong.format(dayDate(day))} (UTC).` : 'It does not expire.',
    progress: `Granting ${name}`,
    done: `Entitlement ${name} granted to ${user.username}.`,
    danger: false,
    request: async () => {
      await api('POST', `/api/admin/users/${encodeURIComponent(user.id)}/entitlements`, body);
      ui.grantForm.reset();
    },
  });
});

/** Shows a new recovery link as text and as a QR code. */
function showRecovery(issued) {
  ui.recoveryUrl.textContent = issued.url;
  const { d, size } = qrPath(qrMatrix(issued.url));
  ui.recoveryQr.setAttribute('viewBox', `0 0 ${size} ${size}`);
  ui.recoveryQr.replaceChildren(s('rect', { width: size, height: size, fill: '#fff' }), s('path', { d, fill: '#000' }));
  ui.recoveryExpiry.replaceChildren(time(issued.expires_at));
  ui.recoveryLink.hidden = false;
}

ui.recoveryForm.addEventListener('submit', (event) => {
  event.preventDefault();
  const user = state.viewing?.user;
  if (!user) return;
  const ttl = Number(ui.recoveryTtl.value);
  const revoke = ui.recoveryRevoke.checked;
  const lasting = ui.recoveryTtl.selectedOptions[0]?.textContent ?? '';
  ui.recoveryLink.hidden = true;
  act({
    title: `Make a recovery link for ${user.username}?`,
    text: `Whoever holds it can add a passkey to ${user.username}'s account within ${lasting}.${
      revoke ? ` When it is used, ${user.username}'s other passkeys, sessions and licenses are revoked.` : ''
    }`,
    progress: 'Making the recovery link',
    done: `Recovery link for ${user.username} made. It is shown only once.`,
    danger: revoke,
    request: async () => {
      const issued = await api('POST', `/api/admin/users/${encodeURIComponent(user.id)}/recovery`, { ttl_secs: ttl, revoke_others: revoke });
      showRecovery(issued);
      ui.recoveryForm.reset();
    },
  });
});

for (const name of EVENTS) ui.auditEvent.append(h('option', { value: name, textContent: name }));

ui.auditForm.addEventListener('submit', (event) => {
  event.preventDefault();
  run('Loading the audit log', async () => {
    await loadAudit({ append: false });
    say('');
  });
});
ui.auditEvent.addEventListener('change', () => ui.auditForm.requestSubmit());
ui.auditUser.addEventListener('change', () => ui.auditForm.requestSubmit());

ui.auditMore.addEventListener('click', () => run('Loading more events', async () => {
  await loadAudit({ append: true });
  say('');
}));

addEventListener('hashchange', route);

/**
 * Below 600 px the tables are stacked cards (admin.css): each cell carries its column's name
 * in `data-label`, taken from the header, whenever rows are rendered. Action columns, whose
 * header is for screen readers only, get an empty label.
 */
function labelCells(table) {
  const labels = [...(table.tHead?.rows[0]?.cells ?? [])].map((th) =>
    th.querySelector('.visually-hidden') ? '' : th.textContent.trim(),
  );
  for (const body of table.tBodies) {
    for (const row of body.rows) {
      [...row.cells].forEach((c, i) => {
        if (c.dataset.label === undefined) c.dataset.label = labels[i] ?? '';
      });
    }
  }
}

for (const table of document.querySelectorAll('table')) {
  labelCells(table);
  new MutationObserver(() => labelCells(table)).observe(table, { childList: true, subtree: true });
}

async function start() {
  await run('', async () => {
    let me = null;
    try {
      me = await api('GET', '/api/me');
    } catch (error) {
      if (!(error instanceof ServiceError && error.status === 401)) throw error;
    }
    if (!me) {
      showSignedOut();
      return;
    }
    if (showSignedIn(me)) {
      say('Loading…');
      await enterConsole();
      say('');
    }
  });
  ui.loading.hidden = true;
  if (!state.me && ui.signin.hidden && ui.notAdmin.hidden) {
    ui.who.textContent = 'Not signed in';
    ui.signin.hidden = false;
  }
}

start();
