// OT1 signed requests (OpenToken doc/api/signed-requests.md, doc/request-signatures.md).
// Pure functions: no I/O, no clock except formatDate's default argument.
import { createHmac } from 'node:crypto';

export const SCHEME = 'OT1-HMAC-SHA256-HEX';
export const MANDATORY_SIGNED_HEADERS = Object.freeze(['host', 'content-type', 'x-opentoken-date']);

function pad(n, width = 2) {
  return String(n).padStart(width, '0');
}

/**
 * An X-OpenToken-Date value at second precision: `YYYY-MM-DDTHH:MM:SSZ` (UTC). Accepts a Date,
 * milliseconds since the epoch, or an RFC 3339 string (any offset, optional fraction); the
 * fraction is dropped (truncated, not rounded), because the server accepts whole seconds only.
 */
export function formatDate(when = new Date()) {
  let d;
  if (when instanceof Date) {
    d = when;
  } else if (typeof when === 'number') {
    d = new Date(when);
  } else if (typeof when === 'string') {
    if (!/^\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d:\d\d(\.\d+)?([Zz]|[+-]\d\d:\d\d)$/.test(when)) {
      throw new TypeError('date: not an RFC 3339 date-time');
    }
    d = new Date(when.replace(' ', 'T').toUpperCase());
  } else {
    throw new TypeError('date: expected a Date, a number or an RFC 3339 string');
  }
  const ms = d.getTime();
  if (!Number.isFinite(ms)) {
    throw new TypeError('date: invalid date');
  }
  const y = d.getUTCFullYear();
  if (y < 0 || y > 9999) {
    throw new RangeError('date: year outside 0000-9999');
  }
  return `${pad(y, 4)}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}T` +
    `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}Z`;
}

function toBuffer(body) {
  if (body === undefined || body === null) {
    return Buffer.alloc(0);
  }
  if (typeof body === 'string') {
    return Buffer.from(body, 'utf8');
  }
  if (Buffer.isBuffer(body)) {
    return body;
  }
  if (body instanceof Uint8Array) {
    return Buffer.from(body.buffer, body.byteOffset, body.byteLength);
  }
  if (body instanceof ArrayBuffer) {
    return Buffer.from(body);
  }
  throw new TypeError('body: expected a string, Buffer, Uint8Array or ArrayBuffer');
}
export { toBuffer as _toBuffer };

function trimOws(s) {
  return s.replace(/^[ \t]+|[ \t]+$/g, '');
}

function findHeader(headers, lowerName) {
  let found;
  for (const [name, value] of Object.entries(headers)) {
    if (trimOws(name).toLowerCase() === lowerName) {
      if (found !== undefined) {
        throw new Error(`header ${lowerName} given twice`);
      }
      found = String(value);
    }
  }
  return found;
}

/**
 * The bytes the server verifies: METHOD \n PATH \n QUERY \n (name:value \n)* \n BODY.
 * `headers` is an object of the headers that will be sent; `signedHeaders` the lower-case names
 * to sign, in order. Returns a Buffer.
 */
export function canonicalContent(method, target, headers, body, signedHeaders = MANDATORY_SIGNED_HEADERS) {
  if (!/^[!#$%&'*+\-.^_`|~0-9A-Z]+$/.test(method)) {
    throw new TypeError('method: expected an upper-case token such as "POST"');
  }
  if (typeof target !== 'string' || !target.startsWith('/') || /[\x00-\x20\x7f]/.test(target)) {
    throw new TypeError('target: expected an origin-form target such as "/path?query"');
  }
  const q = target.indexOf('?');
  const path = q < 0 ? target : target.slice(0, q);
  const query = q < 0 ? '' : target.slice(q + 1);
  let head = `${method}\n${path}\n${query}\n`;
  for (const rawName of signedHeaders) {
    const name = rawName.toLowerCase();
    const value = findHeader(headers, name);
    if (value === undefined) {
      throw new Error(`signed header ${name} is missing from the request headers`);
    }
    let v = trimOws(value);
    if (/[\x00-\x08\x0a-\x1f\x7f]/.test(v)) {
      throw new Error(`signed header ${name} has a control character`);
    }
    if (name === 'host') {
      v = v.replace(/[A-Z]/g, (c) => c.toLowerCase());
    }
    head += `${name}:${v}\n`;
  }
  head += '\n';
  return Buffer.concat([Buffer.from(head, 'utf8'), toBuffer(body)]);
}

/**
 * Signs a request. Returns a new headers object: the given headers plus X-OpenToken-Date
 * (unless already given) and Authorization. Host and Content-Type must be among `headers`.
 *
 * @param {object} opts
 *   method, target, headers, body, accessCode, secret,
 *   date (Date | number | RFC 3339 string; default now), signedHeaders (default the three
 *   mandatory ones; the mandatory ones are always added).
 */
export function sign({ method, target, headers = {}, body, accessCode, secret, date, signedHeaders }) {
  if (!/^[A-Za-z0-9_-]{1,128}$/.test(accessCode ?? '')) {
    throw new TypeError('accessCode: expected 1-128 characters of [A-Za-z0-9_-]');
  }
  if (typeof secret !== 'string' || secret.length === 0) {
    throw new TypeError('secret: expected a non-empty string');
  }
  const out = {};
  for (const [k, v] of Object.entries(headers)) {
    if (k.toLowerCase() !== 'authorization') {
      out[k] = v;
    }
  }
  if (findHeader(out, 'x-opentoken-date') === undefined || date !== undefined) {
    for (const k of Object.keys(out)) {
      if (k.toLowerCase() === 'x-opentoken-date') {
        delete out[k];
      }
    }
    out['X-OpenToken-Date'] = formatDate(date ?? new Date());
  }
  const names = [];
  for (const n of [...MANDATORY_SIGNED_HEADERS, ...(signedHeaders ?? [])]) {
    const lower = n.toLowerCase();
    if (!names.includes(lower)) {
      names.push(lower);
    }
  }
  const canonical = canonicalContent(method, target, out, body, names);
  const signature = createHmac('sha256', secret).update(canonical).digest('hex');
  canonical.fill(0);
  out.Authorization = `${SCHEME}; access-code=${accessCode}; signed-headers=${names.join(' ')}; ` +
    `signature=${signature}`;
  return out;
}
