// Account helpers: the password hash, TOTP codes and the login challenge hash, as the server's
// registration and login replies describe them (passwordHashConfig, challengeHashConfig).
import { createHash, createHmac, pbkdf2 } from 'node:crypto';

/**
 * PBKDF2 password hash as `passwordHashConfig` announces it, e.g.
 * {type: "pbkdf2", algorithm: "sha512", iterations: 100000, derivedLength: 64,
 *  salt: "...", encoding: "base64"}. Resolves to the encoded hash (a string).
 */
export function passwordHash(password, config) {
  if (!config || config.type !== 'pbkdf2') {
    return Promise.reject(new Error('passwordHashConfig: only type "pbkdf2" is supported'));
  }
  const digest = String(config.algorithm || '').toLowerCase();
  if (!['sha1', 'sha256', 'sha512'].includes(digest)) {
    return Promise.reject(new Error('passwordHashConfig: unsupported algorithm'));
  }
  const encoding = config.encoding || 'base64';
  if (!['base64', 'hex'].includes(encoding)) {
    return Promise.reject(new Error('passwordHashConfig: unsupported encoding'));
  }
  const iterations = config.iterations;
  const length = config.derivedLength;
  if (!Number.isInteger(iterations) || iterations < 1 || !Number.isInteger(length) || length < 1) {
    return Promise.reject(new Error('passwordHashConfig: bad iterations or derivedLength'));
  }
  return new Promise((resolve, reject) => {
    pbkdf2(Buffer.from(password, 'utf8'), Buffer.from(String(config.salt), 'utf8'), iterations,
      length, digest, (err, key) => {
        if (err) {
          reject(err);
          return;
        }
        const out = key.toString(encoding);
        key.fill(0);
        resolve(out);
      });
  });
}

/**
 * The login challenge hash: hex(SHA-512(passwordHash || challenge salt)), as
 * `challengeHashConfig` ({algorithm: "sha512", salt, encoding: "hex"}) describes.
 */
export function challengeHash(pwHash, config) {
  if (!config || String(config.algorithm).toLowerCase() !== 'sha512') {
    throw new Error('challengeHashConfig: only algorithm "sha512" is supported');
  }
  const encoding = config.encoding || 'hex';
  if (!['hex', 'base64'].includes(encoding)) {
    throw new Error('challengeHashConfig: unsupported encoding');
  }
  return createHash('sha512').update(String(pwHash) + String(config.salt), 'utf8').digest(encoding);
}

function keyBytes(key) {
  if (Buffer.isBuffer(key)) {
    return key;
  }
  if (key instanceof Uint8Array) {
    return Buffer.from(key);
  }
  if (typeof key === 'string' && /^([0-9a-fA-F]{2})+$/.test(key)) {
    return Buffer.from(key, 'hex');
  }
  throw new TypeError('totp key: expected a Buffer, a Uint8Array or a hex string');
}

/**
 * RFC 6238 TOTP code. `key`: the secret (Buffer or hex string, e.g. mfa.totp.keyHex).
 * Options: time (Date or ms since epoch; default now), step (seconds, 30), digits (6),
 * algorithm ('sha1'), offset (steps to add: -1 for the previous code).
 */
export function totp(key, { time = Date.now(), step = 30, digits = 6, algorithm = 'sha1', offset = 0 } = {}) {
  const ms = time instanceof Date ? time.getTime() : time;
  const counter = Math.floor(ms / 1000 / step) + offset;
  if (!Number.isSafeInteger(counter) || counter < 0) {
    throw new RangeError('totp: time outside the counter range');
  }
  const msg = Buffer.alloc(8);
  msg.writeBigUInt64BE(BigInt(counter));
  const mac = createHmac(algorithm, keyBytes(key)).update(msg).digest();
  const o = mac[mac.length - 1] & 0x0f;
  const bin = mac.readUInt32BE(o) & 0x7fffffff;
  return String(bin % 10 ** digits).padStart(digits, '0');
}
