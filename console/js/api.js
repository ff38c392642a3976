// The console's HTTP client: same-origin fetch() calls to the public API, the Link headers of
// its answers, and its errors as readable messages. The login cookie is HttpOnly: the browser
// sends it, this code never sees it.

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

// Link headers (fetch joins several with ", "): [{href, rel, title, ...}].
export function parseLinks(value) {
  const out = [];
  if (!value) {
    return out;
  }
  const re = /<([^>]*)>((?:\s*;\s*[a-zA-Z]+="[^"]*")*)/g;
  let m;
  while ((m = re.exec(value)) !== null) {
    const link = { href: m[1] };
    const params = /;\s*([a-zA-Z]+)="([^"]*)"/g;
    let p;
    while ((p = params.exec(m[2])) !== null) {
      link[p[1]] = p[2];
    }
    out.push(link);
  }
  return out;
}

export function findLink(links, title, rel) {
  const l = links.find((x) => x.title === title && (rel === undefined || x.rel === rel));
  if (!l) {
    throw new ApiError(0, `the API did not offer the link "${title}"`);
  }
  return l.href;
}

// Expands {name} from `values` and drops optional {?query} parts.
export function expand(template, values) {
  let out = template;
  for (const [k, v] of Object.entries(values)) {
    out = out.split(`{${k}}`).join(encodeURIComponent(v));
  }
  return out.replace(/\{\?[^}]*\}/g, "");
}

function messageOf(status, doc, text) {
  if (doc && typeof doc === "object") {
    if (typeof doc.message === "string") {
      return doc.message;
    }
    if (doc.data && typeof doc.data.message === "string") {
      return doc.data.message;
    }
  }
  if (status === 0) {
    return "the vault cannot be reached";
  }
  return text && text.length < 200 ? text : `the vault answered ${status}`;
}

// One request. `json`: a body to send as application/json; `body` + `headers`: raw.
export async function call(method, path, { json, body, headers } = {}) {
  const h = new Headers(headers || {});
  if (!h.has("Accept")) {
    h.set("Accept", "application/json");
  }
  let payload = body;
  if (json !== undefined) {
    h.set("Content-Type", "application/json");
    payload = JSON.stringify(json);
  }
  let r;
  try {
    r = await fetch(path, {
      method,
      headers: h,
      body: payload,
      credentials: "same-origin",
      cache: "no-store",
      redirect: "error",
      referrerPolicy: "no-referrer",
    });
  } catch (e) {
    throw new ApiError(0, messageOf(0));
  }
  const text = await r.text();
  let doc = null;
  const type = r.headers.get("Content-Type") || "";
  if (text && type.includes("json")) {
    try {
      doc = JSON.parse(text);
    } catch (e) {
      doc = null;
    }
  }
  if (!r.ok) {
    throw new ApiError(r.status, messageOf(r.status, doc, text));
  }
  return {
    status: r.status,
    headers: r.headers,
    doc,
    text,
    links: parseLinks(r.headers.get("Link")),
  };
}
