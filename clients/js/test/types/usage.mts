// Compiled by tsc (noEmit, strict) against index.d.ts: the README's usage and every declared
// call type-check; the @ts-expect-error lines must fail to type-check.
import {
  OpenTokenClient, OpenTokenError, canonicalContent, challengeHash, formatDate, MANDATORY_SIGNED_HEADERS,
  parseLinks, passwordHash, SCHEME, sign, totp,
  type AccessToken, type CreatedAccessToken, type Detokenized, type Registration,
} from 'opentoken-client';

async function journey(): Promise<void> {
  const client = new OpenTokenClient({ socketPath: '/run/opentokend/api.sock' });
  const reg: Registration = await client.register('me@example.com', 'pw');
  const { accountId } = await client.confirm('https://h/registration/a/confirm/b');
  await client.login('pw', { key: reg.totpKey });
  await client.login('pw', totp(reg.totpKey), { accountId });
  const who: { accountId: string; email: string } = await client.whoami();
  const pair = await client.createAccessCode({ description: 'ci', use: true });
  const secret: string = pair.secret;
  const id: string = await client.tokenize('4111 1111 1111 1111', { contentType: 'text/plain' });
  await client.tokenize(new Uint8Array([1, 2]), { public: true, expires: new Date() });
  const back: Detokenized = await client.detokenize(id);
  const bytes: Buffer = back.data;
  await client.deleteToken(id);
  const items = await client.listAccessCodes();
  await client.revokeAccessCode(items[0].code);
  const at: CreatedAccessToken = await client.createAccessToken({ name: 'n', scope: ['account.read'],
    expirationDate: Date.now() + 1000 });
  const list: { items: AccessToken[]; count: number } = await client.listAccessTokens();
  await client.updateAccessToken(at.id, { status: 'inactive' });
  await client.getAccessToken(at.id);
  await client.deleteAccessToken(at.id);
  await client.requestAccessTokenByMail('me@example.com');
  await client.requestAccessTokenDeletionCode('me@example.com');
  await client.deleteMailedAccessToken('me@example.com', 'code');
  const r = await client.signedRequest('GET', `/account/${accountId}/token/${id}`, { contentType: 'text/plain' });
  const status: number = r.status;
  await client.raw('GET', '/');
  const serverTime: string = (await client.signatureInformation()).serverTime;
  void serverTime;
  await client.logout();
  client.close();
  const tls = new OpenTokenClient({ url: 'https://127.0.0.1:8443', caFile: 'cert.pem', accessToken: at.token });
  tls.close();
  try {
    await client.detokenize(id);
  } catch (e) {
    if (e instanceof OpenTokenError) {
      const s: number = e.status;
      const c: string | undefined = e.code;
      void s; void c;
    }
  }
  void who; void secret; void bytes; void list; void status;
  // @ts-expect-error: tokenize takes bytes, not a number
  await client.tokenize(42);
  // @ts-expect-error: unknown scope
  await client.createAccessToken({ name: 'n', scope: ['devices'] });
  // @ts-expect-error: name is required
  await client.createAccessToken({});
}

const headers: Record<string, string> = sign({ method: 'POST', target: '/t', headers: { Host: 'h', 'Content-Type': 'text/plain' },
  body: 'x', accessCode: 'c', secret: 's', date: '2016-11-17T20:01:00Z' });
const bytes: Buffer = canonicalContent('GET', '/', headers, null, MANDATORY_SIGNED_HEADERS);
const scheme: 'OT1-HMAC-SHA256-HEX' = SCHEME;
const date: string = formatDate(new Date());
const pw: Promise<string> = passwordHash('p', { type: 'pbkdf2', algorithm: 'sha512', iterations: 1,
  derivedLength: 64, salt: 's', encoding: 'base64' });
const ch: string = challengeHash('h', { algorithm: 'sha512', salt: 's' });
const href: string = parseLinks(['</>; rel="self"'])[0].href;
void journey; void bytes; void scheme; void date; void pw; void ch; void href;
