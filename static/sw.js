// Latchkey demo service worker: the app shell, the client module, the pinned keys, the JWK set
// and the status list stay available offline. Responses that carry tokens or personal data are
// never cached.
//
// Lie-fi (a connection that is there but never answers: captive portals, one bar of signal):
// every network attempt gives up after NETWORK_TIMEOUT_MS and falls back to the cache, and for
// the next DEGRADED_MS the shell is served from the cache at once (refreshed in the
// background), so a launch does not wait once per file. Register with `sw.js?timeout=MS` to
// change the timeout.

const CACHE = 'latchkey-shell-v2';
// Everything lives under the service's base path (e.g. /auth/), which is this worker's folder.
const BASE = new URL('./', self.location).pathname;
const SHELL = [
  '',
  'app.js',
  'app.css',
  'latchkey.js',
  'latchkey-core.js',
  'latchkey-messages.js',
  'latchkey-elements.js',
  'latchkey-ui.js',
  'latchkey-signin.js',
  'latchkey-account.js',
  'latchkey-gate.js',
  'latchkey-keys.json',
  'manifest.webmanifest',
].map((p) => BASE + p);
const PINS = `${BASE}latchkey-keys.json`;
const OPTIONAL = ['icons/icon.svg', 'icons/icon-192.png', 'icons/icon-512.png'].map((p) => BASE + p);

const configured = Number(new URL(self.location).searchParams.get('timeout'));
const NETWORK_TIMEOUT_MS = Number.isFinite(configured) && configured > 0 ? configured : 3000;
const DEGRADED_MS = 30_000;
let degradedUntil = 0;

// Public, signed data (paths below BASE): network first so a fresh copy is kept whenever we are online.
const PUBLIC_DATA = [/^\.well-known\/jwks\.json$/, /^api\/status-lists\/[^/]+$/];

// Marks a response that came from this cache, so the page knows it did not reach the service:
// 'offline' when the browser says so, 'unreachable' when the network is there but nothing answered.
const CACHE_MARK = 'x-latchkey-cache';

self.addEventListener('install', (event) => {
  self.skipWaiting();
  event.waitUntil(
    (async () => {
      const cache = await caches.open(CACHE);
      await cache.addAll(SHELL);
      await Promise.allSettled(OPTIONAL.map((path) => cache.add(path)));
    })(),
  );
});

self.addEventListener('activate', (event) => {
  event.waitUntil(
    (async () => {
      const names = await caches.keys();
      await Promise.all(names.filter((n) => n.startsWith('latchkey-') && n !== CACHE).map((n) => caches.delete(n)));
      await self.clients.claim();
    })(),
  );
});

self.addEventListener('fetch', (event) => {
  const request = event.request;
  if (request.method !== 'GET') return;
  const url = new URL(request.url);
  if (url.origin !== self.location.origin || !url.pathname.startsWith(BASE)) return;
  const path = url.pathname;
  const below = path.slice(BASE.length);

  if (PUBLIC_DATA.some((re) => re.test(below))) {
    const fresh = new Request(request.url, { headers: request.headers, cache: 'no-store' });
    event.respondWith(networkFirst(event, request, fresh, { store: true }));
    return;
  }
  // Everything else under /api/ (licenses, /api/me, ceremonies, premium, admin) goes straight
  // to the network and is never stored.
  if (below.startsWith('api/') || below.startsWith('admin')) return;

  const inShell = SHELL.includes(path) || OPTIONAL.includes(path);
  if (path === PINS && url.search === '') {
    // The pinned keys are read before every first verdict: from the cache at once, refreshed
    // behind (a page that meets a new key over the network trusts it for its own life).
    event.respondWith(cacheFirst(event, request));
    return;
  }
  if (request.mode === 'navigate') {
    // Only the shell itself is stored; any page falls back to it offline.
    event.respondWith(networkFirst(event, request, request, { store: inShell && url.search === '', fallback: BASE }));
  } else if (inShell) {
    event.respondWith(networkFirst(event, request, request, { store: url.search === '' }));
  }
});

/** fetch() that gives up after NETWORK_TIMEOUT_MS (and then marks the network degraded). */
async function fetchWithTimeout(request) {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), NETWORK_TIMEOUT_MS);
  try {
    return await fetch(request, { signal: controller.signal });
  } catch (error) {
    if (controller.signal.aborted) degradedUntil = Date.now() + DEGRADED_MS;
    throw error;
  } finally {
    clearTimeout(timer);
  }
}

function marked(cached, why) {
  const headers = new Headers(cached.headers);
  headers.set(CACHE_MARK, why ?? (self.navigator.onLine === false ? 'offline' : 'unreachable'));
  return new Response(cached.body, { status: cached.status, statusText: cached.statusText, headers });
}

/** Answers from the cache when it can (refreshing it behind), else from the network. */
async function cacheFirst(event, request) {
  const cache = await caches.open(CACHE);
  const key = new URL(request.url).pathname;
  const refresh = async () => {
    const response = await fetchWithTimeout(new Request(request.url, { headers: request.headers, cache: 'no-store' }));
    if (response.ok && response.type === 'basic') await cache.put(key, response.clone());
    return response;
  };
  const cached = await cache.match(key);
  if (!cached) return refresh();
  event.waitUntil(refresh().catch(() => {}));
  return cached;
}

/**
 * Tries the network (within the timeout); keeps a good answer when `store`; falls back to the
 * cached copy (or to `fallback`), marked with CACHE_MARK, when the network fails or is slow.
 * While the network is degraded, answers from the cache at once and refreshes it behind.
 */
async function networkFirst(event, request, networkRequest, { store = false, fallback } = {}) {
  const cache = await caches.open(CACHE);
  const key = new URL(request.url).pathname;
  const fromCache = async () => (await cache.match(key)) ?? (fallback ? await cache.match(fallback) : undefined);
  const refresh = async () => {
    const response = await fetchWithTimeout(networkRequest);
    if (response.ok) degradedUntil = 0;
    if (store && response.ok && response.type === 'basic') await cache.put(key, response.clone());
    return response;
  };
  if (Date.now() < degradedUntil) {
    const cached = await fromCache();
    if (cached) {
      event.waitUntil(refresh().catch(() => {}));
      return marked(cached);
    }
  }
  try {
    const response = await refresh();
    // A service that answers with a server error is no better than none for the shell.
    if (response.status >= 500) {
      const cached = await fromCache();
      if (cached) return marked(cached, 'error');
    }
    return response;
  } catch (error) {
    const cached = await fromCache();
    if (!cached) throw error;
    return marked(cached);
  }
}
