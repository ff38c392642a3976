// Type declarations for opentoken-client (hand-written; keep in step with index.js and src/).
/// <reference types="node" />

/** Bytes accepted as a request body or payload. Strings are sent as UTF-8. */
export type BodyInput = string | Buffer | Uint8Array | ArrayBuffer;
/** A point in time: a Date, milliseconds since the epoch, or an RFC 3339 date-time string. */
export type DateInput = Date | number | string;
/** Header name -> value. */
export type HeaderMap = Record<string, string>;

export declare const SCHEME: 'OT1-HMAC-SHA256-HEX';
export declare const MANDATORY_SIGNED_HEADERS: readonly ['host', 'content-type', 'x-opentoken-date'];

/** `YYYY-MM-DDTHH:MM:SSZ` (UTC, second precision; a fraction is truncated). Default: now. */
export declare function formatDate(when?: DateInput): string;

/**
 * The bytes an OT1 signature covers: METHOD \n PATH \n QUERY \n (name:value \n)* \n BODY.
 * Throws when a signed header is missing, given twice, or holds a control character.
 */
export declare function canonicalContent(
  method: string,
  target: string,
  headers: HeaderMap,
  body?: BodyInput | null,
  signedHeaders?: readonly string[],
): Buffer;

export interface SignOptions {
  method: string;
  /** Origin-form target, `/path?query`, exactly as it will be sent. */
  target: string;
  /** The headers that will be sent; must include Host and Content-Type. */
  headers?: HeaderMap;
  body?: BodyInput | null;
  accessCode: string;
  secret: string;
  /** Overrides the X-OpenToken-Date (default: now, or the X-OpenToken-Date in `headers`). */
  date?: DateInput;
  /** Further headers to sign; host, content-type and x-opentoken-date are always signed. */
  signedHeaders?: readonly string[];
}

/** Returns the headers to send: the given ones plus X-OpenToken-Date and Authorization. */
export declare function sign(options: SignOptions): HeaderMap;

/** The `passwordHashConfig` of the registration and login replies. */
export interface PasswordHashConfig {
  type: 'pbkdf2';
  algorithm: 'sha512' | 'sha256' | 'sha1' | string;
  iterations: number;
  derivedLength: number;
  salt: string;
  encoding?: 'base64' | 'hex';
}

/** The `challengeHashConfig` of the login challenge. */
export interface ChallengeHashConfig {
  algorithm: 'sha512' | string;
  salt: string;
  encoding?: 'hex' | 'base64';
}

export declare function passwordHash(password: string, config: PasswordHashConfig): Promise<string>;
export declare function challengeHash(passwordHash: string, config: ChallengeHashConfig): string;

export interface TotpOptions {
  /** Default: now. */
  time?: Date | number;
  /** Seconds per step (30). */
  step?: number;
  /** 6. */
  digits?: number;
  /** 'sha1'. */
  algorithm?: string;
  /** Steps to add (-1: the previous code). */
  offset?: number;
}

/** RFC 6238 TOTP code. `key`: the raw key, or its hex form (mfa.totp.keyHex). */
export declare function totp(key: Buffer | Uint8Array | string, options?: TotpOptions): string;

export interface Link {
  href: string;
  rel?: string;
  title?: string;
  profile?: string;
  templated?: string;
  [param: string]: string | undefined;
}

export declare function parseLinks(values: readonly string[] | undefined): Link[];

/** `/registration/{id}/confirm/{code}` found in a link or a mail's text (quoted-printable ok). */
export declare function confirmationPath(text: string): string | undefined;

export type ErrorShape = 'vnd.error' | 'losant' | 'pkmnapi';

/** A non-2xx answer: the status and the server's error body. Never carries a secret. */
export declare class OpenTokenError extends Error {
  constructor(status: number, headers: Record<string, string | string[]>, body: Buffer,
    method: string, path: string);
  readonly name: 'OpenTokenError';
  readonly status: number;
  /** vnd.error `code`, Losant `type` or pkmnapi `data.id`. */
  readonly code: string | undefined;
  readonly serverMessage: string | undefined;
  /** vnd.error `logref` (the server's request id). */
  readonly logref: string | undefined;
  readonly shape: ErrorShape | undefined;
  /** The parsed JSON error body, if any. */
  readonly body: unknown;
  readonly retryAfter: string | undefined;
  readonly headers: Record<string, string | string[]>;
}

export interface TransportOptions {
  /** The daemon's Unix socket (Host: localhost). */
  socketPath?: string;
  /** `https://host:port` (the signed Host is `host:port` as written). */
  url?: string;
  /** CA certificate(s) to trust, PEM. */
  ca?: string | Buffer | Array<string | Buffer>;
  /** File with the CA certificate(s), PEM. */
  caFile?: string;
  /** Per request (30000). */
  timeoutMs?: number;
  /** Larger answers are refused (64 MiB). */
  maxResponseBytes?: number;
  /** Overrides the Host header (and so the signed host). */
  hostHeader?: string;
}

export interface ClientOptions extends TransportOptions {
  accountId?: string;
  /** Access code pair for signed requests (tokenize, detokenize, deleteToken). */
  accessCode?: string;
  secret?: string;
  /** A bearer access token (otk_...), used instead of a login session. */
  accessToken?: string;
}

export interface RawReply {
  status: number;
  /** Lower-case names; `set-cookie` and `link` are arrays. */
  headers: Record<string, string | string[]> & { 'set-cookie'?: string[]; link?: string[] };
  body: Buffer;
}

export interface Registration {
  /** Where the secure step goes (`/registration/{id}`). */
  registrationPath: string;
  /** The TOTP key, hex: keep it (authenticator) for every login. */
  totpKey: string;
  totpKeyBase32: string;
  /** otpauth:// URI for authenticator apps. */
  totpUri: string;
  passwordHashConfig: PasswordHashConfig;
}

export interface AccessCodePair {
  code: string;
  /** Shown once. */
  secret: string;
  expires: string;
  href: string;
}

export interface AccessCodeItem {
  code: string;
  description?: string;
  created: string;
  expires: string;
  href: string;
}

export interface TokenizeOptions {
  /** Stored and returned as is ('application/octet-stream'). */
  contentType?: string;
  public?: boolean;
  /** Sent as `?expires=YYYY-MM-DDTHH:MM:SSZ` (second precision). */
  expires?: DateInput;
}

export interface Detokenized {
  /** The exact bytes tokenized. */
  data: Buffer;
  contentType: string | undefined;
  etag: string | undefined;
}

export type AccessTokenScope =
  | 'account' | 'account.read'
  | 'accessCodes' | 'accessCodes.read' | 'accessCodes.create' | 'accessCodes.delete'
  | 'accessTokens' | 'accessTokens.read' | 'accessTokens.create' | 'accessTokens.update'
  | 'accessTokens.delete'
  | 'tokens' | 'tokens.create';

export interface AccessTokenCreate {
  name: string;
  scope?: AccessTokenScope[];
  status?: 'active' | 'inactive';
  /** A Date or number is sent as an RFC 3339 UTC string. */
  expirationDate?: DateInput;
}

export interface AccessTokenUpdate {
  name?: string;
  status?: 'active' | 'inactive';
}

export interface AccessToken {
  id: string;
  accessTokenId: string;
  accountId: string;
  name: string;
  scope: AccessTokenScope[];
  status: 'active' | 'inactive';
  source: 'api' | 'email';
  creationDate: string;
  lastUpdated: string;
  expirationDate: string;
  lastUsed?: string;
  [field: string]: unknown;
}

export interface CreatedAccessToken extends AccessToken {
  /** The bearer token (otk_...): shown once. */
  token: string;
}

export interface SignedRequestOptions {
  body?: BodyInput | null;
  /** Always signed, even on a GET without a body ('application/octet-stream'). */
  contentType?: string;
  headers?: HeaderMap;
  date?: DateInput;
  signedHeaders?: readonly string[];
}

export interface SignatureInformation {
  scheme: string;
  authorization: string;
  canonicalRequest: string;
  requiredSignedHeaders: string[];
  dateHeader: string;
  dateFormat: string;
  datePastSeconds: number;
  dateFutureSeconds: number;
  /** The server's clock, `YYYY-MM-DDTHH:MM:SSZ`: compare with yours when dates are refused. */
  serverTime: string;
  [field: string]: unknown;
}

export declare class OpenTokenClient {
  constructor(options: ClientOptions);
  accountId: string | undefined;
  accessCode: string | undefined;
  secret: string | undefined;
  accessToken: string | undefined;
  /** The login session id (cookie value), set by login(). */
  session: string | undefined;
  readonly transport: { readonly host: string; close(): void };

  close(): void;
  raw(method: string, path: string, options?: { headers?: HeaderMap; body?: BodyInput }): Promise<RawReply>;
  signedRequest(method: string, target: string, options?: SignedRequestOptions): Promise<RawReply>;
  discovery(): Promise<RawReply>;
  /** What the server expects of a signed request, and its clock (to diagnose a 401). */
  signatureInformation(): Promise<SignatureInformation>;

  register(email: string, password: string): Promise<Registration>;
  secure(registration: Registration, password: string, options?: { time?: Date | number }): Promise<void>;
  /** The link, the whole mail (.eml text), or the code alone plus the registration. */
  confirm(linkOrMailOrCode: string, registration?: Registration | string):
    Promise<{ accountId: string; loginPath: string }>;
  login(password: string, code: string | { key: Buffer | Uint8Array | string; time?: Date | number },
    options?: { accountId?: string }): Promise<{ accountId: string; sessionId: string }>;
  logout(): Promise<void>;
  whoami(): Promise<{ accountId: string; email: string }>;

  createAccessCode(options?: { description?: string; use?: boolean }): Promise<AccessCodePair>;
  listAccessCodes(): Promise<AccessCodeItem[]>;
  revokeAccessCode(code: string): Promise<void>;

  tokenize(data: BodyInput, options?: TokenizeOptions): Promise<string>;
  detokenize(idOrHref: string, options?: { signed?: boolean }): Promise<Detokenized>;
  deleteToken(idOrHref: string): Promise<void>;

  createAccessToken(fields: AccessTokenCreate): Promise<CreatedAccessToken>;
  listAccessTokens(): Promise<{ items: AccessToken[]; count: number }>;
  getAccessToken(id: string): Promise<AccessToken>;
  updateAccessToken(id: string, fields: AccessTokenUpdate): Promise<AccessToken>;
  deleteAccessToken(id: string): Promise<void>;

  requestAccessTokenByMail(email: string): Promise<void>;
  requestAccessTokenDeletionCode(email: string): Promise<void>;
  deleteMailedAccessToken(email: string, code: string): Promise<void>;
}
