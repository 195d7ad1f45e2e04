// TLS reverse proxies for the browser tests: Caddy and nginx from Debian, each run with the
// configuration the README gives (docs/proxy/, checked to be in the README word for word),
// changed only where a test must be: the host and ports, the certificates, the app's folder,
// and listening on ::1 alone (so the client address differs from the proxy's own 127.0.0.1).
// Only the test's own Chromium profile trusts their certificate authority.

import { execFile as execFileCb, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, readFileSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import https from 'node:https';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ROOT } from './harness.mjs';

const execFile = promisify(execFileCb);

export const CADDY = '/usr/bin/caddy';
export const NGINX = '/usr/sbin/nginx';
const CERTUTIL = '/usr/bin/certutil';
const OPENSSL = '/usr/bin/openssl';

/**
 * Why a proxy test cannot run here, or null. On CI a missing program is an error, not a skip.
 * @param {string} proxy the proxy's program
 */
export function missingProxy(proxy) {
  const missing = [proxy, CERTUTIL, OPENSSL].find((p) => !existsSync(p));
  const why = missing ? `${missing} is missing (scripts/test installs it)` : null;
  if (why && process.env.CI) throw new Error(why);
  return why;
}

/** The README's configuration for `name`, failing if the README does not show it verbatim. */
export function readmeConfig(name) {
  const config = readFileSync(join(ROOT, 'docs/proxy', name), 'utf8');
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  if (!readme.includes(config.trim())) throw new Error(`README.md does not show docs/proxy/${name} as it is`);
  return config;
}

/** `text` with every `from` of each `[from, to]` replaced, failing if one is not there. */
function substitute(text, pairs) {
  for (const [from, to] of pairs) {
    if (!text.includes(from)) throw new Error(`the proxy configuration no longer contains ${JSON.stringify(from)}`);
    text = text.replaceAll(from, to);
  }
  return text;
}

/** A free port on ::1, where the proxies listen. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '::1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** GET https://localhost:PORT/ over ::1, trusting only `ca`; resolves with the status. */
function probe(port, ca) {
  return new Promise((resolve, reject) => {
    const options = { host: '::1', port, servername: 'localhost', path: '/', ca, timeout: 2_000, headers: { host: `localhost:${port}` } };
    const req = https.get(options, (res) => {
      res.resume();
      resolve(res.statusCode);
    });
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error('timeout')));
  });
}

async function waitReady(child, port, caFile, logs) {
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`the proxy exited with ${child.exitCode}:\n${logs()}`);
    if (existsSync(caFile)) {
      try {
        await probe(port, await readFile(caFile));
        return;
      } catch {
        // not serving yet
      }
    }
    if (Date.now() > deadline) throw new Error(`the proxy was not ready within 20 s:\n${logs()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function run(program, args, env, dir) {
  let output = '';
  const child = spawn(program, args, { env, cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout.on('data', (d) => (output += d));
  child.stderr.on('data', (d) => (output += d));
  const exited = once(child, 'exit');
  return {
    child,
    logs: () => output,
    async stop() {
      if (child.exitCode === null) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
        await exited;
        clearTimeout(timer);
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/**
 * @typedef {object} Proxy
 * @property {string} origin https://localhost:PORT
 * @property {string} ca the certificate authority's file (PEM)
 * @property {() => string} logs
 * @property {() => Promise<void>} stop
 */

/**
 * Caddy with the README's Caddyfile and its own internal CA.
 * @param {{port: number, upstreamPort: number, appDir: string}} options
 * @returns {Promise<Proxy>}
 */
export async function startCaddy({ port, upstreamPort, appDir }) {
  const dir = await mkdtemp(join(tmpdir(), 'latchkey-caddy-'));
  const httpPort = await freePort();
  const site = substitute(readmeConfig('Caddyfile'), [
    ['app.example.com {', `localhost:${port} {\n\tbind ::1`],
    ['127.0.0.1:8080', `127.0.0.1:${upstreamPort}`],
    ['/srv/app', appDir],
  ]);
  // Self-contained: certificates from Caddy's local CA, nothing installed, no admin endpoint.
  const global = `{\n\tlocal_certs\n\tskip_install_trust\n\tadmin off\n\tauto_https disable_redirects\n\thttp_port ${httpPort}\n\thttps_port ${port}\n}\n\n`;
  await writeFile(join(dir, 'Caddyfile'), global + site);
  const env = {
    PATH: process.env.PATH,
    HOME: dir,
    XDG_DATA_HOME: join(dir, 'data'),
    XDG_CONFIG_HOME: join(dir, 'config'),
  };
  const proc = run(CADDY, ['run', '--config', join(dir, 'Caddyfile'), '--adapter', 'caddyfile'], env, dir);
  const ca = join(dir, 'data/caddy/pki/authorities/local/root.crt');
  try {
    await waitReady(proc.child, port, ca, proc.logs);
  } catch (error) {
    await proc.stop();
    throw error;
  }
  return { origin: `https://localhost:${port}`, ca, logs: proc.logs, stop: proc.stop };
}

/**
 * nginx with the README's server block and a certificate from a CA made for this run.
 * @param {{port: number, upstreamPort: number, appDir: string}} options
 * @returns {Promise<Proxy>}
 */
export async function startNginx({ port, upstreamPort, appDir }) {
  const dir = await mkdtemp(join(tmpdir(), 'latchkey-nginx-'));
  // Workers run as nobody: they must reach the app's files.
  await chmod(dir, 0o755);
  const tls = join(dir, 'tls');
  await mkdir(tls, { mode: 0o700 });
  await writeFile(
    join(tls, 'ca.cnf'),
    '[req]\ndistinguished_name = dn\nx509_extensions = v3_ca\nprompt = no\n[dn]\nCN = Latchkey test CA\n' +
      '[v3_ca]\nbasicConstraints = critical, CA:TRUE\nkeyUsage = critical, keyCertSign, cRLSign\nsubjectKeyIdentifier = hash\n',
  );
  await writeFile(
    join(tls, 'leaf.ext'),
    'basicConstraints = critical, CA:FALSE\nkeyUsage = critical, digitalSignature\nextendedKeyUsage = serverAuth\n' +
      'subjectAltName = DNS:localhost\nsubjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid\n',
  );
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  await execFile(OPENSSL, ['req', '-x509', '-config', 'ca.cnf', ...ec, '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '2'], { cwd: tls });
  await execFile(OPENSSL, ['req', '-new', ...ec, '-keyout', 'leaf.key', '-out', 'leaf.csr', '-subj', '/CN=localhost'], { cwd: tls });
  await execFile(
    OPENSSL,
    ['x509', '-req', '-in', 'leaf.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'leaf.crt', '-days', '2', '-extfile', 'leaf.ext'],
    { cwd: tls },
  );
  const site = substitute(readmeConfig('nginx.conf'), [
    ['listen 443 ssl http2;', `listen [::1]:${port} ssl http2;`],
    ['    listen [::]:443 ssl http2;\n', ''],
    ['server_name app.example.com;', 'server_name localhost;'],
    ['/etc/letsencrypt/live/app.example.com/fullchain.pem', join(tls, 'leaf.crt')],
    ['/etc/letsencrypt/live/app.example.com/privkey.pem', join(tls, 'leaf.key')],
    ['root /srv/app;', `root ${appDir};`],
    ['127.0.0.1:8080', `127.0.0.1:${upstreamPort}`],
  ]);
  const temp = (name) => `${name}_temp_path ${join(dir, 'temp', name)};`;
  const main =
    `daemon off;\nmaster_process on;\nworker_processes 1;\npid ${join(dir, 'nginx.pid')};\nerror_log stderr warn;\n` +
    `events {}\nhttp {\n  include /etc/nginx/mime.types;\n  access_log off;\n` +
    `  ${temp('client_body')}\n  ${temp('proxy')}\n  ${temp('fastcgi')}\n  ${temp('uwsgi')}\n  ${temp('scgi')}\n` +
    `${site}\n}\n`;
  await mkdir(join(dir, 'temp'));
  await writeFile(join(dir, 'nginx.conf'), main);
  const proc = run(NGINX, ['-p', dir, '-e', 'stderr', '-c', join(dir, 'nginx.conf')], { PATH: process.env.PATH }, dir);
  const ca = join(tls, 'ca.crt');
  try {
    await waitReady(proc.child, port, ca, proc.logs);
  } catch (error) {
    await proc.stop();
    throw error;
  }
  return { origin: `https://localhost:${port}`, ca, logs: proc.logs, stop: proc.stop };
}

/**
 * A HOME whose NSS store (what Chromium reads on Linux) trusts `caFile` and nothing else
 * beyond the system's roots; pass it to launchBrowser({ home }).
 */
export async function trustingHome(caFile) {
  const home = await mkdtemp(join(tmpdir(), 'latchkey-home-'));
  const db = `sql:${join(home, '.pki/nssdb')}`;
  await mkdir(join(home, '.pki/nssdb'), { recursive: true });
  await execFile(CERTUTIL, ['-d', db, '-N', '--empty-password']);
  await execFile(CERTUTIL, ['-d', db, '-A', '-t', 'C,,', '-n', 'latchkey-test-ca', '-i', caFile]);
  return home;
}
