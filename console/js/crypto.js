// The hashes and signatures the API asks a client to compute, with WebCrypto (no library):
// the registration's and the login's password hash (PBKDF2 as `passwordHashConfig` says), the
// login challenge hash (SHA-512 as `challengeHashConfig` says) and the OT1 request signature
// (HMAC-SHA256 over the canonical request, doc/api/signed-requests.md). Secrets are passed in and
// never stored here.

const utf8 = new TextEncoder();

function base64(bytes) {
  let s = "";
  for (const b of bytes) {
    s += String.fromCharCode(b);
  }
  return btoa(s);
}

function hex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function requireField(cfg, name, value) {
  if (cfg[name] !== value) {
    throw new Error(`unsupported hash configuration: ${name} is ${cfg[name]}, expected ${value}`);
  }
}

export async function passwordHash(password, cfg) {
  requireField(cfg, "type", "pbkdf2");
  requireField(cfg, "algorithm", "sha512");
  requireField(cfg, "encoding", "base64");
  const key = await crypto.subtle.importKey("raw", utf8.encode(password), "PBKDF2", false, [
    "deriveBits",
  ]);
  const bits = await crypto.subtle.deriveBits(
    { name: "PBKDF2", hash: "SHA-512", salt: utf8.encode(cfg.salt), iterations: cfg.iterations },
    key,
    cfg.derivedLength * 8,
  );
  return base64(new Uint8Array(bits));
}

export async function challengeHash(pwHash, cfg) {
  requireField(cfg, "algorithm", "sha512");
  requireField(cfg, "encoding", "hex");
  const digest = await crypto.subtle.digest("SHA-512", utf8.encode(pwHash + cfg.salt));
  return hex(new Uint8Array(digest));
}

// X-OpenToken-Date: yyyy-mm-ddThh:mm:ssZ (UTC, no fraction).
export function ot1Date(now = new Date()) {
  return now.toISOString().replace(/\.\d{3}Z$/, "Z");
}

const SIGNED = ["host", "content-type", "x-opentoken-date"];

// The Authorization header for a request: METHOD\nPATH\nQUERY\n<name>:<value>\n...\n\nBODY,
// signed headers in the order of signed-headers, values trimmed, host lower-case.
export async function ot1Authorization(method, target, headers, body, code, secret) {
  const q = target.indexOf("?");
  const path = q < 0 ? target : target.slice(0, q);
  const query = q < 0 ? "" : target.slice(q + 1);
  let head = `${method}\n${path}\n${query}\n`;
  for (const name of SIGNED) {
    let value = String(headers[name]).trim();
    if (name === "host") {
      value = value.toLowerCase();
    }
    head += `${name}:${value}\n`;
  }
  head += "\n";
  const headBytes = utf8.encode(head);
  const bodyBytes = body;
  const canonical = new Uint8Array(headBytes.length + bodyBytes.length);
  canonical.set(headBytes, 0);
  canonical.set(bodyBytes, headBytes.length);
  const key = await crypto.subtle.importKey(
    "raw",
    utf8.encode(secret),
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  );
  const sig = hex(new Uint8Array(await crypto.subtle.sign("HMAC", key, canonical)));
  return `OT1-HMAC-SHA256-HEX; access-code=${code}; signed-headers=${SIGNED.join(" ")}; signature=${sig}`;
}
