// One HTTP exchange with the daemon, over its Unix socket (node:http, socketPath) or over HTTPS
// (node:https, with a CA file). No retries, no redirects: the caller decides.
import http from 'node:http';
import https from 'node:https';
import { readFileSync } from 'node:fs';

const DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024 * 1024;
// Pooled connections are dropped after this long idle, well before the daemon's own idle timeout
// (limits.idle_timeout_ms, 30 s), so a request rarely meets a connection the server has closed.
const IDLE_MS = 10000;

export class Transport {
  /**
   * options: socketPath | url (https://host:port or http://...), ca (PEM string/Buffer),
   * caFile (path), timeoutMs (30000), maxResponseBytes (64 MiB), hostHeader (override).
   */
  constructor(options = {}) {
    this.timeoutMs = options.timeoutMs ?? 30000;
    this.maxResponseBytes = options.maxResponseBytes ?? DEFAULT_MAX_RESPONSE_BYTES;
    if (options.socketPath && options.url) {
      throw new TypeError('give either socketPath or url, not both');
    }
    if (options.socketPath) {
      this.kind = 'unix';
      this.socketPath = options.socketPath;
      this.host = options.hostHeader ?? 'localhost';
      this.agent = new http.Agent({ keepAlive: true, maxSockets: 4, timeout: IDLE_MS });
      this.module = http;
    } else if (options.url) {
      const u = new URL(options.url);
      if (u.protocol !== 'https:' && u.protocol !== 'http:') {
        throw new TypeError('url: expected https://host[:port]');
      }
      if (u.pathname !== '/' || u.search || u.hash || u.username || u.password) {
        throw new TypeError('url: expected only scheme, host and port');
      }
      this.kind = u.protocol === 'https:' ? 'https' : 'http';
      this.hostname = u.hostname.replace(/^\[|\]$/g, '');
      this.port = u.port ? Number(u.port) : (this.kind === 'https' ? 443 : 80);
      // The signed Host is what is sent: host[:port] as in the URL (e.g. 127.0.0.1:8443).
      this.host = options.hostHeader ?? u.host;
      let ca = options.ca;
      if (ca === undefined && options.caFile) {
        ca = readFileSync(options.caFile);
      }
      this.module = this.kind === 'https' ? https : http;
      this.agent = new this.module.Agent({ keepAlive: true, maxSockets: 4, timeout: IDLE_MS,
        ...(ca ? { ca } : {}) });
    } else {
      throw new TypeError('give socketPath or url');
    }
  }

  /** Releases pooled connections. */
  close() {
    this.agent.destroy();
  }

  /**
   * Sends one request. headers: object (Host is added when absent); body: Buffer or undefined.
   * Resolves to {status, headers (lower-case names; set-cookie and link are arrays), body: Buffer}.
   */
  request(method, path, headers, body) {
    const h = { ...headers };
    if (!Object.keys(h).some((k) => k.toLowerCase() === 'host')) {
      h.Host = this.host;
    }
    if (body !== undefined) {
      h['Content-Length'] = String(body.length);
    }
    const opts = { method, path, headers: h, agent: this.agent };
    if (this.kind === 'unix') {
      opts.socketPath = this.socketPath;
    } else {
      opts.hostname = this.hostname;
      opts.port = this.port;
      if (this.kind === 'https') {
        opts.servername = /^[0-9.]+$|:/.test(this.hostname) ? undefined : this.hostname;
      }
    }
    const once = () => new Promise((resolve, reject) => {
      let answered = false;
      const req = this.module.request(opts, (res) => {
        answered = true;
        const chunks = [];
        let size = 0;
        res.on('data', (c) => {
          size += c.length;
          if (size > this.maxResponseBytes) {
            req.destroy(new Error(`response larger than ${this.maxResponseBytes} bytes`));
            return;
          }
          chunks.push(c);
        });
        res.on('end', () => {
          const out = {};
          for (let i = 0; i < res.rawHeaders.length; i += 2) {
            const name = res.rawHeaders[i].toLowerCase();
            const value = res.rawHeaders[i + 1];
            if (name === 'set-cookie' || name === 'link') {
              (out[name] ??= []).push(value);
            } else {
              out[name] = out[name] === undefined ? value : `${out[name]}, ${value}`;
            }
          }
          resolve({ status: res.statusCode, headers: out, body: Buffer.concat(chunks) });
        });
        res.on('error', reject);
      });
      req.setTimeout(this.timeoutMs, () => {
        req.destroy(new Error(`no answer within ${this.timeoutMs} ms`));
      });
      req.on('error', (err) => {
        err.retryable = req.reusedSocket && !answered &&
          (err.code === 'ECONNRESET' || err.code === 'EPIPE');
        reject(err);
      });
      req.end(body);
    });
    // A kept-alive connection the server closed while it was idle (idle timeout, or its place
    // taken under load) fails with ECONNRESET or EPIPE before any answer. The request is sent
    // again, once, on a new connection (Node's documented pattern for req.reusedSocket); a
    // fresh connection's failure is never retried.
    return once().catch((err) => {
      if (err.retryable) {
        return once();
      }
      throw err;
    });
  }
}
