// Latchkey demo service worker: the app shell, the client module, the JWK set and the status
// list stay available offline. Responses that carry tokens or personal data are never cached.

const CACHE = 'latchkey-shell-v1';
// Everything lives under the service's base path (e.g. /auth/), which is this worker's folder.
const BASE = new URL('./', self.location).pathname;
const SHELL = ['', 'app.js', 'app.css', 'latchkey.js', 'latchkey-core.js', 'manifest.webmanifest'].map((p) => BASE + p);
const OPTIONAL = ['icons/icon.svg', 'icons/icon-192.png', 'icons/icon-512.png'].map((p) => BASE + p);

// Public, signed data (paths below BASE): network first so a fresh copy is kept whenever we are online.
const PUBLIC_DATA = [/^\.well-known\/jwks\.json$/, /^api\/status-lists\/[^/]+$/];

// Marks a response that came from this cache, so the page knows it did not reach the service.
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
    event.respondWith(networkFirst(request, fresh, { store: true }));
    return;
  }
  // Everything else under /api/ (licenses, /api/me, ceremonies, premium, admin) goes straight
  // to the network and is never stored.
  if (below.startsWith('api/') || below.startsWith('admin')) return;

  const inShell = SHELL.includes(path) || OPTIONAL.includes(path);
  if (request.mode === 'navigate') {
    // Only the shell itself is stored; any page falls back to it offline.
    event.respondWith(networkFirst(request, request, { store: inShell && url.search === '', fallback: BASE }));
  } else if (inShell) {
    event.respondWith(networkFirst(request, request, { store: url.search === '' }));
  }
});

/**
 * Tries the network; keeps a good answer when `store`; falls back to the cached copy (or to
 * `fallback`), marked with CACHE_MARK, when the network fails.
 */
async function networkFirst(request, networkRequest, { store = false, fallback } = {}) {
  const cache = await caches.open(CACHE);
  try {
    const response = await fetch(networkRequest);
    if (store && response.ok && response.type === 'basic') {
      await cache.put(new URL(request.url).pathname, response.clone());
    }
    return response;
  } catch (error) {
    const cached =
      (await cache.match(new URL(request.url).pathname)) ?? (fallback ? await cache.match(fallback) : undefined);
    if (!cached) throw error;
    const headers = new Headers(cached.headers);
    headers.set(CACHE_MARK, 'offline');
    return new Response(cached.body, { status: cached.status, statusText: cached.statusText, headers });
  }
}
