// End-to-end journey against a real opentokend, over its Unix socket and over TLS. The daemon is
// started by tests/support/with_daemon.py, which sets OPENTOKEN_TEST_SOCKET, OPENTOKEN_TEST_URL,
// OPENTOKEN_TEST_CACERT and OPENTOKEN_TEST_MAIL_DIR. Without them the tests are skipped (run the
// offline tests alone with `node --test test/offline.test.js`); with OPENTOKEN_TEST_REQUIRE_DAEMON=1
// (set by the ctest registration) a missing daemon is a failure, not a skip.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';

import { OpenTokenClient, OpenTokenError, confirmationPath, formatDate, sign } from '../index.js';
import { waitForMail } from './mail.js';

const env = process.env;
const haveDaemon = Boolean(env.OPENTOKEN_TEST_SOCKET && env.OPENTOKEN_TEST_URL &&
  env.OPENTOKEN_TEST_MAIL_DIR);
if (env.OPENTOKEN_TEST_REQUIRE_DAEMON === '1' && !haveDaemon) {
  throw new Error('OPENTOKEN_TEST_REQUIRE_DAEMON=1 but no daemon: run through tests/support/with_daemon.py');
}
const skip = haveDaemon ? false : 'no daemon (run through tests/support/with_daemon.py)';
const PASSWORD = 'correct horse battery staple';

const transports = {
  unix: () => ({ socketPath: env.OPENTOKEN_TEST_SOCKET }),
  tls: () => ({ url: env.OPENTOKEN_TEST_URL, caFile: env.OPENTOKEN_TEST_CACERT }),
};

async function rejectsWith(promise, status, shape, code) {
  await assert.rejects(promise, (e) => {
    assert.ok(e instanceof OpenTokenError, String(e));
    assert.equal(e.status, status, e.message);
    assert.equal(e.shape, shape, e.message);
    assert.equal(e.code, code, e.message);
    return true;
  });
}

for (const [name, options] of Object.entries(transports)) {
  test(`journey over ${name}`, { skip }, async (t) => {
    const email = `js-${name}@example.com`;
    const mailDir = env.OPENTOKEN_TEST_MAIL_DIR;
    const client = new OpenTokenClient(options());
    t.after(() => client.close());

    // Register, confirm with the link from the mail, log in.
    const reg = await client.register(email, PASSWORD);
    assert.match(reg.totpKey, /^[0-9a-f]{40}$/);
    assert.match(reg.totpUri, /^otpauth:\/\/totp\//);
    const mail = await waitForMail(mailDir, email, 'Confirm',
      /https?:\/\/\S+\/registration\/[A-Za-z0-9_-]+\/confirm\/([A-Za-z0-9_-]+)/);
    assert.equal(confirmationPath(mail.raw), confirmationPath(mail[0]));
    // Over the socket: the whole mail as stored (quoted-printable); over TLS: the code alone.
    const confirmed = name === 'unix' ? await client.confirm(mail.raw) : await client.confirm(mail[1], reg);
    assert.match(confirmed.accountId, /^[A-Za-z0-9_-]{32}$/);
    assert.equal(confirmed.loginPath, `/account/${confirmed.accountId}/login`);
    const login = await client.login(PASSWORD, { key: reg.totpKey });
    assert.equal(login.accountId, confirmed.accountId);
    assert.deepEqual(await client.whoami(), { accountId: confirmed.accountId, email });

    // A wrong password is the one documented login failure.
    const other = new OpenTokenClient({ ...options(), accountId: confirmed.accountId });
    t.after(() => other.close());
    await rejectsWith(other.login('wrong password', '000000'), 401, 'vnd.error', 'unauthorized');

    // Access codes: created (secret once), listed without the secret.
    const pair = await client.createAccessCode({ description: `js ${name}`, use: true });
    assert.match(pair.code, /^[A-Za-z0-9_-]{32}$/);
    assert.match(pair.secret, /^[A-Za-z0-9_-]{32}$/);
    assert.equal(pair.href, `/account/${confirmed.accountId}/accessCode/${pair.code}`);
    const listed = await client.listAccessCodes();
    assert.deepEqual(listed.map((i) => [i.code, i.description]), [[pair.code, `js ${name}`]]);
    assert.ok(!JSON.stringify(listed).includes(pair.secret));

    // Tokenize / detokenize: exact bytes and content type, binary and text, on this transport.
    const binary = Buffer.concat([Buffer.from([0, 0xff, 0x0d, 0x0a]), randomBytes(70000)]);
    const id = await client.tokenize(binary, { contentType: 'application/octet-stream' });
    assert.match(id, /^[A-Za-z0-9_-]{32}$/);
    const back = await client.detokenize(id);
    assert.ok(back.data.equals(binary), 'detokenized bytes differ');
    assert.equal(back.contentType, 'application/octet-stream');
    assert.match(back.etag, /^"/);
    const textId = await client.tokenize('This is a test.\n', { contentType: 'text/plain; charset=utf-8' });
    const text = await client.detokenize(textId);
    assert.equal(text.data.toString('utf8'), 'This is a test.\n');
    assert.equal(text.contentType, 'text/plain; charset=utf-8');
    const emptyId = await client.tokenize(Buffer.alloc(0), { contentType: 'text/plain' });
    const empty = await client.detokenize(emptyId);
    assert.equal(empty.data.length, 0);

    // Public tokens are readable unsigned; private ones are not (401).
    const pub = await client.tokenize('public data', { public: true, contentType: 'text/plain' });
    assert.equal((await client.detokenize(pub, { signed: false })).data.toString(), 'public data');
    await rejectsWith(client.detokenize(id, { signed: false }), 401, 'vnd.error', 'unauthorized');

    // Expiry: a Date with milliseconds is sent at second precision and accepted; a past one is 400.
    const soon = await client.tokenize('short-lived', { expires: new Date(Date.now() + 3600_123) });
    assert.equal((await client.detokenize(soon)).data.toString(), 'short-lived');
    await rejectsWith(client.tokenize('x', { expires: new Date(Date.now() - 3600_000) }), 400, 'vnd.error',
      'bad-request');

    // Delete, then 404 (and a second delete is 404 too).
    await client.deleteToken(id);
    await rejectsWith(client.detokenize(id), 404, 'vnd.error', 'not-found');
    await rejectsWith(client.deleteToken(id), 404, 'vnd.error', 'not-found');

    // A wrong secret, and a stale date, are 401 (the signature scheme is really checked).
    const forger = new OpenTokenClient({ ...options(), accountId: confirmed.accountId,
      accessCode: pair.code, secret: 'A'.repeat(32) });
    t.after(() => forger.close());
    await rejectsWith(forger.detokenize(textId), 401, 'vnd.error', 'unauthorized');
    const info = await client.signatureInformation();
    assert.deepEqual(info.requiredSignedHeaders, ['host', 'content-type', 'x-opentoken-date']);
    assert.ok(Math.abs(Date.parse(info.serverTime) - Date.now()) < 5000, info.serverTime);
    const stale = await client.signedRequest('GET', `/account/${confirmed.accountId}/token/${textId}`,
      { date: new Date(Date.now() - 3600_000) });
    assert.equal(stale.status, 401);
    // sign() by hand, sent raw: the same bytes the client sends.
    const target = `/account/${confirmed.accountId}/token/${textId}`;
    const headers = sign({ method: 'GET', target, accessCode: pair.code, secret: pair.secret,
      headers: { Host: client.transport.host, 'Content-Type': 'text/plain' } });
    const manual = await client.raw('GET', target, { headers });
    assert.equal(manual.status, 200);
    assert.equal(manual.body.toString(), 'This is a test.\n');

    // Access tokens: create (token once), list, get, update, use as bearer, delete.
    const expiration = new Date(Date.now() + 86400_000);
    const at = await client.createAccessToken({ name: 'js test', scope: ['account.read', 'accessTokens.read'],
      expirationDate: expiration });
    assert.match(at.token, /^otk_[A-Za-z0-9_-]{43}$/);
    assert.match(at.id, /^[0-9a-f]{24}$/);
    assert.equal(at.expirationDate, `${formatDate(expiration).slice(0, -1)}.000Z`);
    const all = await client.listAccessTokens();
    assert.equal(all.count, all.items.length);
    assert.ok(all.items.some((i) => i.id === at.id));
    assert.ok(!JSON.stringify(all).includes(at.token));
    assert.equal((await client.getAccessToken(at.id)).name, 'js test');
    const updated = await client.updateAccessToken(at.id, { name: 'renamed', status: 'active' });
    assert.equal(updated.name, 'renamed');
    assert.equal(updated.token, undefined);
    const bearer = new OpenTokenClient({ ...options(), accountId: confirmed.accountId,
      accessToken: at.token });
    t.after(() => bearer.close());
    assert.equal((await bearer.whoami()).email, email);
    assert.ok((await bearer.listAccessTokens()).items.some((i) => i.id === at.id));
    await rejectsWith(bearer.createAccessToken({ name: 'escalate' }), 403, 'losant', 'Forbidden');
    await rejectsWith(client.createAccessToken({ name: 'x', scope: ['nope'] }), 400, 'losant', 'Validation');
    await client.deleteAccessToken(at.id);
    await rejectsWith(client.getAccessToken(at.id), 404, 'losant', 'NotFound');
    await rejectsWith(bearer.listAccessTokens(), 401, 'losant', 'Unauthorized');

    // The e-mail flow: a token by mail, usable as bearer; revoked with the mailed code.
    await client.requestAccessTokenByMail(email);
    const [mailed] = await waitForMail(mailDir, email, 'Your opentokend', /otk_[A-Za-z0-9_-]{43}/);
    const byMail = new OpenTokenClient({ ...options(), accountId: confirmed.accountId, accessToken: mailed });
    t.after(() => byMail.close());
    assert.equal((await byMail.whoami()).email, email);
    await client.requestAccessTokenDeletionCode(email);
    const [, code] = await waitForMail(mailDir, email, 'Revoke', /\n([A-Za-z0-9_-]{32})\r?\n/);
    await rejectsWith(client.deleteMailedAccessToken(email, 'wrong'), 400, 'pkmnapi',
      'error_access_tokens_invalid');
    await client.deleteMailedAccessToken(email, code);
    await rejectsWith(byMail.whoami(), 401, 'vnd.error', 'unauthorized');

    // Revoke the pair: signing with it is refused.
    await client.revokeAccessCode(pair.code);
    await rejectsWith(client.detokenize(textId), 401, 'vnd.error', 'unauthorized');
    await rejectsWith(client.revokeAccessCode(pair.code), 404, 'vnd.error', 'not-found');

    // Log out: the session no longer works.
    await client.logout();
    assert.equal(client.session, undefined);
    const after = await client.raw('GET', `/account/${confirmed.accountId}`);
    assert.equal(after.status, 401);
  });
}
