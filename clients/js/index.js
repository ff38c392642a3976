// opentoken-client: a client for opentokend (Node 20, no dependencies).
export { SCHEME, MANDATORY_SIGNED_HEADERS, canonicalContent, formatDate, sign } from './src/sign.js';
export { challengeHash, passwordHash, totp } from './src/account.js';
export { OpenTokenError } from './src/errors.js';
export { OpenTokenClient, confirmationPath, parseLinks } from './src/client.js';
