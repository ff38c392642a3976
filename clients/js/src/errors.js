// Errors: every non-2xx answer becomes an OpenTokenError carrying the HTTP status and the server's
// error body in one of its three shapes (vnd.error, Losant {type, message}, pkmnapi {data}).

/** A request the server answered with an unexpected status. Never holds a secret. */
export class OpenTokenError extends Error {
  constructor(status, headers, body, method, path) {
    const parsed = parseErrorBody(headers['content-type'], body);
    super(`${method} ${redactPath(path)}: HTTP ${status}` +
      (parsed.message ? `: ${parsed.message}` : ''));
    this.name = 'OpenTokenError';
    this.status = status;
    this.code = parsed.code;          // vnd.error code, Losant type or pkmnapi id
    this.serverMessage = parsed.message;
    this.logref = parsed.logref;
    this.shape = parsed.shape;        // 'vnd.error' | 'losant' | 'pkmnapi' | undefined
    this.body = parsed.json;          // the parsed JSON error body, if any
    this.retryAfter = headers['retry-after'];
    this.headers = headers;
  }
}

// Paths carry ids but no secrets; confirmation codes are the exception.
function redactPath(path) {
  return String(path).replace(/(\/confirm\/)[^/?]+/, '$1…');
}

export function parseErrorBody(contentType, body) {
  const out = { code: undefined, message: undefined, logref: undefined, shape: undefined, json: undefined };
  if (!body || body.length === 0 || !/json/i.test(contentType || '')) {
    return out;
  }
  let json;
  try {
    json = JSON.parse(body.toString('utf8'));
  } catch {
    return out;
  }
  out.json = json;
  if (json && typeof json === 'object') {
    if (json.data && typeof json.data === 'object' && json.data.type === 'errors') {
      out.shape = 'pkmnapi';
      out.code = json.data.id;
      out.message = json.data.attributes?.message;
    } else if (typeof json.type === 'string' && typeof json.message === 'string') {
      out.shape = 'losant';
      out.code = json.type;
      out.message = json.message;
    } else if (typeof json.code === 'string' || typeof json.message === 'string') {
      out.shape = 'vnd.error';
      out.code = json.code;
      out.message = json.message;
      out.logref = json.logref;
    }
  }
  return out;
}
