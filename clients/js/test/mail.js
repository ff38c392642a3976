// Test helper: reads the daemon's mail spool (one RFC 5322 *.eml file per mail). Enough MIME for
// the daemon's mails: headers, quoted-printable text parts (a multipart body is searched whole).
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

function decodeQuotedPrintable(s) {
  return Buffer.from(s.replace(/=\r?\n/g, '').replace(/=([0-9A-F]{2})/g,
    (_, h) => String.fromCharCode(parseInt(h, 16))), 'latin1').toString('utf8');
}

export function readMails(dir) {
  const out = [];
  for (const name of readdirSync(dir).filter((n) => n.endsWith('.eml')).sort()) {
    const raw = readFileSync(join(dir, name), 'utf8');
    const split = raw.search(/\r?\n\r?\n/);
    const head = raw.slice(0, split).replace(/\r?\n[ \t]+/g, ' ');
    const headers = {};
    for (const line of head.split(/\r?\n/)) {
      const i = line.indexOf(':');
      if (i > 0) {
        headers[line.slice(0, i).toLowerCase()] = line.slice(i + 1).trim();
      }
    }
    out.push({ file: name, headers, raw, text: decodeQuotedPrintable(raw.slice(split)) });
  }
  return out;
}

/**
 * Waits for a mail to `to` whose subject contains `subject` and whose decoded text matches `re`;
 * returns the match, with the mail's raw text as `.raw`.
 */
export async function waitForMail(dir, to, subject, re, { timeoutMs = 10000 } = {}) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    for (const m of readMails(dir).reverse()) {
      if ((m.headers.to ?? '').toLowerCase().includes(to.toLowerCase()) &&
          (m.headers.subject ?? '').includes(subject)) {
        const found = re.exec(m.text);
        if (found) {
          found.raw = m.raw;
          return found;
        }
      }
    }
    await sleep(50);
  }
  throw new Error(`no mail to ${to} with "${subject}" in ${dir}`);
}
