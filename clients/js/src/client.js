// The OpenToken client: account flows (register, secure, confirm, login, logout, whoami), access
// codes, tokenize/detokenize/delete with OT1 signatures, access tokens (/access-tokens, bearer or
// session) and the e-mail flow (/v1/access_tokens).
import { challengeHash, passwordHash, totp } from './account.js';
import { OpenTokenError } from './errors.js';
import { formatDate, sign, _toBuffer as toBuffer } from './sign.js';
import { Transport } from './transport.js';

/** Parses Link header values into [{href, rel, title, ...}]. */
export function parseLinks(values) {
  const out = [];
  for (const value of values ?? []) {
    for (const part of value.split(/,(?=\s*<)/)) {
      const m = /^\s*<([^>]*)>(.*)$/s.exec(part);
      if (!m) {
        continue;
      }
      const link = { href: m[1] };
      for (const p of m[2].matchAll(/;\s*([A-Za-z*-]+)\s*=\s*(?:"([^"]*)"|([^;,\s]+))/g)) {
        link[p[1].toLowerCase()] = p[2] ?? p[3];
      }
      out.push(link);
    }
  }
  return out;
}

function findLink(reply, { rel, title }) {
  return parseLinks(reply.headers.link).find(
    (l) => (rel === undefined || l.rel === rel) && (title === undefined || l.title === title));
}

const ID_RE = /^[A-Za-z0-9_-]{1,128}$/;

// A link's href as a request target: absolute links (a server with public_url may send them)
// are reduced to their path and query.
function toPath(href) {
  if (!href || href.startsWith('/')) {
    return href;
  }
  const u = new URL(href);
  return u.pathname + u.search;
}

function checkId(name, value) {
  if (typeof value !== 'string' || !ID_RE.test(value)) {
    throw new TypeError(`${name}: expected 1-128 characters of [A-Za-z0-9_-]`);
  }
  return value;
}

function json(reply) {
  return JSON.parse(reply.body.toString('utf8'));
}

export class OpenTokenClient {
  // Credentials live in private fields behind accessors, so console.log(client),
  // util.inspect and JSON.stringify never show them.
  #secret;
  #accessToken;
  #session;

  /**
   * options:
   *   socketPath       the daemon's Unix socket, or
   *   url, ca|caFile   https://host:port and the CA certificate (PEM) to trust
   *   accountId        the account (set by confirm() and login() too)
   *   accessCode, secret   an access code pair, for tokenize/detokenize/delete
   *   accessToken      a bearer access token (otk_...), used on /access-tokens and the account
   *                    routes instead of the login session
   *   timeoutMs, maxResponseBytes, hostHeader
   */
  constructor(options = {}) {
    this.transport = new Transport(options);
    this.accountId = options.accountId;
    this.accessCode = options.accessCode;
    this.#secret = options.secret;
    this.#accessToken = options.accessToken;
    this.#session = undefined;
    this._discovery = undefined;
  }

  /** The access code secret (for signed requests). */
  get secret() { return this.#secret; }
  set secret(value) { this.#secret = value; }
  /** The bearer access token, used instead of the login session. */
  get accessToken() { return this.#accessToken; }
  set accessToken(value) { this.#accessToken = value; }
  /** The login session id (the `login` cookie), set by login(). */
  get session() { return this.#session; }
  set session(value) { this.#session = value; }

  /** Closes pooled connections (call when done so the process can exit at once). */
  close() {
    this.transport.close();
  }

  // --- plumbing ------------------------------------------------------------------------------

  /** A raw request: resolves to {status, headers, body: Buffer}; never throws on a status. */
  raw(method, path, { headers = {}, body } = {}) {
    return this.transport.request(method, path, headers, body === undefined ? undefined : toBuffer(body));
  }

  async _call(method, path, { body, json: jsonBody, headers = {}, auth = 'session', expect } = {}) {
    const h = { ...headers };
    let payload = body === undefined ? undefined : toBuffer(body);
    if (jsonBody !== undefined) {
      payload = Buffer.from(JSON.stringify(jsonBody), 'utf8');
      h['Content-Type'] = 'application/json';
    }
    if (auth === 'session') {
      if (this.accessToken) {
        h.Authorization = `Bearer ${this.accessToken}`;
      } else if (this.session) {
        h.Cookie = `login=${this.session}`;
      }
    }
    const reply = await this.transport.request(method, path, h, payload);
    if (expect && !expect.includes(reply.status)) {
      throw new OpenTokenError(reply.status, reply.headers, reply.body, method, path);
    }
    return reply;
  }

  /**
   * A request signed with the access code pair (OT1). contentType is always signed (the server
   * requires it, even on a GET without a body). Resolves to the raw reply.
   */
  async signedRequest(method, target, { body, contentType = 'application/octet-stream', headers = {},
    date, signedHeaders } = {}) {
    if (!this.accessCode || !this.secret) {
      throw new Error('an access code pair (accessCode, secret) is needed for signed requests');
    }
    const payload = toBuffer(body);
    const h = sign({
      method, target, body: payload, accessCode: this.accessCode, secret: this.secret, date,
      signedHeaders,
      headers: mergeHeaders({ Host: this.transport.host, 'Content-Type': contentType }, headers),
    });
    const sendBody = payload.length > 0 || !['GET', 'HEAD', 'DELETE'].includes(method) ? payload : undefined;
    return this.transport.request(method, target, h, sendBody);
  }

  async discovery() {
    if (!this._discovery) {
      const r = await this._call('GET', '/', { auth: 'none', expect: [200, 204] });
      this._discovery = r;
    }
    return this._discovery;
  }

  /**
   * GET /signature-information: what the server expects of a signed request (scheme, canonical
   * form, required headers, date format and window) and its clock (`serverTime`), to diagnose a
   * 401 of a signed route.
   */
  async signatureInformation() {
    return json(await this._call('GET', '/signature-information', { auth: 'none', expect: [200] }));
  }

  _account() {
    if (!this.accountId) {
      throw new Error('accountId is not known: pass it to the constructor, or confirm()/login() first');
    }
    return `/account/${checkId('accountId', this.accountId)}`;
  }

  // --- registration and login ----------------------------------------------------------------

  /**
   * Starts a registration and secures it with the password and two TOTP codes computed from the
   * key the server issued. Resolves to {registrationPath, totpKey (hex), totpKeyBase32,
   * totpUri}; keep totpKey in an authenticator: it is needed for every login. The server then
   * mails a confirmation link: pass it (or its code) to confirm().
   */
  async register(email, password) {
    const root = await this.discovery();
    const link = findLink(root, { rel: 'service', title: 'registration-register' });
    const href = link ? toPath(link.href) : '/registration';
    const r = await this._call('POST', href, { json: { email }, auth: 'none', expect: [200, 201] });
    const body = json(r);
    const edit = findLink(r, { rel: 'edit', title: 'registration-secure' });
    const registration = {
      registrationPath: toPath(edit ? edit.href : r.headers.location),
      totpKey: body.mfa.totp.keyHex,
      totpKeyBase32: body.mfa.totp.keyBase32,
      totpUri: body.mfa.totp.keyUri,
      passwordHashConfig: body.passwordHashConfig,
    };
    await this.secure(registration, password);
    return registration;
  }

  /** The secure step alone (again): sets the password and proves the TOTP key. */
  async secure(registration, password, { time = Date.now() } = {}) {
    const pw = await passwordHash(password, registration.passwordHashConfig);
    const body = {
      mfa: { totp: { current: totp(registration.totpKey, { time }),
        previous: totp(registration.totpKey, { time, offset: -1 }) } },
      passwordHash: pw,
    };
    await this._call('POST', registration.registrationPath, { json: body, auth: 'none', expect: [204, 200] });
  }

  /**
   * Confirms a registration with the link from the mail (absolute or a path), the whole mail as
   * stored (an .eml file's text: quoted-printable soft line breaks are undone), or the code alone
   * plus the registration (or its path). Resolves to {accountId, loginPath}.
   */
  async confirm(linkOrMailOrCode, registration) {
    let target = confirmationPath(linkOrMailOrCode);
    if (!target) {
      const reg = typeof registration === 'string' ? registration : registration?.registrationPath;
      if (!reg) {
        throw new TypeError('confirm: no confirmation link found; a code alone needs the registration');
      }
      target = `${reg}/confirm/${checkId('code', String(linkOrMailOrCode).trim())}`;
    }
    const r = await this._call('GET', target, { auth: 'none', expect: [200, 201] });
    const body = json(r);
    this.accountId = body.accountId;
    const login = findLink(r, { rel: 'login' });
    return { accountId: body.accountId,
      loginPath: login ? toPath(login.href) : `/account/${body.accountId}/login` };
  }

  /**
   * Logs in: fetches a challenge, hashes the password as announced, answers with the TOTP code.
   * `code`: the 6-digit code from the authenticator, or {key} (hex or Buffer) to compute it.
   * Keeps the session cookie for later calls; resolves to {accountId, sessionId}.
   */
  async login(password, code, { accountId = this.accountId } = {}) {
    const path = `/account/${checkId('accountId', accountId)}/login`;
    const ch = json(await this._call('GET', path, { auth: 'none', expect: [200] }));
    const pw = await passwordHash(password, ch.passwordHashConfig);
    const mfa = typeof code === 'string' ? code : totp(code.key, { time: code.time ?? Date.now() });
    const r = await this._call('POST', path, {
      json: { challengeHash: challengeHash(pw, ch.challengeHashConfig), mfa: { totp: mfa } },
      auth: 'none', expect: [200],
    });
    const cookie = (r.headers['set-cookie'] ?? []).map((c) => /^login=([^;]*)/.exec(c)).find(Boolean);
    if (!cookie || !cookie[1]) {
      throw new Error('login: the answer set no login cookie');
    }
    this.session = cookie[1];
    this.accountId = accountId;
    return { accountId, sessionId: this.session };
  }

  /** Ends the session (the server answers 204 either way) and forgets the cookie. */
  async logout() {
    const path = `${this._account()}/logout`;
    try {
      await this._call('POST', path, { expect: [204, 200] });
    } finally {
      this.session = undefined;
    }
  }

  /** The account of the session (or bearer token): {accountId, email}. */
  async whoami() {
    const r = await this._call('GET', this._account(), { expect: [200] });
    return { accountId: this.accountId, ...json(r) };
  }

  // --- access codes --------------------------------------------------------------------------

  /**
   * Creates an access code pair: resolves to {code, secret, expires, href}. The secret is shown
   * once. With {use: true} the client keeps the pair for signed requests.
   */
  async createAccessCode({ description, use = false } = {}) {
    const body = description === undefined ? {} : { description };
    const r = await this._call('POST', `${this._account()}/accessCode`, { json: body, expect: [201] });
    const pair = { ...json(r), href: toPath(r.headers.location) };
    if (use) {
      this.accessCode = pair.code;
      this.secret = pair.secret;
    }
    return pair;
  }

  /** Lists the pairs (never a secret): [{code, description, created, expires, href}]. */
  async listAccessCodes() {
    const r = await this._call('GET', `${this._account()}/accessCode`, { expect: [200] });
    return json(r).items;
  }

  /** Revokes one pair by its code. */
  async revokeAccessCode(code) {
    await this._call('DELETE', `${this._account()}/accessCode/${checkId('code', code)}`, { expect: [204] });
  }

  // --- tokens (signed) -----------------------------------------------------------------------

  _tokenPath(idOrHref) {
    if (typeof idOrHref === 'string' && idOrHref.startsWith('/account/')) {
      return idOrHref;
    }
    return `${this._account()}/token/${checkId('token id', idOrHref)}`;
  }

  /**
   * Tokenizes bytes (Buffer, Uint8Array or string). options: contentType ('application/octet-
   * stream'), public (bool), expires (Date | ms | RFC 3339 string; sent at second precision).
   * Resolves to the token id.
   */
  async tokenize(data, { contentType = 'application/octet-stream', public: isPublic, expires } = {}) {
    const q = [];
    if (isPublic !== undefined) {
      q.push(`public=${isPublic ? 'true' : 'false'}`);
    }
    if (expires !== undefined) {
      q.push(`expires=${formatDate(expires)}`);
    }
    const target = `${this._account()}/token${q.length ? `?${q.join('&')}` : ''}`;
    const r = await this.signedRequest('POST', target, { body: data, contentType });
    if (r.status !== 201) {
      throw new OpenTokenError(r.status, r.headers, r.body, 'POST', target);
    }
    const location = toPath(r.headers.location ?? '') ?? '';
    const id = location.slice(location.lastIndexOf('/') + 1);
    checkId('token id', id);
    return id;
  }

  /**
   * Detokenizes: resolves to {data: Buffer (the exact bytes), contentType, etag}. With
   * {signed: false} the request is not signed (public tokens only).
   */
  async detokenize(idOrHref, { signed = true } = {}) {
    const path = this._tokenPath(idOrHref);
    const r = signed ? await this.signedRequest('GET', path) : await this.raw('GET', path);
    if (r.status !== 200) {
      throw new OpenTokenError(r.status, r.headers, r.body, 'GET', path);
    }
    return { data: r.body, contentType: r.headers['content-type'], etag: r.headers.etag };
  }

  /** Deletes a token (404 afterwards). */
  async deleteToken(idOrHref) {
    const path = this._tokenPath(idOrHref);
    const r = await this.signedRequest('DELETE', path);
    if (r.status !== 204) {
      throw new OpenTokenError(r.status, r.headers, r.body, 'DELETE', path);
    }
  }

  // --- access tokens (/access-tokens; session or bearer) -------------------------------------

  /**
   * Creates an access token: fields {name, scope?, status?, expirationDate?} (a Date is sent as
   * an RFC 3339 UTC string). Resolves to the object with `token` (shown once).
   */
  async createAccessToken(fields) {
    const r = await this._call('POST', '/access-tokens', { json: accessTokenFields(fields), expect: [201] });
    return json(r);
  }

  /** Resolves to {items, count} (no token strings). */
  async listAccessTokens() {
    return json(await this._call('GET', '/access-tokens', { expect: [200] }));
  }

  async getAccessToken(id) {
    return json(await this._call('GET', `/access-tokens/${checkId('id', id)}`, { expect: [200] }));
  }

  /** Updates name and/or status ('active' | 'inactive'); resolves to the updated object. */
  async updateAccessToken(id, fields) {
    return json(await this._call('PATCH', `/access-tokens/${checkId('id', id)}`,
      { json: fields, expect: [200] }));
  }

  async deleteAccessToken(id) {
    await this._call('DELETE', `/access-tokens/${checkId('id', id)}`, { expect: [200, 204] });
  }

  // --- access tokens by e-mail (/v1/access_tokens; no credential) ----------------------------

  /** Asks the server to mail an access token to the address of a confirmed account. */
  async requestAccessTokenByMail(email) {
    await this._call('POST', '/v1/access_tokens',
      { json: v1Body({ email_address: email }), auth: 'none', expect: [201] });
  }

  /** Asks for a deletion code for the mailed access token (sent by mail). */
  async requestAccessTokenDeletionCode(email) {
    await this._call('POST', '/v1/access_tokens/delete',
      { json: v1Body({ email_address: email }), auth: 'none', expect: [201] });
  }

  /** Revokes the mailed access token with the code from the deletion mail. */
  async deleteMailedAccessToken(email, code) {
    await this._call('DELETE', '/v1/access_tokens',
      { json: v1Body({ email_address: email, code }), auth: 'none', expect: [204] });
  }
}

/**
 * The confirmation path (/registration/{id}/confirm/{code}) in a link or a mail's text, undoing
 * quoted-printable soft line breaks; undefined when there is none.
 */
export function confirmationPath(text) {
  const flat = String(text).replace(/=\r?\n/g, '').replace(/=3D/gi, '=');
  const m = /(\/registration\/[A-Za-z0-9_-]+\/confirm\/[A-Za-z0-9_-]+)/.exec(flat);
  return m ? m[1] : undefined;
}

// `base` with `extra` on top, header names compared case-insensitively.
function mergeHeaders(base, extra) {
  const out = { ...base };
  for (const [name, value] of Object.entries(extra)) {
    for (const k of Object.keys(out)) {
      if (k.toLowerCase() === name.toLowerCase()) {
        delete out[k];
      }
    }
    out[name] = value;
  }
  return out;
}

function v1Body(attributes) {
  return { data: { type: 'access_tokens', attributes } };
}

function accessTokenFields(fields) {
  const out = { ...fields };
  if (out.expirationDate instanceof Date || typeof out.expirationDate === 'number') {
    out.expirationDate = formatDate(out.expirationDate);
  }
  return out;
}
