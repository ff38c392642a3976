// The README's "First tokenize / detokenize" snippets, run as written against the real daemon
// (only the paths are rewritten: socket, mail spool, and the package name to this checkout).
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';

const env = process.env;
const haveDaemon = Boolean(env.OPENTOKEN_TEST_SOCKET && env.OPENTOKEN_TEST_MAIL_DIR);
if (env.OPENTOKEN_TEST_REQUIRE_DAEMON === '1' && !haveDaemon) {
  throw new Error('OPENTOKEN_TEST_REQUIRE_DAEMON=1 but no daemon: run through tests/support/with_daemon.py');
}

function snippets() {
  const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
  const section = readme.slice(readme.indexOf('## First tokenize'), readme.indexOf('\n## API'));
  const blocks = [...section.matchAll(/```js\n([\s\S]*?)```/g)].map((m) => m[1]);
  assert.equal(blocks.length, 2, 'the section has the setup and the service snippets');
  return blocks.map((code) => code
    .replaceAll("'var/run/opentokend.sock'", JSON.stringify(env.OPENTOKEN_TEST_SOCKET))
    .replaceAll("'var/mail'", JSON.stringify(env.OPENTOKEN_TEST_MAIL_DIR))
    .replaceAll('`var/mail/${mail}`', `\`${env.OPENTOKEN_TEST_MAIL_DIR}/\${mail}\``)
    .replaceAll("'opentoken-client'", JSON.stringify(new URL('../index.js', import.meta.url).href)));
}

const skip = haveDaemon ? false : 'no daemon';

test('README: first tokenize / detokenize, as written', { skip }, async (t) => {
  const [setup, service] = snippets();
  assert.ok(service.split('\n').filter((l) => l.trim() && !l.trim().startsWith('//')).length < 10);
  const dir = mkdtempSync(join(tmpdir(), 'otc-readme-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'setup.mjs'), setup);
  writeFileSync(join(dir, 'service.mjs'), service);
  const run = promisify(execFile);
  const base = { ...env, OT_PASSWORD: 'a readme password' };
  const out = await run(process.execPath, [join(dir, 'setup.mjs')], { env: base });
  const { account, code, secret } = JSON.parse(out.stdout);
  const served = await run(process.execPath, [join(dir, 'service.mjs')],
    { env: { ...base, OT_ACCOUNT: account, OT_CODE: code, OT_SECRET: secret } });
  assert.match(served.stdout, /^[A-Za-z0-9_-]{32} text\/plain 4111 1111 1111 1111\n$/);
});
